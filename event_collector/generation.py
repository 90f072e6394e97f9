"""Which run an event belongs to: the generation /cleanup maintains in Redis.

The collector stamps it on every event so the pipeline can drop events of an older run. If Redis does not
answer, the last generation this process saw is used (events still flow; /cleanup is what would be racing).
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from recsys_core.keys import GlobalKeys
from recsys_io.redis_client import REDIS_UNAVAILABLE, read_generation

log = logging.getLogger(__name__)


class GenerationSource:
    def __init__(self, redis: Redis, keys: GlobalKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._last_known: int | None = None

    async def current(self) -> int | None:
        try:
            self._last_known = await read_generation(self._redis, self._keys)
        except REDIS_UNAVAILABLE as error:
            log.warning("redis unavailable, stamping the last known generation %s: %s", self._last_known, error)
        return self._last_known
