"""Redis replies as the tests' clients give them, checked rather than assumed.

The clients the tests open (``ServiceStack.redis``, the integration fixtures' clients) never decode, so a value
is bytes. redis-py types its replies for either setting (``bytes | str``), a missing value as None, and even
XRANGE's reply and its entries as possibly None; these helpers check what a test relies on and return it typed.
(``recsys_io.redis_client.as_str`` and ``as_int`` turn a reply into text or a number.)
"""

from __future__ import annotations

from redis.typing import StreamRangeResponse

StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


def blob(value: bytes | str | None) -> bytes:
    """A stored binary value (a snapshot, a model): present, and bytes."""
    assert isinstance(value, bytes), f"expected a stored value, got {type(value).__name__}"
    return value


def stream(reply: StreamRangeResponse | None) -> StreamEntries:
    """The entries of an XRANGE / XREVRANGE reply: ids and fields as bytes."""
    assert reply is not None, "no reply to the stream read"
    entries: StreamEntries = []
    for entry_id, fields in reply:
        assert isinstance(entry_id, bytes) and fields is not None, (entry_id, fields)
        checked: dict[bytes, bytes] = {}
        for name, value in fields.items():
            assert isinstance(name, bytes) and isinstance(value, bytes), (name, value)
            checked[name] = value
        entries.append((entry_id, checked))
    return entries
