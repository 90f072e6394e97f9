"""Model publishing against the real Redis: the item side as a blob, the users' factors as a hash that a /recs
read returns one user at a time, and retired versions removed with all three of their keys."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.typing import EncodableT, KeyT

from devstack.stack import delete_queues, free_port, local_url
from pipeline import runtime as runtime_module
from pipeline import training
from pipeline.publishing import ModelPublisher, PublishRefused
from pipeline.runtime import PipelineMetrics, PipelineRuntime, RetrainOutcome
from pipeline.state import TrainingColumns
from pipeline.tracking import RetrainRecord
from pipeline.training import TrainingOutput
from recommendations.user_store import UserStore
from recsys_core.algorithms.factors import BPRParams, FactorModel
from recsys_core.experiments import load_experiment
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import AddItemsRequest, EventMessage
from recsys_core.settings import Settings
from recsys_io.amqp import dead_letter_queue_name
from recsys_io.catalog import add_items
from recsys_io.redis_client import as_int
from tests.integration.helpers import FailingOnCall
from tests.support.replies import blob

pytestmark = pytest.mark.integration


def _runtime(redis_client: Redis, keys: GlobalKeys) -> PipelineRuntime:
    """A pipeline runtime in this process on the test's prefix, with MLflow unreachable (a closed port)."""
    settings = Settings(redis_prefix=keys.prefix, mlflow_tracking_uri=local_url(free_port()))
    return PipelineRuntime(
        settings, redis_client, load_experiment(None, None, "blend"), PipelineMetrics(CollectorRegistry())
    )


def _model(version: int, users: list[str]) -> FactorModel:
    rng = np.random.default_rng(version)
    return FactorModel(
        version=version,
        user_ids=np.array(users, dtype=np.str_),
        user_factors=rng.normal(size=(len(users), 4)).astype(np.float32),
        item_ids=np.array(["a", "b", "c"], dtype=np.str_),
        item_factors=rng.normal(size=(3, 4)).astype(np.float32),
        neighbour_indices=np.zeros((3, 0), dtype=np.int32),
        neighbour_sims=np.zeros((3, 0), dtype=np.float32),
    )


