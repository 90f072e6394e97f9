"""The pipeline process: consumption, the bandit snapshot loop, the generation watch and scheduled retrains.

Consumption and training never wait for each other: a retrain copies the interaction log and fits in a worker
thread (BPR releases the GIL), while the event loop keeps storing events and publishing bandit snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import TypeVar, cast

import numpy as np
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.asyncio import Redis

from pipeline.background import background_executor
from pipeline.consumer import EventConsumer
from pipeline.event_store import NOT_LEASE_HOLDER, STALE, STORE_ROUND_TRIP, STORED, EventStore, GroupedEvent
from pipeline.leadership import LeadershipLost, PipelineLease
from pipeline.publishing import BanditSnapshotPublisher, CoLikesPublisher, ModelPublisher, PublishRefused
from pipeline.state import InteractionLog, RunState, users_newest_first
from pipeline.tracking import MlflowTracker, RetrainRecord
from pipeline.training import TrainingOutput, co_likes_from_log, fit_model
from pipeline.twins import TwinsPublisher
from recsys_core import lua
from recsys_core.algorithms.factors import BPRParams, FactorModel, TrainingCancelled
from recsys_core.experiments import Experiment
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import EventMessage
from recsys_core.settings import Settings
from recsys_io.redis_client import REDIS_UNAVAILABLE, GenerationRestorer, as_int, as_str, read_generation

log = logging.getLogger(__name__)

T = TypeVar("T")

HEARTBEAT_TTL_MS = 3000
STORE_RETRY_MAX_S = 5.0
# Co-likes are recounted from the whole history; at most this share of a core goes to it.
CO_LIKES_MAX_BUSY_SHARE = 0.1
# Beyond this many events the offline evaluation (a second fit) is skipped to keep retrains fast.
OFFLINE_EVALUATION_MAX_EVENTS = 2_000_000
# How long a retrain waits for MLflow before it goes on (the run id follows into the status later).
TRACKING_WAIT_S = 5.0
# The reason of a retrain a stopping pipeline cut short; /metrics counts those as "cancelled".
STOPPING_REASON = "the pipeline is stopping"
# How long stop() lets a scheduled retrain in flight finish: its fit ends after the current iteration and a
# stopping runtime publishes nothing new, so what is left is a publication under way and the MLflow wait.
RETRAIN_FINISH_ON_STOP_S = TRACKING_WAIT_S + 2.0


@dataclass(frozen=True, slots=True)
class RetrainOutcome:
    trained: bool
    reason: str
    model_version: int | None = None
    train_seconds: float | None = None
    mlflow_run_id: str | None = None


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events_consumed = Counter("pipeline_events_consumed", "Interactions stored and applied", registry=registry)
        self.messages = Counter("pipeline_messages", "Messages handled by outcome", ["outcome"], registry=registry)
        self.retrain_seconds = Histogram(
            "pipeline_retrain_duration_seconds",
            "Wall time of a retrain (fit, evaluation, publish)",
            registry=registry,
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
        )
        self.retrains = Counter(
            "pipeline_retrains",
            "Retrain attempts by outcome: published, skipped (no new events), not_published (no likes yet, a "
            "/cleanup or a lost lease meanwhile), cancelled (stopping), failed (an error)",
            ["outcome"],
            registry=registry,
        )
        self.mlflow_untracked = Gauge(
            "pipeline_mlflow_untracked_retrains",
            "Retrains MLflow did not take when they were made, since this process started (logged later)",
            registry=registry,
        )
        self.mlflow_backlog = Gauge(
            "pipeline_mlflow_backlog", "Retrains waiting to be logged once MLflow is back", registry=registry
        )
        self.model_version = Gauge("pipeline_model_version", "Published model version", registry=registry)
        self.bandit_version = Gauge("pipeline_bandit_version", "Published bandit snapshot version", registry=registry)
        self.leader = Gauge("pipeline_leader", "1 while this process holds the pipeline lease", registry=registry)
        self.twins_delay = Histogram(
            "pipeline_twins_publish_delay_seconds",
            "From the collector receiving a user's feedback to that user's twins being published",
            registry=registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5),
        )
        self.twin_lifts = Counter(
            "pipeline_twin_lifts", "Twin lifts computed, by trigger (feedback, rematch)", ["trigger"], registry=registry
        )
        self.twin_lift_cpu = Counter(
            "pipeline_twin_lift_cpu_seconds",
            "CPU time spent computing twin lifts, by trigger",
            ["trigger"],
            registry=registry,
        )

    def observe_twin_lifts(self, trigger: str, lifts: int, cpu_s: float) -> None:
        self.twin_lifts.labels(trigger).inc(lifts)
        self.twin_lift_cpu.labels(trigger).inc(cpu_s)


class PipelineRuntime:
    """The leading pipeline's work for one term of the lease (``pipeline.node`` starts and stops it).

    Without a ``lease`` (tests that drive a runtime directly) it stores and publishes unfenced.
    """

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        experiment: Experiment,
        metrics: PipelineMetrics,
        lease: PipelineLease | None = None,
    ) -> None:
        self.settings = settings
        self.keys = GlobalKeys(settings.redis_prefix)
        self.experiment = experiment
        self.metrics = metrics
        self._lease = lease
        self._redis = redis
        self._events = EventStore(redis, self.keys)
        self._generations = GenerationRestorer(redis, self.keys)
        lease_token = "" if lease is None else lease.token
        self._snapshots = BanditSnapshotPublisher(redis, self.keys, lease_token)
        self._models = ModelPublisher(redis, self.keys, settings.models_to_keep)
        self._co_likes = CoLikesPublisher(redis, self.keys, lease_token)
        # Twin matching answers the user's next /recs: its own thread, at normal priority.
        self._twins_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twins")
        self.twins = TwinsPublisher(
            redis,
            self.keys,
            settings,
            self._twins_executor,
            on_published=self.metrics.twins_delay.observe,
            may_publish=self.may_publish,
            on_matched=self.metrics.observe_twin_lifts,
            lease_token=lease_token,
        )
        self._twins_task: asyncio.Task[None] | None = None
        self._twins_restore_task: asyncio.Task[None] | None = None
        self._replace_hash_if_current = redis.register_script(lua.REPLACE_HASH_IF_CURRENT)
        self._run_uid_if_current = redis.register_script(lua.RUN_UID_IF_CURRENT)
        self._run_uid = ""  # the current run's uid (``RunKeys.run_uid``), which MLflow's parent run is tagged with
        self._hset_if_model = redis.register_script(lua.HSET_IF_MODEL)
        self._late_tracking: set[asyncio.Task[None]] = set()
        self._co_likes_task: asyncio.Task[None] | None = None
        self._scheduled_retrain_task: asyncio.Task[None] | None = None
        self._trim_task: asyncio.Task[None] | None = None
        self._next_co_likes_at = 0.0
        self._tracker = MlflowTracker(
            settings.mlflow_tracking_uri, settings.deployment_name, settings.mlflow_public_url, settings.redis_prefix
        )
        self.metrics.mlflow_untracked.set_function(lambda: self._tracker.missed_total)
        self.metrics.mlflow_backlog.set_function(lambda: self._tracker.backlog)
        self._consumer = EventConsumer(
            settings.amqp_url,
            settings.events_queue,
            self.handle_batch,
            prefetch=settings.prefetch_count,
            batch_size=settings.consume_batch_size,
            batch_wait_s=settings.consume_batch_wait_s,
            # Half the lease in whole seconds (AMQP's unit): a paused leader's unacked messages go back to the queue
            # soon after a standby took over.
            heartbeat_s=max(1, int(settings.pipeline_lease_s // 2)),
        )
        self._scheduler = AsyncIOScheduler()
        self._tracking = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow")
        # Training and co-like recounts: one thread each at most, below the priority of anything serving.
        self._background = background_executor(workers=2, niceness=settings.background_niceness)
        self._state = RunState(-1)
        self._state_lock = asyncio.Lock()
        self._retrain_lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        # Set by stop(): the housekeeping loop checks it, because a cancellation that lands while a Redis
        # command is in flight can be swallowed inside redis-py (event_collector/generation.py had that hang).
        self._stopping = asyncio.Event()
        # The same for a fit in a worker thread, which asks between BPR iterations (an asyncio.Event is not
        # meant to be read from other threads).
        self._stop_training = threading.Event()
        self.last_retrain: RetrainOutcome | None = None
        # The last scheduled look at whether to retrain, also when it found nothing new (then nothing else says so).
        self.last_retrain_check: dict[str, object] | None = None
        self.training_in_progress = False

    @property
    def state(self) -> RunState:
        return self._state

    @property
    def consumer_connected(self) -> bool:
        return self._consumer.connected

    def may_publish(self) -> bool:
        """Whether this runtime may still publish to /recs (every publication checks it first): it is not
        stopping (a retrain may outlive stop()), and this process surely still holds the lease."""
        return not self._stopping.is_set() and self._holds_lease()

    def _holds_lease(self) -> bool:
        return self._lease is None or self._lease.held()

    # --- lifecycle ---
    async def start(self) -> None:
        await self._switch_generation(await read_generation(self._redis, self.keys))
        self._consumer.start()
        self._loop_task = asyncio.create_task(self._housekeeping_forever())
        self._twins_task = asyncio.create_task(self.twins.run_forever(self._stopping))
        self._scheduler.add_job(
            self.scheduled_retrain,
            "interval",
            seconds=self.settings.retrain_interval_s,
            max_instances=1,
            coalesce=True,
            id="retrain",
        )
        self._scheduler.start()

    async def stop(self) -> None:
        self._stopping.set()
        self._stop_training.set()  # a fit in progress ends after its current iteration, not minutes later
        if self._scheduler.running:  # stop() also cleans up a runtime whose start() never ran or failed early
            self._scheduler.shutdown(wait=False)
        for task in (self._co_likes_task, self._trim_task, self._twins_restore_task):
            if task is not None:
                task.cancel()
        for task in (self._loop_task, self._twins_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # First: closing the connection hands the unacked deliveries back to the broker, for the next leader.
        await self._consumer.close()
        self._tracker.close()
        retrain = self._scheduled_retrain_task
        if retrain is not None and not retrain.done():
            # Ends quickly (see RETRAIN_FINISH_ON_STOP_S); cut off, it could leave a model's keys unpublished in
            # Redis, or a published model without its status. Its own errors are logged by scheduled_retrain.
            _, still_running = await asyncio.wait({retrain}, timeout=RETRAIN_FINISH_ON_STOP_S)
            if still_running:
                # Past its grace (a Redis or MLflow far slower than their timeouts): the executors are shut down
                # next, so it could not finish anyway. publish() deletes a version it had not flipped yet.
                retrain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retrain
        for late in list(self._late_tracking):
            late.cancel()
        self._tracking.shutdown(wait=False, cancel_futures=True)
        self._background.shutdown(wait=False, cancel_futures=True)
        self._twins_executor.shutdown(wait=False, cancel_futures=True)
        if self._holds_lease():  # a runtime stopped because another process leads must not delete its heartbeat
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                await self._redis.delete(self.keys.pipeline_heartbeat)

    # --- generations ---
    async def _switch_generation(self, generation: int) -> None:
        """Drop the in-memory run and rebuild it from Redis for ``generation`` (empty after a /cleanup)."""
        async with self._state_lock:
            if self._state.generation == generation:
                return
            previous = self._state.generation
            # Every Redis step first, the switch in memory last: a step that fails leaves the old run in place, and
            # the retry (the next event of the run, or the watch loop) does the whole switch again. Switched first,
            # a retry found the generation current and returned, so /cleanup never got the acknowledgement below
            # and the run kept the previous run's uid.
            state = await self._events.load_run(generation, self.settings.training_max_events)
            served = await self._served_model_status(state)
            uid = await self._run_uid_if_current(
                keys=[self.keys.generation, self.keys.for_generation(generation).run_uid],
                args=[generation, uuid.uuid4().hex],
            )
            await self._redis.set(self.keys.pipeline_generation, generation)
            self._state = state
            self._take_over_model_status(state, served)
            self._run_uid = "" if uid is None else as_str(uid)  # None: a /cleanup came first; the next switch sets it
            self.twins.reset(generation)
            if self.twins.enabled and len(state.log):
                self._twins_restore_task = asyncio.create_task(self._restore_twins(state))
            log.info("run generation %d (was %d): %d events loaded", generation, previous, len(state.log))
        # Fire and forget: the single tracking thread keeps MLflow calls in order and off the event loop.
        self._tracking.submit(self._tracker.start_generation, generation, self._run_uid)

    async def _served_model_status(self, state: RunState) -> dict[bytes, bytes]:
        """The run's status hash, which says what model an earlier pipeline process of this run published."""
        status = await self._redis.hgetall(self.keys.for_generation(state.generation).pipeline_status)
        return cast(dict[bytes, bytes], status)  # the client does not decode

    def _take_over_model_status(self, state: RunState, status: dict[bytes, bytes]) -> None:
        """A restarted (or newly leading) pipeline takes over the served model's figures from the run's status
        hash: /metrics shows its version, and the events it was trained on do not count as new (which forced a
        retrain on unchanged data at once)."""
        version = as_int(status.get(b"model_version"))
        self.last_retrain = None
        if not version:
            self.metrics.model_version.set(0)
            return
        self.metrics.model_version.set(version)
        trained_on = status.get(b"events_applied_at_train")
        if trained_on is not None:
            state.events_at_last_train = min(as_int(trained_on), state.applied_events)
        run_id = status.get(b"mlflow_run_id")
        self.last_retrain = RetrainOutcome(
            True,
            "published by an earlier pipeline process of this run",
            version,
            float(status[b"training_seconds"]) if b"training_seconds" in status else None,
            as_str(run_id) if run_id is not None else None,
        )

    async def _restore_twins(self, state: RunState) -> None:
        """Refill the twin book from the users of the reloaded log, so a restart does not forget who answered
        what (the book lives in memory)."""
        codes, ids = state.log.user_column()
        limit = self.settings.twins_max_users
        user_ids = await asyncio.get_running_loop().run_in_executor(
            self._twins_executor, users_newest_first, codes, ids, limit
        )
        try:
            await self.twins.restore(state.generation, user_ids)
        except REDIS_UNAVAILABLE as error:
            log.warning("could not restore the twin book (it refills from new feedback): %s", error)
        except Exception:  # the book refills from new feedback anyway
            log.exception("restoring the twin book failed")

    async def _switch_to_current_generation(self) -> None:
        await self._switch_generation(await read_generation(self._redis, self.keys))

    async def _switch_to_generation_at_least(self, seen: int) -> None:
        await self._switch_generation(await self._generations.at_least(seen))

    async def _housekeeping_forever(self) -> None:
        """Heartbeat, generation watch and bandit snapshots, every ``bandit_publish_interval_s``."""
        while not self._stopping.is_set():
            if not self.may_publish():  # the lease lapsed: the node renews it or stops this runtime
                await asyncio.sleep(self.settings.bandit_publish_interval_s)
                continue
            try:
                await self._redis.set(self.keys.pipeline_heartbeat, os.getpid(), px=HEARTBEAT_TTL_MS)
                generation = await read_generation(self._redis, self.keys)
                if generation != self._state.generation:
                    await self._switch_generation(generation)
                version = await self._snapshots.publish_if_changed(self._state)
                if version is not None:
                    self.metrics.bandit_version.set(version)
                self._maybe_refresh_co_likes()
                self._maybe_trim_log()
            except REDIS_UNAVAILABLE as error:
                log.warning("redis unavailable in housekeeping: %s", error)
            except Exception:  # heartbeats and snapshots must outlive any one failure
                log.exception("housekeeping failed; trying again")
            await asyncio.sleep(self.settings.bandit_publish_interval_s)

    def _maybe_refresh_co_likes(self) -> None:
        """Recompute co-like neighbours in a worker thread every ``co_likes_interval_s`` when likes arrived."""
        now = time.monotonic()
        running = self._co_likes_task is not None and not self._co_likes_task.done()
        if running or now < self._next_co_likes_at or not self._co_likes.is_stale(self._state):
            return
        self._next_co_likes_at = now + self.settings.co_likes_interval_s
        self._co_likes_task = asyncio.create_task(self._refresh_co_likes(self._state))

    async def _refresh_co_likes(self, state: RunState) -> None:
        started = time.monotonic()
        try:
            events_seen = state.applied_events
            columns = state.log.columns()
            catalog_ids = list(await self._snapshots.catalog_ids(state.generation))
            neighbours = await asyncio.get_running_loop().run_in_executor(
                self._background, co_likes_from_log, columns, catalog_ids, self.settings.co_likes_neighbours
            )
            if self.may_publish():
                await self._co_likes.publish(state, neighbours, events_seen)
        except REDIS_UNAVAILABLE as error:
            log.warning("could not publish co-like neighbours: %s", error)
        # A long history makes the recount expensive: keep it under ~1/CO_LIKES_MAX_BUSY_SHARE of a core.
        elapsed = time.monotonic() - started
        self._next_co_likes_at = max(self._next_co_likes_at, started + elapsed / CO_LIKES_MAX_BUSY_SHARE)

    def _maybe_trim_log(self) -> None:
        """Keep the latest ``training_max_events`` events in memory once the log has grown past the window."""
        running = self._trim_task is not None and not self._trim_task.done()
        if not running and self._state.log_over_window():
            self._trim_task = asyncio.create_task(self._trim_log(self._state))

    async def _trim_log(self, state: RunState) -> None:
        # The copy and re-interning of millions of events run in a thread; only the events that arrived
        # meanwhile are appended on the loop.
        columns = state.log.columns()
        trimmed = await asyncio.to_thread(InteractionLog.latest_of, columns, state.max_events)
        if self._state is not state:
            return  # a /cleanup or restart replaced the run meanwhile
        trimmed.extend_from(state.log, len(columns.users))
        dropped = len(state.log) - len(trimmed)
        state.log = trimmed
        log.info("kept the latest %d events in memory for training (%d older ones left out)", len(trimmed), dropped)

    # --- consumption ---
    async def handle_batch(self, events: list[EventMessage]) -> None:
        """Store every event durably (retrying while Redis is down), then apply the stored ones in memory."""
        if not events:
            return
        newest = max(event.generation for event in events)
        if newest > self._state.generation:
            # A /cleanup happened and its events arrive before the watch loop noticed; or Redis lost its data, and
            # its generation is restored so that these events are stored, not dropped as an older run's.
            await self._retry(lambda: self._switch_to_generation_at_least(newest))
        grouped = [GroupedEvent(e, self.experiment.assign(e.user_id).name) for e in events]
        for first in range(0, len(grouped), STORE_ROUND_TRIP):
            batch = grouped[first : first + STORE_ROUND_TRIP]
            # A slice that failed is retried alone: the slices before it are stored and counted already. Its retries
            # share one call id, so what the failed try stored before its reply was lost still counts as stored.
            call_id = self._events.new_call_id()
            results = await self._retry(partial(self._store_fenced, batch, call_id))
            # Applied slice by slice: if a later slice fails, what is stored already is in memory too.
            self._apply([grouped_event.event for grouped_event in batch], results)

    def _apply(self, events: list[EventMessage], results: list[int]) -> None:
        """Apply stored events to the in-memory state (bandit counts, training log, twins' book)."""
        state = self._state
        answered: dict[str, float] = {}
        for event, result in zip(events, results, strict=True):
            if result == STORED and event.generation == state.generation:
                answered[event.user_id] = min(event.received_at, answered.get(event.user_id, event.received_at))
                for item_id, action in zip(event.item_ids, event.actions, strict=True):
                    state.apply(event.user_id, item_id, action, event.timestamp)
                state.messages_stored += 1
                self.metrics.events_consumed.inc(len(event.item_ids))
                self.metrics.messages.labels("stored").inc()
            elif result == STALE:
                state.stale_dropped += 1
                self.metrics.messages.labels("stale").inc()
            else:
                state.duplicates += 1
                self.metrics.messages.labels("duplicate").inc()
        self.twins.note(state.generation, answered)

    async def _store_fenced(self, batch: list[GroupedEvent], call_id: str) -> list[int]:
        """Store while holding the lease; ``LeadershipLost`` (nothing stored, nothing to ack) once another has it."""
        if self._lease is None:
            return await self._events.store(batch, call_id)
        results = await self._events.store(batch, call_id, self._lease.token)
        if NOT_LEASE_HOLDER in results and await self._lease.renew():
            # It had lapsed with nobody taking it (Redis unreachable for longer than the TTL): taken back.
            results = await self._events.store(batch, call_id, self._lease.token)
        if NOT_LEASE_HOLDER in results:
            raise LeadershipLost("another pipeline holds the lease: this one stored nothing of the batch")
        return results

    async def _retry(self, operation: Callable[[], Awaitable[T]]) -> T:
        delay = 0.1
        while True:
            try:
                return await operation()
            except REDIS_UNAVAILABLE as error:
                log.warning("redis unavailable (%s); retrying in %.1fs, nothing acked meanwhile", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX_S)

    # --- training ---
    async def scheduled_retrain(self) -> None:
        """The schedule's job. The retrain runs in a task of the runtime's own: the scheduler's shutdown (in
        stop()) cancels the jobs it runs, and a retrain cancelled between writing a model and flipping its pointer,
        or before writing its status, would leave Redis behind what it did. stop() lets that task finish."""
        task = asyncio.create_task(self._scheduled_retrain_once())
        self._scheduled_retrain_task = task
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not self._stopping.is_set():
                raise
            # The scheduler shut down: stop() waits for the retrain; nothing for the scheduler to log.

    async def _scheduled_retrain_once(self) -> None:
        try:
            outcome = await self.retrain(force=False)
        except Exception:  # the scheduler must keep its job; the error is logged with its traceback
            log.exception("scheduled retrain failed")
            return
        self.last_retrain_check = {"at": time.time(), "trained": outcome.trained, "reason": outcome.reason}

    def bpr_params(self) -> BPRParams:
        s = self.settings
        return BPRParams(
            factors=s.bpr_factors,
            iterations=s.bpr_iterations,
            learning_rate=s.bpr_learning_rate,
            regularization=s.bpr_regularization,
            threads=s.bpr_threads,
            random_seed=s.random_seed,
            neighbour_min_likes=s.bpr_neighbour_min_likes,
        )

    async def retrain(self, force: bool) -> RetrainOutcome:
        """``force``: a manual retrain (POST /retrain), even with no new events; else the schedule's."""
        waited = self._retrain_lock.locked()
        async with self._retrain_lock:
            state = self._state
            last = self.last_retrain
            if force and waited and last is not None and last.trained and state.events_since_train == 0:
                # Asked while a retrain ran, and nothing arrived since it started: its model is the answer (a
                # second fit on the same data would only publish a copy).
                self.metrics.retrains.labels("skipped").inc()
                return replace(last, reason="published by the retrain that was running; no new events since")
            if not force and state.events_since_train < self.settings.min_new_events_to_retrain:
                self.metrics.retrains.labels("skipped").inc()
                log.debug("retrain skipped: %d new events", state.events_since_train)
                return RetrainOutcome(False, "no new events since the last retrain")
            self.training_in_progress = True
            try:
                outcome = await self._retrain(state, trigger="manual" if force else "scheduled")
            except Exception as error:
                # /status says so (not the previous retrain's "published"); the next scheduled one tries again.
                self.last_retrain = RetrainOutcome(False, f"failed: {error!r}")
                self.metrics.retrains.labels("failed").inc()
                raise
            finally:
                self.training_in_progress = False
            self.last_retrain = outcome
            cancelled = outcome.reason.startswith(STOPPING_REASON)
            label = "published" if outcome.trained else "cancelled" if cancelled else "not_published"
            self.metrics.retrains.labels(label).inc()
            return outcome

    async def _retrain(self, state: RunState, trigger: str) -> RetrainOutcome:
        started = time.perf_counter()
        events_at_start = state.applied_events
        columns = state.log.columns()
        catalog_ids = list(await self._snapshots.catalog_ids(state.generation))
        params = self.bpr_params()
        evaluate = len(columns.users) <= OFFLINE_EVALUATION_MAX_EVENTS
        if self._stopping.is_set():  # stop() shut the executors down: a retrain asked now has nothing to run on
            return RetrainOutcome(False, f"{STOPPING_REASON}: the retrain was not started")
        try:
            output = await asyncio.get_running_loop().run_in_executor(
                self._background,
                fit_model,
                columns,
                catalog_ids,
                params,
                self.settings.holdout_fraction,
                evaluate,
                self._stop_training.is_set,
            )
        except TrainingCancelled as cancelled:
            return RetrainOutcome(False, f"{STOPPING_REASON}: {cancelled}")
        if output is None:
            state.events_at_last_train = events_at_start
            return RetrainOutcome(False, "no likes to learn from yet")
        # Until a model is out, the events since the last one still count as new: a publication that failed
        # (Redis, the lease) is tried again by the next scheduled retrain, even if no event arrives meanwhile.
        if not self.may_publish():
            return RetrainOutcome(False, "this pipeline lost its lease (or is stopping) during training")
        version = await self._models.next_version(state.generation)
        if version is None:
            return RetrainOutcome(False, "a /cleanup started a new run during training")
        # Built in a thread: indexing a million users' ids takes about a second.
        model = await asyncio.to_thread(
            FactorModel,
            version=version,
            user_ids=output.user_ids,
            user_factors=output.user_factors,
            item_ids=np.array(catalog_ids, dtype=np.str_),
            item_factors=output.item_factors,
            neighbour_indices=output.neighbour_indices,
            neighbour_sims=output.neighbour_sims,
        )
        metrics = self._training_metrics(output)
        token = None if self._lease is None else self._lease.token
        try:
            published = await self._models.publish(
                state.generation, model, {**metrics, "generation": state.generation}, token
            )
        except PublishRefused as refused:
            return RetrainOutcome(False, str(refused))
        if published is None:
            return RetrainOutcome(False, "a /cleanup started a new run during training")
        state.events_at_last_train = events_at_start
        total_seconds = time.perf_counter() - started
        self.metrics.retrain_seconds.observe(total_seconds)
        self.metrics.model_version.set(version)
        record = RetrainRecord(
            generation=state.generation,
            model_version=version,
            params={**asdict(params), **self._training_params(), **self._strategy_params()},
            metrics={**metrics, "retrain_seconds": total_seconds},
            model=model,
            trigger=trigger,
            run_uid=self._run_uid,
        )
        tracking = asyncio.get_running_loop().run_in_executor(self._tracking, self._tracker.log_retrain, record)
        try:
            # Bounded: an MLflow that answers its health check but is slow must not hold the retrain, its status
            # and /retrain's answer for minutes; the run id then reaches the status when MLflow gives it.
            run_id = await asyncio.wait_for(asyncio.shield(tracking), TRACKING_WAIT_S)
        except TimeoutError:
            run_id = None
            late = asyncio.create_task(self._status_run_id_when_tracked(state.generation, version, tracking))
            self._late_tracking.add(late)
            late.add_done_callback(self._late_tracking.discard)
        await self._write_status(state.generation, version, metrics, total_seconds, run_id, events_at_start)
        log.info(
            "model v%d: %d users, %d items, %d likes, fit %.2fs (total %.2fs)",
            version,
            output.n_users,
            output.n_items,
            output.n_likes,
            output.train_seconds,
            total_seconds,
        )
        return RetrainOutcome(True, "published", version, output.train_seconds, run_id)

    def _training_params(self) -> dict[str, str | int | float]:
        """The settings that shape what a retrain learns from and how it is scored, beside BPR's own."""
        s = self.settings
        return {
            "holdout_fraction": s.holdout_fraction,
            "training_max_events": s.training_max_events,
            "min_new_events_to_retrain": s.min_new_events_to_retrain,
            "retrain_interval_s": s.retrain_interval_s,
        }

    def _strategy_params(self) -> dict[str, object]:
        """The control group's strategy and every parameter of it (bandit priors included)."""
        control = self.experiment.control
        described = {f"strategy.{k}": v for k, v in control.strategy.describe().items()}
        return {"experiment": self.experiment.name, "strategy": control.strategy_name, **described}

    @staticmethod
    def _training_metrics(output: TrainingOutput) -> dict[str, float]:
        metrics = {
            "training_seconds": output.train_seconds,
            "users": float(output.n_users),
            "items": float(output.n_items),
            "likes": float(output.n_likes),
            "events": float(output.n_events),
        }
        if output.offline is not None:
            metrics["offline_precision_at_10"] = output.offline.precision_at_10
            metrics["offline_ndcg_at_10"] = output.offline.ndcg_at_10
            metrics["offline_users_evaluated"] = float(output.offline.users_evaluated)
            metrics["offline_evaluation_seconds"] = output.evaluation_seconds
        return metrics

    async def _status_run_id_when_tracked(
        self, generation: int, version: int, tracking: asyncio.Future[str | None]
    ) -> None:
        try:
            run_id = await tracking
            if run_id is None:
                return
            await self._hset_if_model(
                keys=[self.keys.generation, self.keys.for_generation(generation).pipeline_status],
                args=[generation, version, "mlflow_run_id", run_id, "mlflow_run_url", self._tracker.run_url(run_id)],
            )
        except Exception:  # only the status's link to MLflow is at stake
            log.exception("could not add the MLflow run of model v%d to the status", version)

    async def _write_status(
        self,
        generation: int,
        version: int,
        metrics: dict[str, float],
        seconds: float,
        run_id: str | None,
        events_applied_at_train: int,
    ) -> None:
        status: dict[str, str] = {k: f"{v:.6g}" for k, v in metrics.items()}
        status |= {
            "model_version": str(version),
            "last_trained_at": f"{time.time():.3f}",
            "retrain_seconds": f"{seconds:.3f}",
            # The run's applied events when this model's training began: a restarted pipeline counts from it.
            "events_applied_at_train": str(events_applied_at_train),
        }
        if run_id is not None:
            status |= {"mlflow_run_id": run_id, "mlflow_run_url": self._tracker.run_url(run_id)}
        # Logging to MLflow takes a while: a /cleanup meanwhile has deleted this run's keys, which must stay gone.
        fields = [part for pair in status.items() for part in pair]
        status_key = self.keys.for_generation(generation).pipeline_status
        # Replaced whole: it describes this model only (no offline metrics or MLflow run of an earlier one).
        await self._replace_hash_if_current(keys=[self.keys.generation, status_key], args=[generation, *fields])

    def describe(self) -> dict[str, object]:
        state = self._state
        return {
            "generation": state.generation,
            "events_applied": state.applied_events,
            # What the next retrain learns from: the latest TRAINING_MAX_EVENTS events of the run.
            "events_in_training_window": len(state.log),
            "events_since_train": state.events_since_train,
            # One stored message per accepted /interact call; the collector may send several in one AMQP message
            # (group commit), so "messages_consumed" (AMQP messages) can be the smaller number.
            "messages_stored": state.messages_stored,
            "duplicates": state.duplicates,
            "consumer_connected": self._consumer.connected,
            # Per process from here on (they restart at 0 with it); the figures above are the run's, from Redis.
            "stale_dropped": state.stale_dropped,
            "messages_consumed": self._consumer.consumed,
            "messages_rejected": self._consumer.rejected,
            "training_in_progress": self.training_in_progress,
            "twins": self.twins.describe(),
            "last_retrain": asdict(self.last_retrain) if self.last_retrain else None,
            "last_retrain_check": self.last_retrain_check,
            "mlflow_untracked_retrains": self._tracker.missed_total,
            "mlflow_backlog": self._tracker.backlog,
        }
