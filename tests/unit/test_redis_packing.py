"""The Redis client packs commands with hiredis: the bytes on the wire are exactly redis-py's own."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError
from redis.typing import EncodableT

from recsys_core.settings import Settings
from recsys_io.redis_client import create_redis, with_hiredis_packing

pytest.importorskip("hiredis")

ARGUMENTS: list[tuple[EncodableT, ...]] = [
    ("EVALSHA", "a" * 40, 2, "prefix:user:u-1:shown", "k2", "é", b"\x00\xff", -5, 1.5, 0.1, 1e-7, 10**20),
    ("SCRIPT LOAD", "return 1"),  # a command name of two words is split, as redis-py does
    (b"CLIENT SETNAME", b"recs"),
    ("SET", "key", memoryview(b"snapshot bytes"), "EX", 60),
    ("SET", "key", bytearray(b"x")),  # hiredis refuses a bytearray: redis-py's packer takes it
    ("SET", "key", "x" * 100_000),  # past redis-py's buffer cutoff, where it sends the value apart
]


@pytest.mark.parametrize("args", ARGUMENTS)
def test_the_same_bytes_as_redis_py_packs(args: tuple[EncodableT, ...]) -> None:
    hiredis_packed = with_hiredis_packing(Connection)().pack_command(*args)
    assert b"".join(hiredis_packed) == b"".join(Connection().pack_command(*args))


def test_a_value_redis_py_refuses_is_still_refused() -> None:
    with pytest.raises(DataError):
        with_hiredis_packing(Connection)().pack_command("SET", "key", True)
    with pytest.raises(DataError):
        with_hiredis_packing(Connection)().pack_command("SET", "key", None)  # type: ignore[arg-type]  # refused


def test_every_kind_of_connection_keeps_its_class() -> None:
    for kind in (Connection, SSLConnection, UnixDomainSocketConnection):
        packing = with_hiredis_packing(kind)
        assert issubclass(packing, kind) and packing is with_hiredis_packing(kind)
    redis = create_redis(Settings(redis_url="unix:///tmp/redis.sock"))
    assert issubclass(redis.connection_pool.connection_class, UnixDomainSocketConnection)
    redis = create_redis(Settings(redis_url="redis://127.0.0.1:6379/0"))
    assert redis.connection_pool.connection_class is with_hiredis_packing(Connection)
