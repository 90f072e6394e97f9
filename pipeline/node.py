"""A pipeline process: a standby until it holds the lease, then the leader running a ``PipelineRuntime``.

Each term of the lease gets a fresh runtime (state reloaded from Redis, its own consumer and threads), so a process
that lost the lease and later wins it again never serves the state it had before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from pipeline.leadership import PipelineLease
from pipeline.runtime import PipelineMetrics, PipelineRuntime
from recsys_core.experiments import Experiment
from recsys_core.keys import GlobalKeys
from recsys_core.settings import Settings
from recsys_io.periodic import closed_within
from recsys_io.redis_client import REDIS_UNAVAILABLE

log = logging.getLogger(__name__)


class PipelineNode:
    def __init__(self, settings: Settings, redis: Redis, experiment: Experiment, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.experiment = experiment
        self.metrics = PipelineMetrics(registry)
        self.lease = PipelineLease(redis, GlobalKeys(settings.redis_prefix), settings.pipeline_lease_s)
        self._redis = redis
        self.runtime: PipelineRuntime | None = None
        self.terms = 0  # how many times this process took the lease
        self._leader_seen: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._leading: asyncio.Task[None] | None = None  # the start of the current term
        self._became_leader = asyncio.Event()
        self._closing = asyncio.Event()

    @property
    def role(self) -> str:
        return "leader" if self.runtime is not None else "standby"

    async def start(self) -> None:
        """Take the lease now if it is free (a single pipeline leads, its run loaded, before it reports healthy),
        then keep watching it."""
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            await self._step()
        # Renewals run from here on, also while a long run is being reloaded.
        self._task = asyncio.create_task(self._watch_forever())
        leading = self._leading
        if leading is not None:
            # Not ``await leading``: a term given up during its reload (the lease was taken meanwhile) is cancelled
            # by the step-down, and this process then goes on as a standby instead of failing its start-up.
            await asyncio.wait({leading})
            if not leading.cancelled() and (error := leading.exception()) is not None:
                raise error  # _lead gives up the lease itself on a failed start; anything else is a real failure

    async def wait_leading(self) -> PipelineRuntime:
        await self._became_leader.wait()
        assert self.runtime is not None
        return self.runtime

    async def _watch_forever(self) -> None:
        # Ends on ``_closing`` (see closed_within): ended by cancellation, it could renew the lease forever.
        while not await closed_within(self._closing, self.lease.renew_interval_s):
            try:
                await self._step()
            except REDIS_UNAVAILABLE as error:
                # Nobody can take the lease while Redis is unreachable; the runtime stops publishing once its
                # deadline passes, and the next renewal decides whether it goes on.
                log.warning("redis unavailable while renewing the pipeline lease: %s", error)
            except Exception:  # the watch must outlive any one failure, or the lease would lapse silently
                log.exception("pipeline lease watch failed; trying again")

    async def _step(self) -> None:
        if self.lease.epoch is None:
            if self.runtime is not None:
                # The runtime found out first (a refused store renewed and lost the lease): end its term before
                # anything else, or its consumer would sit on unacked messages and its housekeeping would go on.
                log.warning("the pipeline lease was lost: stepping down to standby")
                await self._step_down()
            if await self.lease.try_acquire():
                self._leading = asyncio.create_task(self._lead())
            else:
                await self._note_leader()
        elif not await self.lease.renew():
            log.warning("another pipeline took the lease: stepping down to standby")
            await self._step_down()
            await self._note_leader()

    async def _lead(self) -> None:
        """Start a runtime for this term; on failure give the lease back (the watch tries again later)."""
        self.terms += 1
        log.info("took the pipeline lease (epoch %s): leading", self.lease.epoch)
        await self._stop_runtime()  # never two runtimes: a term's runtime ends before the next one starts
        self.runtime = PipelineRuntime(self.settings, self._redis, self.experiment, self.metrics, self.lease)
        self.metrics.leader.set(1)
        try:
            await self.runtime.start()
        except Exception:
            log.exception("could not start leading; releasing the lease")
            await self._stop_runtime()
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                await self.lease.release()
            return
        self._became_leader.set()

    async def _step_down(self) -> None:
        leading, self._leading = self._leading, None
        if leading is not None and not leading.done():
            leading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leading
        await self._stop_runtime()

    async def _stop_runtime(self) -> None:
        runtime, self.runtime = self.runtime, None
        self.metrics.leader.set(0)
        self._became_leader.clear()
        if runtime is not None:
            await runtime.stop()

    async def _note_leader(self) -> None:
        holder = await self.lease.holder()
        if holder != self._leader_seen:
            self._leader_seen = holder
            log.info("standby: the pipeline lease is held by %s", holder)

    async def stop(self) -> None:
        self._closing.set()
        if self._task is not None:
            await self._task  # returns after the step in progress, if any (each Redis call has its timeout)
        await self._step_down()
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            await self.lease.release()

    def describe(self) -> dict[str, object]:
        lease = {"role": self.role, "lease_token": self.lease.token, "lease_terms": self.terms}
        if self.runtime is None:
            return {**lease, "leader": self._leader_seen}
        return {**lease, **self.runtime.describe()}