async def test_a_published_model_serves_user_vectors_from_redis_and_retires_whole_versions(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    run = keys.for_generation(0)
    # Several HSET commands per version, as with many users.
    monkeypatch.setattr("pipeline.publishing.USER_FACTORS_PER_COMMAND", 7)
    publisher = ModelPublisher(redis_client, keys, keep=2)
    users = [f"user-{i}" for i in range(20)]
    models = [_model(version, users[: 10 + version]) for version in (1, 2, 3)]
    for model in models:
        published = await publisher.publish(0, model, {})
        assert published == model.version

    latest = models[-1]
    assert as_int(await redis_client.get(run.model_current)) == 3
    served = FactorModel.from_bytes(blob(await redis_client.get(run.model_blob(3))))
    assert served.user_ids.size == 0  # replicas load no users
    assert await redis_client.hlen(run.model_user_factors(3)) == latest.user_ids.size == 13

    store = UserStore(redis_client, keys)
    snapshot = await store.read(0, "user-12")
    assert snapshot.versions.model == 3 and snapshot.user_vector is not None
    np.testing.assert_array_equal(snapshot.user_vector, latest.user_vector("user-12"))
    assert (await store.read(0, "user-19")).user_vector is None  # not in the training data

    # keep=2: version 1 is gone with its blob, meta and users; versions 2 and 3 stay whole.
    assert not await redis_client.exists(run.model_blob(1), run.model_meta(1), run.model_user_factors(1))
    for version in (2, 3):
        assert await redis_client.exists(run.model_blob(version), run.model_meta(version)) == 2
        assert await redis_client.hlen(run.model_user_factors(version)) == 10 + version


async def test_a_retrain_that_outlives_its_run_recreates_none_of_its_keys(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    """A /cleanup while a retrain runs deletes the old run's keys; the retrain's last steps (a version number, the
    status hash) must not bring any of them back."""
    redis_client, keys = redis_and_keys
    publisher = ModelPublisher(redis_client, keys, keep=2)
    assert await publisher.next_version(0) == 1
    await redis_client.incr(keys.generation)  # the /cleanup
    await redis_client.delete(keys.for_generation(0).model_counter)

    assert await publisher.next_version(0) is None
    runtime = _runtime(redis_client, keys)
    try:
        await runtime._write_status(0, 1, {"likes": 3.0}, 0.5, None, 3)
        await runtime._write_status(1, 1, {"likes": 3.0}, 0.5, None, 3)  # the current run's status is written
    finally:
        await runtime.stop()

    old_run = keys.for_generation(0)
    assert await redis_client.exists(old_run.model_counter, old_run.pipeline_status) == 0
    assert await redis_client.hget(keys.for_generation(1).pipeline_status, "model_version") == b"1"


async def test_a_late_older_model_or_a_publisher_without_the_lease_never_moves_the_pointer(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    run = keys.for_generation(0)
    publisher = ModelPublisher(redis_client, keys, keep=2)
    for version in (6, 7):  # the new leader's models
        assert await publisher.publish(0, _model(version, ["u"]), {}) == version

    # A paused ex-leader resumes with the model it numbered 5 before the takeover.
    with pytest.raises(PublishRefused, match="newer model"):
        await publisher.publish(0, _model(5, ["u"]), {})
    assert as_int(await redis_client.get(run.model_current)) == 7
    assert await redis_client.exists(run.model_blob(7), run.model_blob(6)) == 2  # nothing served was retired
    assert await redis_client.exists(run.model_blob(5), run.model_meta(5), run.model_user_factors(5)) == 0

    await redis_client.set(keys.pipeline_leader, "the-leaders-token")
    with pytest.raises(PublishRefused, match="lost its lease"):
        await publisher.publish(0, _model(8, ["u"]), {}, lease_token="an-ex-leaders-token")
    assert as_int(await redis_client.get(run.model_current)) == 7
    assert await redis_client.exists(run.model_blob(8)) == 0
    assert await publisher.publish(0, _model(8, ["u"]), {}, lease_token="the-leaders-token") == 8


async def test_a_retrain_whose_publication_was_refused_is_tried_again_without_new_events(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["a", "b", "c"]))
    runtime = _runtime(redis_client, keys)
    events = [
        EventMessage(
            generation=0, user_id=f"u{n}", item_ids=["a", "b"], actions=["like", "like"], timestamp=1.0, received_at=1.0
        )
        for n in range(4)
    ]
    try:
        await runtime.handle_batch(events)
        real_publish = runtime._models.publish
        monkeypatch.setattr(runtime._models, "publish", FailingOnCall(real_publish, 1, PublishRefused("refused")))

        refused = await runtime.retrain(force=False)
        assert not refused.trained and runtime.last_retrain == refused
        # No event since, and still due: the scheduled retrain publishes what the refused one could not.
        retried = await runtime.retrain(force=False)
        assert retried.trained and retried.model_version is not None
        assert (await runtime.retrain(force=False)).reason == "no new events since the last retrain"
    finally:
        await runtime.stop()


async def test_the_status_describes_the_latest_model_only(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    redis_client, keys = redis_and_keys
    runtime = _runtime(redis_client, keys)
    try:
        await runtime._write_status(0, 1, {"likes": 3.0, "offline_precision_at_10": 0.2}, 0.5, "run-of-v1", 3)
        await runtime._write_status(0, 2, {"likes": 9.0}, 0.5, None, 9)  # no evaluation, MLflow unreachable
    finally:
        await runtime.stop()
    status = await redis_client.hgetall(keys.for_generation(0).pipeline_status)
    assert status[b"model_version"] == b"2" and status[b"likes"] == b"9"
    assert b"offline_precision_at_10" not in status and b"mlflow_run_id" not in status


async def test_a_publication_whose_reply_was_lost_keeps_the_model_the_pointer_names(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    run = keys.for_generation(0)
    publisher = ModelPublisher(redis_client, keys, keep=2)
    flip = publisher._script

    async def flipped_then_lost(
        keys: Sequence[KeyT] | None = None, args: Iterable[EncodableT] | None = None, client: Redis | None = None
    ) -> NoReturn:
        await flip(keys, args, client)  # the pointer moved...
        raise RedisConnectionError("connection reset by peer (injected)")  # ...and its reply never came

    monkeypatch.setattr(publisher, "_script", flipped_then_lost)
    with pytest.raises(RedisConnectionError):
        await publisher.publish(0, _model(1, ["u"]), {})
    assert as_int(await redis_client.get(run.model_current)) == 1
    assert await redis_client.exists(run.model_blob(1), run.model_meta(1), run.model_user_factors(1)) == 3

    async def lost_before_the_flip(*args: object, **kwargs: object) -> object:
        raise RedisConnectionError("connection reset by peer (injected)")

    monkeypatch.setattr(publisher, "_script", lost_before_the_flip)
    with pytest.raises(RedisConnectionError):
        await publisher.publish(0, _model(2, ["u"]), {})
    assert as_int(await redis_client.get(run.model_current)) == 1
    assert await redis_client.exists(run.model_blob(2), run.model_meta(2), run.model_user_factors(2)) == 0


async def test_a_slow_mlflow_does_not_hold_the_retrain_and_its_run_id_follows(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    monkeypatch.setattr("pipeline.runtime.TRACKING_WAIT_S", 0.2)
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["a", "b", "c"]))
    runtime = _runtime(redis_client, keys)

    def slow_log_retrain(record: object) -> str:
        time.sleep(1.0)  # MLflow answers its health check, then takes its time
        return "late-run"

    monkeypatch.setattr(runtime._tracker, "log_retrain", slow_log_retrain)
    monkeypatch.setattr(runtime._tracker, "run_url", lambda run_id: f"http://mlflow/#/runs/{run_id}")
    event = EventMessage(generation=0, user_id="u", item_ids=["a"], actions=["like"], timestamp=1.0, received_at=1.0)
    status_key = keys.for_generation(0).pipeline_status
    try:
        await runtime.handle_batch([event])
        started = time.monotonic()
        outcome = await runtime.retrain(force=True)
        assert outcome.trained and outcome.mlflow_run_id is None and time.monotonic() - started < 1.0
        assert await redis_client.hget(status_key, "model_version") == str(outcome.model_version).encode()
        assert await redis_client.hget(status_key, "mlflow_run_id") is None
        await asyncio.wait_for(asyncio.gather(*runtime._late_tracking), timeout=5)  # MLflow answered at last
        assert await redis_client.hget(status_key, "mlflow_run_id") == b"late-run"
    finally:
        await runtime.stop()


async def _scheduling_runtime(redis_client: Redis, keys: GlobalKeys) -> PipelineRuntime:
    """A runtime whose start() runs the retrain schedule (every 0.2 s) and a consumer on queues of the test's own;
    end it with _stop_and_delete_its_queues."""
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["a", "b", "c"]))
    settings = Settings(
        redis_prefix=keys.prefix,
        mlflow_tracking_uri=local_url(free_port()),
        events_queue=f"test.{keys.prefix.replace(':', '.')}.events",
        retrain_interval_s=0.2,
    )
    return PipelineRuntime(
        settings, redis_client, load_experiment(None, None, "blend"), PipelineMetrics(CollectorRegistry())
    )


async def _stop_and_delete_its_queues(runtime: PipelineRuntime) -> None:
    await runtime.stop()
    queue = runtime.settings.events_queue
    await asyncio.to_thread(delete_queues, runtime.settings.amqp_url, [queue, dead_letter_queue_name(queue)])


async def test_stop_lets_a_scheduled_retrain_in_flight_write_its_status(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler's shutdown cancels the jobs it runs. A scheduled retrain whose model is served and which waits
    for MLflow when the pipeline stops must still write its status and outcome (a restarted process takes the
    served model's figures from that status), as a manual one does. The consumer is closed first: its unacked
    deliveries go back to the broker, for the next leader, without waiting for the retrain."""
    redis_client, keys = redis_and_keys
    monkeypatch.setattr("pipeline.runtime.TRACKING_WAIT_S", 4.0)
    runtime = await _scheduling_runtime(redis_client, keys)
    tracking = threading.Event()
    consumer_closed = threading.Event()
    closed_while_mlflow_was_slow: list[bool] = []
    close_consumer = runtime._consumer.close

    async def close_and_tell() -> None:
        await close_consumer()
        consumer_closed.set()

    def slow_log_retrain(record: RetrainRecord) -> str:
        tracking.set()
        # MLflow answers its health check, then takes its time (less than the retrain waits for it)
        closed_while_mlflow_was_slow.append(consumer_closed.wait(3.0))
        return "slow-run"

    monkeypatch.setattr(runtime._consumer, "close", close_and_tell)

    monkeypatch.setattr(runtime._tracker, "log_retrain", slow_log_retrain)
    monkeypatch.setattr(runtime._tracker, "run_url", lambda run_id: f"http://mlflow/#/runs/{run_id}")
    event = EventMessage(generation=0, user_id="u", item_ids=["a"], actions=["like"], timestamp=1.0, received_at=1.0)
    run = keys.for_generation(0)
    try:
        await runtime.handle_batch([event])
        await runtime.start()
        assert await asyncio.to_thread(tracking.wait, 30)  # the scheduled retrain published and waits for MLflow
        assert await redis_client.get(run.model_current) == b"1"
    finally:
        await _stop_and_delete_its_queues(runtime)
    status = await redis_client.hgetall(run.pipeline_status)
    print(f"after stop(): last retrain {runtime.last_retrain}; status {status}")
    assert runtime.last_retrain is not None and runtime.last_retrain.reason == "published"
    assert status[b"model_version"] == b"1" and status[b"mlflow_run_id"] == b"slow-run"
    assert runtime.last_retrain_check is not None and runtime.last_retrain_check["trained"] is True
    assert closed_while_mlflow_was_slow == [True], "stop() closed the consumer only after the retrain"


async def test_a_scheduled_retrain_past_its_grace_at_stop_is_cancelled_and_leaves_no_keys(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """stop() gives a scheduled retrain in flight a bounded grace, then cancels it: nothing runs on after the
    executors are shut down, and a model written but not flipped is deleted."""
    redis_client, keys = redis_and_keys
    monkeypatch.setattr("pipeline.runtime.RETRAIN_FINISH_ON_STOP_S", 0.5)
    runtime = await _scheduling_runtime(redis_client, keys)
    at_flip = asyncio.Event()
    flip = runtime._models._script

    async def stuck_flip(
        keys: Sequence[KeyT] | None = None, args: Iterable[EncodableT] | None = None, client: Redis | None = None
    ) -> object:
        at_flip.set()
        await asyncio.sleep(60)  # a Redis far slower than its timeout
        return await flip(keys, args, client)

    monkeypatch.setattr(runtime._models, "_script", stuck_flip)
    event = EventMessage(generation=0, user_id="u", item_ids=["a"], actions=["like"], timestamp=1.0, received_at=1.0)
    run = keys.for_generation(0)
    try:
        await runtime.handle_batch([event])
        await runtime.start()
        await asyncio.wait_for(at_flip.wait(), 30)  # the scheduled retrain wrote its model and is at the flip
        assert await redis_client.exists(run.model_blob(1), run.model_meta(1), run.model_user_factors(1)) == 3
    finally:
        await _stop_and_delete_its_queues(runtime)
    retrain = runtime._scheduled_retrain_task
    assert retrain is not None and retrain.done(), "the retrain runs on after stop()"
    assert await redis_client.get(run.model_current) is None
    assert await redis_client.exists(run.model_blob(1), run.model_meta(1), run.model_user_factors(1)) == 0


async def test_a_publication_cancelled_before_its_pointer_flip_leaves_no_keys(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    run = keys.for_generation(0)
    publisher = ModelPublisher(redis_client, keys, keep=2)
    flip = publisher._script
    at_flip = asyncio.Event()

    async def slow_flip(
        keys: Sequence[KeyT] | None = None, args: Iterable[EncodableT] | None = None, client: Redis | None = None
    ) -> object:
        at_flip.set()
        await asyncio.sleep(30)  # cancelled here: the model's keys are written, the pointer not moved
        return await flip(keys, args, client)

    monkeypatch.setattr(publisher, "_script", slow_flip)
    publication = asyncio.create_task(publisher.publish(0, _model(1, ["u"]), {}))
    await asyncio.wait_for(at_flip.wait(), 10)
    assert await redis_client.exists(run.model_blob(1), run.model_meta(1), run.model_user_factors(1)) == 3
    publication.cancel()
    with pytest.raises(asyncio.CancelledError):
        await publication
    assert await redis_client.get(run.model_current) is None
    assert await redis_client.exists(run.model_blob(1), run.model_meta(1), run.model_user_factors(1)) == 0


async def test_stop_ends_a_fit_in_progress_after_its_current_iteration(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit on a large history runs for minutes; a stopping pipeline (SIGTERM, a lost lease) must not keep a core
    busy that long, nor hold the process's exit until the fit's thread ends."""
    redis_client, keys = redis_and_keys
    items = [f"item-{i}" for i in range(50)]
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=items))
    # Millions of iterations on a small history: without the stop, this fit would run for many minutes.
    settings = Settings(
        redis_prefix=keys.prefix, mlflow_tracking_uri=local_url(free_port()), bpr_iterations=5_000_000, bpr_factors=4
    )
    runtime = PipelineRuntime(
        settings, redis_client, load_experiment(None, None, "blend"), PipelineMetrics(CollectorRegistry())
    )
    fitting = threading.Event()
    real_fit = training.fit_model  # what pipeline.runtime imported, and calls through its own module

    def fit_and_tell(
        columns: TrainingColumns,
        catalog_ids: list[str],
        params: BPRParams,
        holdout_fraction: float,
        evaluate: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainingOutput | None:
        fitting.set()
        return real_fit(columns, catalog_ids, params, holdout_fraction, evaluate, should_stop)

    monkeypatch.setattr(runtime_module, "fit_model", fit_and_tell)
    events = [
        EventMessage(
            generation=0,
            user_id=f"u{n}",
            item_ids=items[n : n + 3],
            actions=["like"] * 3,
            timestamp=1.0,
            received_at=1.0,
        )
        for n in range(20)
    ]
    retrain: asyncio.Task[RetrainOutcome] | None = None
    try:
        await runtime.handle_batch(events)
        retrain = asyncio.create_task(runtime.retrain(force=True))
        assert await asyncio.to_thread(fitting.wait, 30)
        await asyncio.sleep(0.2)  # some iterations in
    finally:
        await runtime.stop()
    assert retrain is not None
    outcome = await asyncio.wait_for(retrain, 60)  # a bound for the failure case only: it takes one iteration
    assert not outcome.trained
    print(f"retrain outcome after stop(): {outcome.reason}")
    match = re.search(r"stopped after (\d+) of 5000000 BPR iterations", outcome.reason or "")
    assert match is not None and 1 <= int(match.group(1)) < 5_000_000
    assert await redis_client.get(keys.for_generation(0).model_current) is None


async def test_a_manual_retrain_asked_of_a_stopped_runtime_says_it_is_stopping(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    """A POST /retrain that reaches the runtime of a term being given up (a step-down shuts its executors down)
    gets the stopping outcome, not an error from an executor that takes no more work."""
    redis_client, keys = redis_and_keys
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["a", "b", "c"]))
    runtime = _runtime(redis_client, keys)
    event = EventMessage(generation=0, user_id="u", item_ids=["a"], actions=["like"], timestamp=1.0, received_at=1.0)
    await runtime.handle_batch([event])
    await runtime.stop()
    outcome = await runtime.retrain(force=True)
    print(f"retrain after stop(): {outcome}")
    assert not outcome.trained and outcome.reason.startswith(runtime_module.STOPPING_REASON)
    assert await redis_client.get(keys.for_generation(0).model_current) is None


async def test_a_new_pipeline_process_takes_over_the_served_models_figures(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    """A restart (or a standby taking over) reads the served model's version and the events it was trained on
    from the run's status: /metrics shows the version at once, and no retrain on unchanged data is forced."""
    redis_client, keys = redis_and_keys
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["a", "b", "c"]))
    events = [
        EventMessage(
            generation=0, user_id=f"u{n}", item_ids=["a", "b"], actions=["like", "like"], timestamp=1.0, received_at=1.0
        )
        for n in range(3)
    ]
    first = _runtime(redis_client, keys)
    try:
        await first.handle_batch(events)
        outcome = await first.retrain(force=True)
        assert outcome.trained
    finally:
        await first.stop()

    second = _runtime(redis_client, keys)
    try:
        await second._switch_to_current_generation()  # what its start does
        described = second.describe()
        print(f"after the restart: {described['last_retrain']}, events since train {described['events_since_train']}")
        assert described["events_applied"] == 6 and described["events_since_train"] == 0
        last_retrain = described["last_retrain"]
        assert isinstance(last_retrain, dict) and last_retrain["model_version"] == outcome.model_version
        assert second.metrics.model_version._value.get() == outcome.model_version
        scheduled = await second.retrain(force=False)
        assert not scheduled.trained and scheduled.reason == "no new events since the last retrain"
        assert second.metrics.retrains.labels("skipped")._value.get() == 1
    finally:
        await second.stop()


