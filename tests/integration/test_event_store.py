"""The pipeline's event store on the real Redis: a batch of messages is stored a chunk of messages per script call
and a slice of chunks per round trip, and each message still counts once, whatever else shares its call (a
redelivery, an event of an older run)."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from devstack.stack import free_port, local_url
from pipeline.event_store import DUPLICATE, STALE, STORED, EventStore, GroupedEvent
from pipeline.runtime import PipelineRuntime
from recsys_core.experiments import load_experiment
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import EventMessage
from recsys_core.settings import Settings

pytestmark = pytest.mark.integration


def _grouped(generation: int, user: str, pairs: list[tuple[str, str]], ts: float) -> GroupedEvent:
    items, actions = zip(*pairs, strict=True)
    event = EventMessage(
        generation=generation, user_id=user, item_ids=list(items), actions=list(actions), timestamp=ts, received_at=ts
    )
    return GroupedEvent(event, "C")


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

    results = await store.store(batch)
    print(f"results {results}")
    assert results == [STORED, STORED, DUPLICATE, STALE, STORED]
    assert await store.store([second]) == [DUPLICATE]  # a redelivery after the batch was stored

    run = keys.for_generation(1)
    counters = {k.decode(): int(v) for k, v in (await redis_client.hgetall(run.counters)).items()}
    assert counters == {"messages": 3, "events": 4, "duplicates": 2}
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
    # MLflow on a closed port: the run switch this batch causes must not log to a tracking server of the machine.
    settings = Settings(redis_prefix=keys.prefix, mlflow_tracking_uri=local_url(free_port()))
    runtime = PipelineRuntime(settings, redis_client, load_experiment(None, None, "blend"), CollectorRegistry())
    batch = [_grouped(0, f"user-{n % 3}", [(f"item-{n}", "like")], float(n)).event for n in range(11)]
    try:
        await runtime.handle_batch(batch + batch[:2])  # two redeliveries in the same batch
        status = runtime.describe()
    finally:
        await runtime.stop()

    print(f"stored {status['messages_stored']}, duplicates {status['duplicates']}")
    assert (status["messages_stored"], status["duplicates"], status["events_applied"]) == (11, 2, 11)
    assert await redis_client.xlen(keys.for_generation(0).events) == 11
