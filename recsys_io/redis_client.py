"""The Redis client every service uses, with timeouts so a dead Redis becomes an error, not a hang."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from recsys_core.keys import GlobalKeys
from recsys_core.settings import Settings


def create_redis(settings: Settings) -> Redis:
    # Binary-safe (no decode_responses): model and bandit snapshots are bytes.
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        max_connections=256,
    )


def as_int(value: bytes | str | int | None, default: int = 0) -> int:
    return default if value is None else int(value)


def as_str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def read_generation(redis: Redis, keys: GlobalKeys) -> int:
    return as_int(await redis.get(keys.generation))


# What "Redis is unavailable" looks like from redis-py: unreachable, timing out, or refusing commands (READONLY
# after a failover, OOM, MISCONF on a full disk). The caller answers 503, answers from a fallback, or retries;
# a background loop that caught only lost connections died on the first refused write.
REDIS_UNAVAILABLE = (RedisError, OSError)
