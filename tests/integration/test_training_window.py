"""The pipeline keeps only the latest TRAINING_MAX_EVENTS events in memory, on the real Redis and RabbitMQ:
the window is trimmed while it consumes, a restart reloads just the window, and the bandit's counters (and
"events applied") still cover the whole run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import KeyT, StreamIdT, StreamRangeResponse

from pipeline.event_store import EventStore, GroupedEvent
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import EventMessage
from tests.integration.helpers import FailingOnCall, add_items, catalog, eventually, interact, new_id
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration


async def test_a_restart_loads_the_latest_events_and_the_counters_of_the_whole_run(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    monkeypatch.setattr("pipeline.event_store.STREAM_READ_CHUNK", 7)  # several reads each way
    store = EventStore(redis_client, keys)
    events = [
        GroupedEvent(
            EventMessage(
                generation=0,
                user_id=f"user-{n % 4}",
                item_ids=[f"item-{n % 6}", f"item-{(n + 1) % 6}"],
                actions=["like", "dislike" if n % 5 == 0 else "like"],
                timestamp=float(n),
                received_at=float(n),
            ),
            "C",
        )
        for n in range(30)
    ]
    assert await store.store(events, store.new_call_id()) == [1] * 30
    pairs = [
        (grouped.event.user_id, item, action)
        for grouped in events
        for item, action in zip(grouped.event.item_ids, grouped.event.actions, strict=True)
    ]

    windowed = await store.load_run(0, max_events=25)
    whole = await store.load_run(0)
    for state in (windowed, whole):
        assert state.applied_events == 60 and state.messages_stored == 30
        assert state.likes == Counter(item for _, item, action in pairs if action == "like")
        assert state.dislikes == Counter(item for _, item, action in pairs if action == "dislike")
    columns = windowed.log.columns()
    kept = [(columns.user_ids[u], columns.item_ids[i]) for u, i in zip(columns.users, columns.items, strict=True)]
    assert kept == [(user, item) for user, item, _ in pairs[-25:]]  # the latest 25, oldest first
    assert len(whole.log) == 60

    # A chunk size that divides the stream: no read of the (empty) range before the oldest entry, which Redis
    # answers in time linear in the stream's length.
    monkeypatch.setattr("pipeline.event_store.STREAM_READ_CHUNK", 6)
    reads: list[int] = []
    counted_read = redis_client.xrevrange

    async def counting_read(
        name: KeyT, max: StreamIdT = "+", min: StreamIdT = "-", count: int | None = None
    ) -> StreamRangeResponse | None:
        entries = await counted_read(name, max, min, count)
        assert entries is not None
        reads.append(len(entries))
        return entries

    monkeypatch.setattr(redis_client, "xrevrange", counting_read)
    assert len((await store.load_run(0)).log) == 60
    assert reads == [6] * 10
    monkeypatch.setattr(redis_client, "xrevrange", counted_read)
    monkeypatch.setattr("pipeline.event_store.STREAM_READ_CHUNK", 7)

    # A read that times out is retried where it failed: the reload still has every event, once, in order.
    slow_third_read = FailingOnCall(redis_client.xrevrange, 3, RedisTimeoutError("Timeout reading from 127.0.0.1:6379"))
    monkeypatch.setattr(redis_client, "xrevrange", slow_third_read)
    monkeypatch.setattr(EventStore._read_newest_first.retry, "sleep", _no_sleep)
    reloaded = await store.load_run(0)
    assert slow_third_read.calls == 60 // 7 + 2  # every chunk once, the third twice
    assert reloaded.log.columns().items.tolist() == whole.log.columns().items.tolist()
    assert reloaded.log.columns().users.tolist() == whole.log.columns().users.tolist()


async def _no_sleep(_: float) -> None:
    return None


def test_the_pipeline_trims_its_window_while_consuming_and_still_trains(
    stack_factory: Callable[..., ServiceStack],
) -> None:
    stack = stack_factory(TRAINING_MAX_EVENTS="20").start()
    with httpx.Client(timeout=30) as client:
        ids, genres = catalog(30)
        add_items(client, stack.recs_url, ids, genres)
        for n in range(12):
            interact(client, stack.collector_url, new_id("user-"), ids[n : n + 5], ["like"] * 5)

        def trimmed() -> dict[str, int] | None:
            status = client.get(f"{stack.pipeline_url}/status").json()
            return status if status["events_applied"] == 60 and status["events_in_training_window"] <= 22 else None

        status, seconds = eventually(trimmed, timeout_s=10)
        print(f"60 events applied, {status['events_in_training_window']} in the window after {seconds:.2f} s")
        assert status["events_in_training_window"] >= 20
        outcome = client.post(f"{stack.pipeline_url}/retrain").json()
        assert outcome["trained"], outcome
        model = client.get(f"{stack.recs_url}/status").json()["model"]
        assert model["events"] <= 22  # trained on the window, not on all 60
