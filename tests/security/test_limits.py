"""Input limits: oversized bodies get 413, oversized or malformed fields a 422 that names the field."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from recsys_core.schemas import (
    MAX_GENRES_PER_ITEM,
    MAX_ID_LENGTH,
    MAX_INTERACTIONS_PER_EVENT,
    MAX_ITEMS_PER_BATCH,
    MAX_K,
)
from recsys_core.settings import Settings
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

MAX_BODY = Settings().max_body_bytes
JSON = {"content-type": "application/json"}

ID_WORDS = "letters, digits and . _ : @ + - only"  # the id pattern, in words


def _oversized_body() -> bytes:
    return b'{"item_ids": ["' + b"a" * (MAX_BODY + 1024) + b'"], "user_id": "u", "actions": ["like"]}'


def _chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("mode", ["content-length", "chunked"])
@pytest.mark.parametrize(("service", "path"), [("recommendations", "/add_items"), ("event_collector", "/interact")])
def test_too_large_body_is_413(open_stack: ServiceStack, service: str, path: str, mode: str) -> None:
    body = _oversized_body()
    content: bytes | Iterator[bytes] = body if mode == "content-length" else _chunks(body)
    response = httpx.post(f"{open_stack.url(service)}{path}", content=content, headers=JSON, timeout=30)
    sent_as = "chunked" if response.request.headers.get("transfer-encoding") == "chunked" else "content-length"
    print(f"{service}{path}: {len(body)} bytes ({sent_as}) -> {response.status_code} {response.text}")
    assert sent_as == mode
    assert response.status_code == 413, response.text
    assert f"larger than {MAX_BODY} bytes" in response.json()["detail"]


def _batch(n: int) -> list[str]:
    return [f"item-{i}" for i in range(n)]


LONG_ID = "x" * (MAX_ID_LENGTH + 1)
ADD_ITEMS_CASES = [
    ({"item_ids": _batch(MAX_ITEMS_PER_BATCH + 1)}, "body.item_ids", f"at most {MAX_ITEMS_PER_BATCH}"),
    ({"item_ids": ["ok", LONG_ID]}, "body.item_ids.1", f"at most {MAX_ID_LENGTH} characters"),
    ({"item_ids": ["ok", "bad id"]}, "body.item_ids.1", ID_WORDS),
    ({"item_ids": ["ok", "bad/id"]}, "body.item_ids.1", ID_WORDS),
    ({"item_ids": ["a"], "genres": [["g"] * (MAX_GENRES_PER_ITEM + 1)]}, "body", f"more than {MAX_GENRES_PER_ITEM}"),
    ({"item_ids": ["a"], "titles": ["t" * 10_000]}, "body.titles.0", "at most"),
]
INTERACT_CASES = [
    (
        {"user_id": "u", "item_ids": _batch(MAX_INTERACTIONS_PER_EVENT + 1), "actions": ["like"] * 1001},
        "body.item_ids",
        f"at most {MAX_INTERACTIONS_PER_EVENT}",
    ),
    ({"user_id": LONG_ID, "item_ids": ["a"], "actions": ["like"]}, "body.user_id", f"at most {MAX_ID_LENGTH}"),
    ({"user_id": "u", "item_ids": [LONG_ID], "actions": ["like"]}, "body.item_ids.0", f"at most {MAX_ID_LENGTH}"),
    ({"user_id": "we ird", "item_ids": ["a"], "actions": ["like"]}, "body.user_id", ID_WORDS),
    ({"user_id": "u", "item_ids": ["a\nb"], "actions": ["like"]}, "body.item_ids.0", ID_WORDS),
    ({"user_id": "u", "item_ids": ["a"], "actions": ["like"], "timestamp": -1}, "body.timestamp", "greater than"),
]


@pytest.mark.parametrize(("body", "field", "words"), ADD_ITEMS_CASES)
def test_add_items_limits_are_422_naming_the_field(
    open_stack: ServiceStack, body: dict[str, object], field: str, words: str
) -> None:
    response = httpx.post(f"{open_stack.recs_url}/add_items", json=body, timeout=30)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    print(f"/add_items -> 422 {detail[:160]}")
    assert detail.startswith(f"{field}:") or f"; {field}:" in detail, detail
    assert words in detail


@pytest.mark.parametrize(("body", "field", "words"), INTERACT_CASES)
def test_interact_limits_are_422_naming_the_field(
    open_stack: ServiceStack, body: dict[str, object], field: str, words: str
) -> None:
    response = httpx.post(f"{open_stack.collector_url}/interact", json=body, timeout=30)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    print(f"/interact -> 422 {detail[:160]}")
    assert detail.startswith(f"{field}:") or f"; {field}:" in detail, detail
    assert words in detail


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/recs/u?k=0", "query.k"),
        (f"/recs/u?k={MAX_K + 1}", "query.k"),
        ("/recs/u?k=-5", "query.k"),
        ("/recs/u?k=ten", "query.k"),
        (f"/recs/{LONG_ID}", "path.user_id"),
        ("/recs/bad%20user", "path.user_id"),
        ("/recs/%C3%A9t%C3%A9", "path.user_id"),
        ("/recs/...", "path.user_id"),  # dots alone: "." and ".." would not even reach the server
        (f"/debug/users/{LONG_ID}", "path.user_id"),
        (f"/debug/catalog?{'&'.join(f'ids=i{n}' for n in range(MAX_K + 1))}", "query.ids"),
        ("/debug/catalog?ids=a,b", "query.ids.0"),  # comma-separated instead of repeated: no id has a comma
        (f"/debug/catalog?ids=a&ids={LONG_ID}", "query.ids.1"),
    ],
)
def test_query_and_path_limits_are_422_naming_the_field(open_stack: ServiceStack, path: str, field: str) -> None:
    response = httpx.get(f"{open_stack.recs_url}{path}", timeout=30)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    print(f"GET {path[:60]} -> 422 {detail[:160]}")
    assert detail.startswith(f"{field}:"), detail


def test_limits_leave_valid_input_alone(open_stack: ServiceStack) -> None:
    """The largest accepted values are accepted: the limits are where the schema says."""
    with httpx.Client(timeout=30) as client:
        ids = [f"edge-{i:03d}-".ljust(MAX_ID_LENGTH, "y") for i in range(50)]
        response = client.post(f"{open_stack.recs_url}/add_items", json={"item_ids": ids})
        assert response.status_code == 200, response.text
        response = client.get(f"{open_stack.recs_url}/recs/{'u' * MAX_ID_LENGTH}", params={"k": MAX_K})
        assert response.status_code == 200, response.text
        body = {"user_id": "u" * MAX_ID_LENGTH, "item_ids": ids[:2], "actions": ["like", "dislike"]}
        assert client.post(f"{open_stack.collector_url}/interact", json=body).status_code == 200
    print(f"accepted: {len(ids)} ids of {MAX_ID_LENGTH} characters, k={MAX_K}, a {MAX_ID_LENGTH}-character user id")


# Raw bodies: a dict cannot hold a key twice. The second spelling is the same key with an escape in its name.
REPEATED_KEY_CASES = [
    ("event_collector", "/interact", b'{"user_id":"u","user_id":"v","item_ids":["a"],"actions":["like"]}', "user_id"),
    (
        "event_collector",
        "/interact",
        b'{"user_id":"u","item_ids":["a"],"actions":["like"],"user\\u005fid":"v"}',
        "user_id",
    ),
    (
        "event_collector",
        "/interact",
        b'{"user_id":"u","item_ids":["a"],"actions":["like"],"actions":["dislike"]}',
        "actions",
    ),
    ("recommendations", "/add_items", b'{"item_ids":["a"],"genres":[["x"]],"genres":[["y"]]}', "genres"),
    ("recommendations", "/add_items", b'{"item_ids":["a"],"item\\u005fids":["b"]}', "item_ids"),
]


@pytest.mark.parametrize(("service", "path", "body", "field"), REPEATED_KEY_CASES)
def test_a_repeated_field_in_a_body_is_422_naming_it(
    open_stack: ServiceStack, service: str, path: str, body: bytes, field: str
) -> None:
    """JSON parsers keep the last of a repeated key; the services refuse it instead, as a repeated ``k``."""
    response = httpx.post(f"{open_stack.url(service)}{path}", content=body, headers=JSON, timeout=30)
    print(f"{path} {body.decode()} -> {response.status_code} {response.text[:160]}")
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == f"body.{field}: {field} is given more than once: give it once"


def test_field_names_inside_values_are_not_a_repeat(open_stack: ServiceStack) -> None:
    """Text that looks like a field name, in a value or an ignored extra key, leaves a body valid."""
    with httpx.Client(timeout=30) as client:
        titles = b'{"item_ids":["dup-title"],"titles":["\\"item_ids\\" and \\"titles\\""],"x":1,"x":2}'
        response = client.post(f"{open_stack.recs_url}/add_items", content=titles, headers=JSON)
        assert response.status_code == 200, response.text
        event = b'{"user_id":"item_ids","item_ids":["item_ids"],"actions":["like"],"extra":{"user_id":1,"user_id":2}}'
        response = client.post(f"{open_stack.collector_url}/interact", content=event, headers=JSON)
        assert response.status_code == 200, response.text