async def test_a_manual_retrain_asked_during_one_with_no_new_events_gets_its_model(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["a", "b", "c"]))
    runtime = _runtime(redis_client, keys)
    fitting, release = threading.Event(), threading.Event()
    real_fit = training.fit_model  # what pipeline.runtime imported, and calls through its own module

    def held_fit(
        columns: TrainingColumns,
        catalog_ids: list[str],
        params: BPRParams,
        holdout_fraction: float,
        evaluate: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainingOutput | None:
        fitting.set()
        release.wait(30)
        return real_fit(columns, catalog_ids, params, holdout_fraction, evaluate, should_stop)

    monkeypatch.setattr(runtime_module, "fit_model", held_fit)
    event = EventMessage(generation=0, user_id="u", item_ids=["a"], actions=["like"], timestamp=1.0, received_at=1.0)
    try:
        await runtime.handle_batch([event])
        scheduled = asyncio.create_task(runtime.retrain(force=False))
        assert await asyncio.to_thread(fitting.wait, 30)
        manual = asyncio.create_task(runtime.retrain(force=True))  # POST /retrain while the scheduled one fits
        await asyncio.sleep(0.1)
        release.set()
        first, second = await asyncio.wait_for(asyncio.gather(scheduled, manual), 60)
    finally:
        await runtime.stop()
    assert first.trained and second.trained and second.model_version == first.model_version
    assert second.reason == "published by the retrain that was running; no new events since"
    assert runtime.metrics.retrains.labels("published")._value.get() == 1
