"""The pipeline's event store on the real Redis: a batch of messages is stored a chunk of messages per script call
and a slice of chunks per round trip, and each message still counts once, whatever else shares its call (a
redelivery, an event of an older run)."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.typing import EncodableT, ExpiryT, KeyT

from devstack.stack import free_port, local_url
from pipeline.event_store import DUPLICATE, STALE, STORED, EventStore, GroupedEvent
from pipeline.runtime import PipelineMetrics, PipelineRuntime
from pipeline.state import RunState
from recsys_core.experiments import load_experiment
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import EventMessage
from recsys_core.settings import Settings
from recsys_io.redis_client import as_str

pytestmark = pytest.mark.integration


def _grouped(generation: int, user: str, pairs: list[tuple[str, str]], ts: float) -> GroupedEvent:
    items, actions = zip(*pairs, strict=True)
    event = EventMessage(
        generation=generation, user_id=user, item_ids=list(items), actions=list(actions), timestamp=ts, received_at=ts
    )
    return GroupedEvent(event, "C")


async def _status_after_handling(redis_client: Redis, keys: GlobalKeys, batch: list[EventMessage]) -> dict[str, object]:
    """A pipeline runtime (not started) handles ``batch`` as its consumer would; its status afterwards."""
    # MLflow on a closed port: a run switch the batch causes must not log to a tracking server of the machine.
    settings = Settings(redis_prefix=keys.prefix, mlflow_tracking_uri=local_url(free_port()))
    runtime = PipelineRuntime(
        settings, redis_client, load_experiment(None, None, "blend"), PipelineMetrics(CollectorRegistry())
    )
    try:
        await runtime.handle_batch(batch)
        return runtime.describe()
    finally:
        await runtime.stop()


async def test_a_batch_stores_each_message_once_across_chunks_and_runs(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    monkeypatch.setattr("pipeline.event_store.STORE_CHUNK", 2)  # several script calls in one round trip
    await redis_client.set(keys.generation, 1)
    store = EventStore(redis_client, keys)
    first = _grouped(1, "ann", [("a", "like"), ("b", "dislike")], 1.0)
    second = _grouped(1, "bob", [("a", "like")], 2.0)
    older_run = _grouped(0, "ann", [("c", "like")], 3.0)
    third = _grouped(1, "ann", [("c", "like")], 4.0)
    batch = [first, second, first, older_run, third]

    results = await store.store(batch, store.new_call_id())
    print(f"results {results}")
    assert results == [STORED, STORED, DUPLICATE, STALE, STORED]
    assert await store.store([second], store.new_call_id()) == [DUPLICATE]  # a redelivery after the batch was stored

    run = keys.for_generation(1)
    counters = {as_str(k): int(v) for k, v in (await redis_client.hgetall(run.counters)).items()}
    # Per experiment group too (the live A/B counters): each stored event once; ann liked 2 items, bob 1.
    per_group = {"likes:C": 3, "dislikes:C": 1, "users:C": 2, "likes_sq:C": 2 * 2 + 1, "likes_x_impressions:C": 0}
    assert counters == {"messages": 3, "events": 4, "duplicates": 2, **per_group}
    assert await redis_client.xlen(run.events) == 4
    assert await redis_client.hgetall(run.item_likes) == {b"a": b"2", b"c": b"1"}
    assert await redis_client.hgetall(run.item_dislikes) == {b"b": b"1"}
    assert await redis_client.hgetall(run.user_feedback("ann")) == {b"a": b"like", b"b": b"dislike", b"c": b"like"}
    history = [json.loads(raw) for raw in await redis_client.lrange(run.user_history("ann"), 0, -1)]
    assert [(entry["item_id"], entry["action"], entry["ts"]) for entry in history] == [
        ("c", "like", 4.0),  # newest first
        ("b", "dislike", 1.0),
        ("a", "like", 1.0),
    ]
    # The older run's message changed nothing, in its own run either.
    assert await redis_client.exists(keys.for_generation(0).events, keys.for_generation(0).counters) == 0

    reloaded = await store.load_run(1)
    assert reloaded.messages_stored == 3 and reloaded.applied_events == 4 and reloaded.duplicates == 2


async def test_the_pipeline_stores_a_long_batch_in_slices_and_applies_every_message(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of group-committed messages longer than one round trip: every slice is stored, none twice."""
    redis_client, keys = redis_and_keys
    monkeypatch.setattr("pipeline.runtime.STORE_ROUND_TRIP", 4)
    monkeypatch.setattr("pipeline.event_store.STORE_CHUNK", 3)
    batch = [_grouped(0, f"user-{n % 3}", [(f"item-{n}", "like")], float(n)).event for n in range(11)]
    status = await _status_after_handling(redis_client, keys, batch + batch[:2])  # two redeliveries in the batch

    print(f"stored {status['messages_stored']}, duplicates {status['duplicates']}")
    assert (status["messages_stored"], status["duplicates"], status["events_applied"]) == (11, 2, 11)
    assert await redis_client.xlen(keys.for_generation(0).events) == 11


