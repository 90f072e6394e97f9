"""One active pipeline per deployment: a lease in Redis decides which process consumes and publishes.

The pipeline keeps the run's state in memory (bandit counts, the training log, the twin book), so two processes
consuming the same queue would each see half of the events and publish half-truths in turn. Every pipeline process
therefore starts as a standby and becomes the leader only by taking the lease (``SET NX PX`` and a new epoch); the
leader renews it every fifth of its TTL and releases it on a clean stop. A standby that takes over reloads the run
from Redis before it consumes.

Two guards keep a paused ex-leader (a long GC or SIGSTOP, a partition) from doing harm after another process took
over: its event stores are fenced in Redis (``STORE_EVENTS`` refuses a token that does not hold the lease, so it
acks nothing it did not store), and it publishes only while its local lease deadline, counted from *before* the last
successful renewal was sent, has not passed, which is never later than the lease's expiry in Redis. A pause can fall
between that check and the write, so the publication scripts check the token in Redis too (``recsys_core.lua``).
"""

from __future__ import annotations

import os
import socket
import time
import uuid

from redis.asyncio import Redis

from recsys_core import lua
from recsys_core.keys import GlobalKeys

RENEWALS_PER_TTL = 5


class LeadershipLost(Exception):
    """This process no longer holds the pipeline lease: it must stop consuming and publishing."""


class PipelineLease:
    def __init__(self, redis: Redis, keys: GlobalKeys, ttl_s: float) -> None:
        self._redis = redis
        self._keys = [keys.pipeline_leader, keys.pipeline_leader_epoch]
        self.ttl_s = ttl_s
        self.renew_interval_s = ttl_s / RENEWALS_PER_TTL
        # Readable in Redis (`GET <prefix>:pipeline:leader`) to tell which process leads.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.epoch: int | None = None
        self._deadline = 0.0
        self._acquire = redis.register_script(lua.ACQUIRE_LEASE)
        self._renew = redis.register_script(lua.RENEW_LEASE)
        self._release = redis.register_script(lua.RELEASE_LEASE)

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl_s * 1000)

    def held(self) -> bool:
        """True while this process surely holds the lease: publishing is safe."""
        return self.epoch is not None and time.monotonic() < self._deadline

    async def try_acquire(self) -> bool:
        """Take the lease if it is free."""
        sent = time.monotonic()
        epoch = int(await self._acquire(keys=self._keys, args=[self.token, self.ttl_ms]))
        if epoch == 0:
            return False
        self.epoch, self._deadline = epoch, sent + self.ttl_s
        return True

    async def renew(self) -> bool:
        """Extend the lease; False when another process took it (this one must step down). Raises while Redis is
        unreachable: the lease is then neither kept nor lost, and ``held()`` turns False when its deadline passes."""
        if self.epoch is None:
            return False
        sent = time.monotonic()
        if int(await self._renew(keys=self._keys, args=[self.token, self.ttl_ms, self.epoch])):
            self._deadline = sent + self.ttl_s
            return True
        self.epoch = None
        return False

    async def release(self) -> None:
        if self.epoch is None:
            return
        self.epoch = None
        await self._release(keys=self._keys, args=[self.token])

    async def holder(self) -> str | None:
        """The token of the process holding the lease, if any."""
        value = await self._redis.get(self._keys[0])
        return None if value is None else value.decode() if isinstance(value, bytes) else str(value)
