"""The pipeline lease on the real Redis: one holder at a time, and a fence on the event store and publications."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from pipeline.event_store import NOT_LEASE_HOLDER, STORE_ROUND_TRIP, STORED, EventStore, GroupedEvent
from pipeline.leadership import LeadershipLost, PipelineLease
from pipeline.node import PipelineNode
from pipeline.publishing import BanditSnapshotPublisher, CoLikesPublisher
from pipeline.runtime import PipelineMetrics, PipelineRuntime
from pipeline.state import RunState
from pipeline.twins import TwinsPublisher
from recsys_core.experiments import load_experiment
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import AddItemsRequest, EventMessage
from recsys_core.settings import Settings
from recsys_core.strategies.base import ItemNeighbours
from recsys_io.catalog import add_items
from tests.integration.helpers import FailingOnCall, a_redis_call_that_swallows_its_cancellation
from tests.support.stack import free_port

pytestmark = pytest.mark.integration

TTL_S = 30.0


def _event(message_id: str) -> GroupedEvent:
    event = EventMessage(
        message_id=message_id,
        generation=0,
        user_id="ann",
        item_ids=["a", "b"],
        actions=["like", "dislike"],
        timestamp=1.0,
        received_at=1.0,
    )
    return GroupedEvent(event, "C")


async def _taken_over(redis_client: Redis, keys: GlobalKeys) -> tuple[PipelineLease, PipelineLease]:
    """A holder paused past its lease, and the process that took the lease meanwhile."""
    paused, leader = PipelineLease(redis_client, keys, TTL_S), PipelineLease(redis_client, keys, TTL_S)
    assert await paused.try_acquire()
    await redis_client.delete(keys.pipeline_leader)  # as if it expired
    assert await leader.try_acquire()
    return paused, leader


async def test_one_holder_at_a_time_and_a_released_lease_is_free_at_once(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    first, second = PipelineLease(redis_client, keys, TTL_S), PipelineLease(redis_client, keys, TTL_S)
    assert await first.try_acquire() and first.held()
    assert not await second.try_acquire() and not second.held()
    assert await second.holder() == first.token
    assert await first.renew()
    assert 0 < await redis_client.pttl(keys.pipeline_leader) <= TTL_S * 1000

    await first.release()
    assert not first.held()
    assert await second.try_acquire()
    assert second.epoch == 2  # every acquisition is a new epoch
    assert not await first.renew()  # released: renewing does not take it back


async def test_a_lapsed_lease_is_taken_back_only_if_nobody_held_it_meanwhile(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    first, second = PipelineLease(redis_client, keys, TTL_S), PipelineLease(redis_client, keys, TTL_S)
    assert await first.try_acquire()
    await redis_client.delete(keys.pipeline_leader)  # it expired (Redis unreachable for longer than the TTL)
    assert await first.renew()
    assert await first.holder() == first.token

    await redis_client.delete(keys.pipeline_leader)  # expired again, and this time another process took it
    assert await second.try_acquire()
    await second.release()  # ... and even gave it back: the first one's state missed that term
    assert not await first.renew()
    assert not first.held() and await first.holder() is None


async def test_the_store_refuses_a_token_that_does_not_hold_the_lease(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    paused, leader = await _taken_over(redis_client, keys)
    store = EventStore(redis_client, keys)
    run = keys.for_generation(0)

    refused = await store.store([_event("m1"), _event("m2")], store.new_call_id(), paused.token)
    assert refused == [NOT_LEASE_HOLDER, NOT_LEASE_HOLDER]
    assert await redis_client.xlen(run.events) == 0 and await redis_client.scard(run.seen_messages) == 0

    stored = await store.store([_event("m1"), _event("m2")], store.new_call_id(), leader.token)
    assert stored == [STORED, STORED] and await redis_client.xlen(run.events) == 4


async def test_a_runtime_that_lost_the_lease_stores_nothing_and_says_so(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    paused, leader = await _taken_over(redis_client, keys)
    settings = Settings(redis_prefix=keys.prefix, mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")
    runtime = PipelineRuntime(
        settings, redis_client, load_experiment(None, None, "blend"), PipelineMetrics(CollectorRegistry()), paused
    )
    try:
        with pytest.raises(LeadershipLost):
            await runtime.handle_batch([_event("m1").event])
        assert runtime.describe()["events_applied"] == 0
        assert not runtime.may_publish()  # its renewal found the other holder: no publication either
    finally:
        await runtime.stop()
    assert await redis_client.xlen(keys.for_generation(0).events) == 0
    assert await leader.holder() == leader.token


async def test_a_node_whose_runtime_found_the_lease_lost_steps_down(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    redis_client, keys = redis_and_keys
    settings = Settings(redis_prefix=keys.prefix, pipeline_lease_s=TTL_S)
    node = PipelineNode(settings, redis_client, load_experiment(None, None, "blend"), CollectorRegistry())
    assert await node.lease.try_acquire()
    stopped: list[bool] = []

    class TermRuntime:  # the term's runtime, as far as the node sees it
        async def stop(self) -> None:
            stopped.append(True)

    node.runtime = TermRuntime()  # type: ignore[assignment]  # a stand-in with only stop()
    await redis_client.delete(keys.pipeline_leader)  # the lease lapsed while the process was paused...
    assert await PipelineLease(redis_client, keys, TTL_S).try_acquire()  # ...and another pipeline took it
    assert not await node.lease.renew()  # what the runtime's fenced store does when the store refuses it

    await node._step()  # the node's next look at the lease

    assert stopped == [True] and node.role == "standby"


async def test_a_standby_stops_even_if_a_lease_call_swallows_its_cancellation(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation that lands during a Redis command can be swallowed inside the client. The lease watch must
    stop anyway: it used to end only by cancellation, so SIGTERM could leave the process renewing until killed."""
    redis_client, keys = redis_and_keys
    assert await PipelineLease(redis_client, keys, TTL_S).try_acquire()  # another pipeline leads
    real_try_acquire = PipelineLease.try_acquire
    attempts = 0
    swallow = True
    watching = asyncio.Event()

    async def try_acquire_that_swallows_cancellation(lease: PipelineLease) -> bool:
        nonlocal attempts
        attempts += 1
        if attempts >= 2:  # the first is start()'s own; from then on the watch is mostly inside this call
            watching.set()
        if swallow:
            await a_redis_call_that_swallows_its_cancellation(0.2)
        return await real_try_acquire(lease)

    monkeypatch.setattr(PipelineLease, "try_acquire", try_acquire_that_swallows_cancellation)
    settings = Settings(redis_prefix=keys.prefix, pipeline_lease_s=1.0)  # a look at the lease every 0.2 s
    node = PipelineNode(settings, redis_client, load_experiment(None, None, "blend"), CollectorRegistry())
    await node.start()
    await asyncio.wait_for(watching.wait(), 10)
    # Not wait_for: its own cancel on the timeout would be a second cancellation, which masks the first one's loss.
    stopping = asyncio.create_task(node.stop())
    try:
        done, _ = await asyncio.wait({stopping}, timeout=10)
        print(f"lease attempts: {attempts}; stop() returned: {bool(done)}")
        assert done, "stop() did not return: the lease watch went on"
        after_stop = attempts
        await asyncio.sleep(3 * node.lease.renew_interval_s)
        assert attempts == after_stop and node.role == "standby"
    finally:
        swallow = False  # on failure, let the stray watch end with the test
        stopping.cancel()
        if node._task is not None:
            node._task.cancel()