async def test_a_retry_of_a_call_whose_reply_was_lost_gets_that_calls_replies(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis ran the call but the connection dropped before the reply came back: the retry (same call id) must
    answer "stored" for what that call stored, and count nothing twice; another call still sees redeliveries."""
    redis_client, keys = redis_and_keys
    monkeypatch.setattr("pipeline.event_store.STORE_CHUNK", 2)
    store = EventStore(redis_client, keys)
    fresh = _grouped(0, "ann", [("a", "like")], 1.0)
    stored_before = _grouped(0, "bob", [("b", "like")], 2.0)
    await store.store([stored_before], store.new_call_id())
    batch = [fresh, stored_before, fresh, _grouped(0, "cid", [("c", "dislike")], 3.0)]
    call_id = store.new_call_id()

    first_try = await store.store(batch, call_id)  # the reply the pipeline never received
    retry = await store.store(batch, call_id)
    other_call = await store.store(batch, store.new_call_id())

    print(f"first try {first_try}, retry {retry}, another call {other_call}")
    assert first_try == retry == [STORED, DUPLICATE, DUPLICATE, STORED]
    assert other_call == [DUPLICATE] * 4
    counters = {as_str(k): int(v) for k, v in (await redis_client.hgetall(keys.for_generation(0).counters)).items()}
    per_group = {"likes:C": 2, "dislikes:C": 1, "users:C": 2, "likes_sq:C": 2, "likes_x_impressions:C": 0}
    assert counters == {"messages": 3, "events": 3, "duplicates": 2 + 4, **per_group}
    assert await redis_client.xlen(keys.for_generation(0).events) == 3


async def test_the_pipeline_applies_the_events_of_a_store_whose_reply_was_lost(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline's view of the run (what its bandit snapshots count) must hold the events of a slice whose first
    try reached Redis and then failed on the way back."""
    redis_client, keys = redis_and_keys
    store_for_real = EventStore.store
    tries: list[str] = []

    async def reply_lost_once(self: EventStore, events: list[GroupedEvent], call_id: str) -> list[int]:
        replies = await store_for_real(self, events, call_id)
        tries.append(call_id)
        if len(tries) == 1:
            raise RedisConnectionError("connection dropped after the script ran")
        return replies

    monkeypatch.setattr(EventStore, "store", reply_lost_once)
    batch = [_grouped(0, f"user-{n}", [(f"item-{n}", "like"), ("x", "dislike")], float(n)).event for n in range(5)]
    status = await _status_after_handling(redis_client, keys, batch)

    print(f"tries {len(tries)}, stored {status['messages_stored']}, duplicates {status['duplicates']}")
    assert len(tries) == 2 and tries[0] == tries[1]
    assert (status["messages_stored"], status["duplicates"], status["events_applied"]) == (5, 0, 10)


async def test_the_pipeline_retries_a_store_that_redis_refused(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused write (READONLY after a failover, OOM) is an outage like a lost connection: retried, not fatal."""
    redis_client, keys = redis_and_keys
    store_for_real = EventStore.store
    tries: list[str] = []

    async def refused_once(self: EventStore, events: list[GroupedEvent], call_id: str) -> list[int]:
        tries.append(call_id)
        if len(tries) == 1:
            raise ResponseError("READONLY You can't write against a read only replica.")
        return await store_for_real(self, events, call_id)

    monkeypatch.setattr(EventStore, "store", refused_once)
    status = await _status_after_handling(redis_client, keys, [_grouped(0, "ann", [("a", "like")], 1.0).event])

    assert len(tries) == 2 and (status["messages_stored"], status["events_applied"]) == (1, 1)


async def test_a_generation_switch_that_redis_interrupts_is_retried(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first event of a new run makes the consumer switch runs; Redis failing during that reload must not end
    consumption (the error escaped handle_batch and the consumer task died)."""
    redis_client, keys = redis_and_keys
    load_for_real = EventStore.load_run
    loads: list[int] = []

    async def fails_once(self: EventStore, generation: int, max_events: int = 0) -> RunState:
        loads.append(generation)
        if len(loads) == 1:
            raise RedisConnectionError("connection dropped while loading the run")
        return await load_for_real(self, generation, max_events)

    monkeypatch.setattr(EventStore, "load_run", fails_once)
    await redis_client.set(keys.generation, 1)  # a /cleanup the watch loop has not noticed yet
    status = await _status_after_handling(redis_client, keys, [_grouped(1, "ann", [("a", "like")], 1.0).event])

    assert loads == [1, 1] and (status["generation"], status["messages_stored"]) == (1, 1)


async def test_a_switch_interrupted_after_the_reload_is_done_again_in_full(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis failing at the switch's last step (its acknowledgement to /cleanup) once switched the run in memory
    only: the retry found the run current and returned, so /cleanup waited its full timeout at every later call,
    and the run kept the previous run's uid (its retrains tagged with the old run's in MLflow)."""
    redis_client, keys = redis_and_keys
    set_for_real = redis_client.set
    acknowledgements: list[EncodableT] = []

    # The runtime's SETs: the acknowledgement (a key and its value), and the heartbeat (with px)
    async def ack_fails_once(name: KeyT, value: EncodableT, px: ExpiryT | None = None) -> bool | str | bytes | None:
        if name == keys.pipeline_generation:
            acknowledgements.append(value)
            if len(acknowledgements) == 1:
                raise RedisConnectionError("connection dropped before the acknowledgement")
        return await set_for_real(name, value, px=px)

    settings = Settings(redis_prefix=keys.prefix, mlflow_tracking_uri=local_url(free_port()))
    runtime = PipelineRuntime(
        settings, redis_client, load_experiment(None, None, "blend"), PipelineMetrics(CollectorRegistry())
    )
    try:
        await runtime._switch_to_current_generation()
        monkeypatch.setattr(redis_client, "set", ack_fails_once)
        await redis_client.incr(keys.generation)  # a /cleanup
        await runtime.handle_batch([_grouped(1, "ann", [("a", "like")], 1.0).event])
        status = runtime.describe()
    finally:
        await runtime.stop()

    assert acknowledgements == [1, 1]
    assert await redis_client.get(keys.pipeline_generation) == b"1"
    run_uid = await redis_client.get(keys.for_generation(1).run_uid)
    assert run_uid is not None and runtime._run_uid == as_str(run_uid)
    assert (status["generation"], status["messages_stored"]) == (1, 1)


async def test_events_of_a_run_redis_lost_are_stored_and_its_generation_put_back(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    """Redis restarted without its data reads generation 0: the queued events of run 2, each confirmed with a 200,
    were dropped as an older run's (reproduced: 500 of 500). The run's generation is restored and they are kept."""
    redis_client, keys = redis_and_keys
    batch = [_grouped(2, user, [("a", "like")], 1.0).event for user in ("ann", "bob", "cy")]

    status = await _status_after_handling(redis_client, keys, batch)

    assert (status["generation"], status["messages_stored"], status["stale_dropped"]) == (2, 3, 0)
    assert await redis_client.get(keys.generation) == b"2"
    assert await redis_client.xlen(keys.for_generation(2).events) == 3


async def test_a_users_history_keeps_the_latest_entries_up_to_the_cap(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    monkeypatch.setattr("pipeline.event_store.HISTORY_CAP", 2)
    store = EventStore(redis_client, keys)
    batch = [_grouped(0, "ann", [(f"item-{n}", "like")], float(n)) for n in range(3)]
    assert await store.store(batch, store.new_call_id()) == [STORED] * 3
    history = [json.loads(raw) for raw in await redis_client.lrange(keys.for_generation(0).user_history("ann"), 0, -1)]
    assert [entry["item_id"] for entry in history] == ["item-2", "item-1"]  # newest first, 2 kept
