"""Which run an event belongs to: the generation /cleanup maintains in Redis, kept in memory.

The collector stamps it on every event so the pipeline can drop events of an older run. Reading it from Redis
on every request cost ~15% of the collector's CPU, so a background task re-reads it every
``GENERATION_POLL_INTERVAL_S`` (0.1 s) and the request path reads memory only.

A cached value alone would let an event sent just after ``/cleanup`` returned carry the old run and be dropped
as stale after a 200. So each collector process announces the generation it stamps
(``GlobalKeys.collector``, with a TTL, listed in ``GlobalKeys.collectors``), and /cleanup waits until every
live collector announces the new one (``recommendations.cleanup.wait_for_collectors``). The order that makes
this safe:

- start-up (and a refresh after an outage long enough for the announcement to expire) announces generation 0
  *before* reading, so a /cleanup racing with it waits for it;
- every refresh updates the in-memory value *before* announcing it, so once /cleanup sees the announcement,
  every later request of that process is stamped with the new run.

A generation key missing from Redis while this process stamps a later run means Redis lost its data: the refresh
puts that run back (``GenerationRestorer``, unless a write after the loss pinned another), so the events stamped
before the loss are not dropped as an older run's. If Redis does not answer, the last generation this process saw is
stamped only while its last announcement is surely alive (half of ``ANNOUNCEMENT_TTL_MS``); after that the collector
answers 503 until a refresh succeeds, because its announcement expires and /cleanup stops waiting for it after at
most ``ANNOUNCEMENT_TTL_MS``. The same holds after the process was paused: requests queued meanwhile are not stamped
with what it knew before the pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from redis.asyncio import Redis

from recsys_core.keys import GlobalKeys
from recsys_io.periodic import closed_within
from recsys_io.redis_client import REDIS_UNAVAILABLE, GenerationRestorer

log = logging.getLogger(__name__)

# Long enough to ride out a slow Redis reply, short enough that /cleanup never waits long for a dead process.
ANNOUNCEMENT_TTL_MS = 3000


class GenerationSource:
    def __init__(self, redis: Redis, keys: GlobalKeys, poll_interval_s: float) -> None:
        self._redis = redis
        self._keys = keys
        self._poll_interval_s = poll_interval_s
        self.instance_id = uuid.uuid4().hex
        self._generation: int | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._announced_at = -float("inf")  # time.monotonic() of the last announcement Redis took
        self._restorer = GenerationRestorer(redis, keys)

    def current(self) -> int | None:
        """The generation to stamp, or None (the route answers 503): before Redis answered once, and while this
        process's announcement may have expired. /cleanup stops waiting for an expired announcement, so a process
        that could not refresh (Redis unreachable, or the process paused) might stamp the run /cleanup just
        ended, and its events would be dropped as stale after their 200."""
        if self._generation is None or self._announcement_may_have_expired():
            return None
        return self._generation

    async def start(self) -> None:
        try:
            await self.refresh()
        except REDIS_UNAVAILABLE as error:
            log.warning("redis unavailable at start-up, the generation is unknown until it answers: %s", error)
        self._watcher = asyncio.create_task(self._watch())

    async def refresh(self) -> None:
        if self._generation is None or self._announcement_may_have_expired():
            # Makes a racing /cleanup wait for this process, but vouches for no run: stamping stays refused
            # (``current()``) until the generation read next is announced, or the run it knew would be stamped
            # again after the /cleanup that ended it.
            await self._announce(0, vouches=False)
        # Never back to an earlier run: after Redis lost its data, the generation this process stamps is restored.
        self._generation = await self._restorer.at_least(self._generation or 0)
        await self._announce(self._generation)

    def _announcement_may_have_expired(self) -> bool:
        return time.monotonic() - self._announced_at > ANNOUNCEMENT_TTL_MS / 2000

    async def _announce(self, generation: int, vouches: bool = True) -> None:
        """Tell /cleanup which generation this process stamps; ``vouches``: it stamps ``generation`` from now on."""
        sent_at = time.monotonic()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._keys.collector(self.instance_id), generation, px=ANNOUNCEMENT_TTL_MS)
            pipe.sadd(self._keys.collectors, self.instance_id)
            await pipe.execute()
        if vouches:
            self._announced_at = sent_at

    async def _watch(self) -> None:
        while not await closed_within(self._closing, self._poll_interval_s):
            previous = self._generation
            try:
                await self.refresh()
            except REDIS_UNAVAILABLE as error:
                log.warning("redis unavailable (generation %s stamped only briefly, then 503): %s", previous, error)
                continue
            if previous is not None and self._generation != previous:
                log.info("now stamping generation %s (was %s)", self._generation, previous)

    async def close(self) -> None:
        """Stop watching and withdraw the announcement, so no /cleanup waits for this process."""
        self._closing.set()
        if self._watcher is not None:
            await self._watcher
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(self._keys.collector(self.instance_id))
                pipe.srem(self._keys.collectors, self.instance_id)
                await pipe.execute()