async def test_a_node_that_loses_the_lease_while_it_reloads_starts_as_a_standby(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reloading a long run takes minutes, and the lease may be taken meanwhile (the process was paused past its
    lease). The node then steps down; its start-up must end as a standby, not fail the service's start."""
    redis_client, keys = redis_and_keys
    reloading = asyncio.Event()

    class SlowReloadRuntime:  # the term's runtime, as far as the node sees it: a start() that takes long
        def __init__(self, *args: object) -> None:
            pass

        async def start(self) -> None:
            reloading.set()
            await asyncio.sleep(60)

        async def stop(self) -> None:
            pass

    monkeypatch.setattr("pipeline.node.PipelineRuntime", SlowReloadRuntime)
    settings = Settings(redis_prefix=keys.prefix, pipeline_lease_s=1.0)  # a look at the lease every 0.2 s
    node = PipelineNode(settings, redis_client, load_experiment(None, None, "blend"), CollectorRegistry())
    starting = asyncio.create_task(node.start())
    try:
        await asyncio.wait_for(reloading.wait(), 10)
        await redis_client.delete(keys.pipeline_leader)  # the lease lapsed while the process was paused...
        assert await PipelineLease(redis_client, keys, TTL_S).try_acquire()  # ...and another pipeline took it
        await asyncio.wait({starting}, timeout=10)
        assert starting.done(), "start() still waits for a term that was given up"
        assert not starting.cancelled() and starting.exception() is None, repr(starting)
        assert node.role == "standby" and node.terms == 1
    finally:
        starting.cancel()
        await node.stop()


async def test_a_term_that_fails_outright_fails_the_start(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a term given up by a step-down lets start() go on as a standby: an error escaping the term (here the
    runtime's stop() failing while the term cleans up after a failed start) must fail the start, not leave a node
    that renews a lease it leads nothing with."""
    redis_client, keys = redis_and_keys

    class BrokenRuntime:
        def __init__(self, *args: object) -> None:
            pass

        async def start(self) -> None:
            raise RuntimeError("start failed (injected)")

        async def stop(self) -> None:
            raise RuntimeError("stop failed too (injected)")

    monkeypatch.setattr("pipeline.node.PipelineRuntime", BrokenRuntime)
    settings = Settings(redis_prefix=keys.prefix, pipeline_lease_s=1.0)
    node = PipelineNode(settings, redis_client, load_experiment(None, None, "blend"), CollectorRegistry())
    try:
        with pytest.raises(RuntimeError, match="stop failed too"):
            await node.start()
    finally:
        if node._task is not None:
            node._task.cancel()
        await node.lease.release()


async def test_slices_stored_before_a_failing_one_are_applied_in_memory(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    settings = Settings(redis_prefix=keys.prefix, mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")
    runtime = PipelineRuntime(
        settings, redis_client, load_experiment(None, None, "blend"), PipelineMetrics(CollectorRegistry()), None
    )
    second_slice_fails = FailingOnCall(runtime._events.store, 2, ValueError("a slice that cannot be stored"))
    monkeypatch.setattr(runtime._events, "store", second_slice_fails)
    events = [_event(f"m{n}").event for n in range(STORE_ROUND_TRIP + 1)]
    try:
        with pytest.raises(ValueError):
            await runtime.handle_batch(events)
        # The first slice is in Redis, so it must be in memory too (its messages will be dead-lettered, and a
        # replay of them would be recognised as duplicates, never applied).
        assert runtime.describe()["events_applied"] == 2 * STORE_ROUND_TRIP  # two interactions per event
    finally:
        await runtime.stop()
    assert await redis_client.xlen(keys.for_generation(0).events) == 2 * STORE_ROUND_TRIP  # one entry per interaction


async def test_a_paused_ex_leader_publishes_no_snapshot_co_likes_or_twins(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    """Its local lease check may pass just before a pause: Redis must refuse the late writes, or the older snapshot
    stays served until the new leader's state changes (reproduced with two runtimes, 4 likes over the leader's 9)."""
    redis_client, keys = redis_and_keys
    paused, leader = await _taken_over(redis_client, keys)
    run = keys.for_generation(0)
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["a", "b"]))
    state = RunState(0)
    state.apply("ann", "a", "like", 1.0)
    neighbours = ItemNeighbours(np.zeros((2, 1), dtype=np.int32), np.zeros((2, 1), dtype=np.float32))
    settings = Settings(redis_prefix=keys.prefix)

    with ThreadPoolExecutor(max_workers=1) as executor:
        late = [
            BanditSnapshotPublisher(redis_client, keys, paused.token).publish_if_changed(state),
            CoLikesPublisher(redis_client, keys, paused.token).publish(state, neighbours, 1),
            TwinsPublisher(redis_client, keys, settings, executor, lease_token=paused.token)._publish(
                0, {"ann": "lift"}, {"ann": "bob"}
            ),
        ]
        assert [await publication for publication in late] == [None, None, 0]
        written = [run.bandit_snapshot, run.bandit_version, run.co_likes, run.co_likes_version, run.user_twins("ann")]
        assert await redis_client.exists(*written, run.twin_links) == 0

        # The same publications from the lease holder are written.
        assert await BanditSnapshotPublisher(redis_client, keys, leader.token).publish_if_changed(state) == 1
        assert await CoLikesPublisher(redis_client, keys, leader.token).publish(state, neighbours, 1) == 1
        twins = TwinsPublisher(redis_client, keys, settings, executor, lease_token=leader.token)
        assert await twins._publish(0, {"ann": "lift"}, {"ann": "bob"}) == 1
        assert await redis_client.exists(*written, run.twin_links) == len(written) + 1


async def test_an_ex_leader_stopping_does_not_free_the_new_leaders_lease(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    paused, leader = await _taken_over(redis_client, keys)
    await paused.release()  # the paused one stops without having renewed: it still thinks it holds the lease
    assert await leader.holder() == leader.token
    assert not await PipelineLease(redis_client, keys, TTL_S).try_acquire()
