"""The user store on the real Redis: what a /recs request reads, and what its claim writes (for its items only)."""

from __future__ import annotations

import numpy as np
import pytest
from redis.asyncio import Redis

from pipeline.event_store import STORED, EventStore, GroupedEvent
from recommendations.user_store import UserStore
from recsys_core.algorithms.twins import TwinLift
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import EventMessage
from recsys_io.redis_client import as_str
from tests.support.replies import stream

pytestmark = pytest.mark.integration


async def _counters(redis_client: Redis, keys: GlobalKeys, generation: int) -> dict[str, int]:
    raw = await redis_client.hgetall(keys.for_generation(generation).counters)
    return {as_str(field): int(value) for field, value in raw.items()}


async def test_a_claim_counts_the_items_it_took_not_the_k_asked_for(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    redis_client, keys = redis_and_keys
    store = UserStore(redis_client, keys)
    assert await store.claim(0, "ann", "T", [("a", "bandit"), ("b", "taste")], k=2) == ["a", "b"]
    # k = 3, but of the three candidates only "c" was not shown yet.
    assert await store.claim(0, "ann", "T", [("a", "bandit"), ("c", "explore"), ("b", "bandit")], k=3) == ["c"]

    counters = await _counters(redis_client, keys, 0)
    assert {name: counters[name] for name in ("recs", "impressions", "recs:T", "impressions:T")} == {
        "recs": 2,
        "impressions": 3,
        "recs:T": 2,
        "impressions:T": 3,
    }
    run = keys.for_generation(0)
    assert await redis_client.hgetall(run.item_impressions) == {b"a": b"1", b"b": b"1", b"c": b"1"}
    # Why each item was shown, and to which group (what /debug/users/{id} splits on "|").
    assert await redis_client.hgetall(run.user_sources("ann")) == {
        b"a": b"bandit|T",
        b"b": b"taste|T",
        b"c": b"explore|T",
    }


async def test_a_claim_that_takes_nothing_writes_no_recs_log_entry(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    redis_client, keys = redis_and_keys
    store = UserStore(redis_client, keys)
    assert await store.claim(0, "ann", "C", [("a", "bandit")], k=1) == ["a"]
    assert await store.claim(0, "ann", "C", [("a", "bandit")], k=1) == []  # everything offered was shown already
    entries = stream(await redis_client.xrange(keys.for_generation(0).recs_log))
    assert [fields[b"items"] for _, fields in entries] == [b"a"]


async def test_a_claim_for_an_older_run_is_refused_and_writes_nothing(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    await redis_client.set(keys.generation, 1)  # a /cleanup started run 1 after the request read run 0
    store = UserStore(redis_client, keys)
    assert await store.claim(0, "ann", "C", [("a", "bandit")], k=1) is None
    old = keys.for_generation(0)
    assert await redis_client.exists(old.user_shown("ann"), old.item_impressions, old.recs_log, old.counters) == 0


async def test_a_read_gives_the_history_oldest_first_the_factors_in_the_current_model_and_the_twins(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    events = EventStore(redis_client, keys)
    batch = [
        GroupedEvent(
            EventMessage(generation=0, user_id="ann", item_ids=[item], actions=[action], timestamp=ts, received_at=ts),
            "C",
        )
        for item, action, ts in [("a", "like", 1.5), ("b", "dislike", 2.5), ("c", "like", 3.5)]
    ]
    assert await events.store(batch, events.new_call_id()) == [STORED] * 3
    run = keys.for_generation(0)
    vector = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    await redis_client.hset(run.model_user_factors(7), "ann", vector.tobytes())
    await redis_client.set(run.model_current, 7)
    twins = TwinLift(("x", "y"), np.array([0.5, 0.0], dtype=np.float32), np.array([0.75, 0.25], dtype=np.float32))
    await redis_client.set(run.user_twins("ann"), twins.to_text())

    snapshot = await UserStore(redis_client, keys).read(0, "ann")
    assert [(f.item_id, f.action, f.ts) for f in snapshot.history] == [
        ("a", "like", 1.5),
        ("b", "dislike", 2.5),
        ("c", "like", 3.5),
    ]
    assert snapshot.versions.model == 7
    assert snapshot.user_vector is not None
    np.testing.assert_array_equal(snapshot.user_vector, vector)
    assert snapshot.twins is not None and snapshot.twins.item_ids == ("x", "y")
    assert snapshot.twins.liked.tolist() == [0.5, 0.0] and snapshot.twins.shown.tolist() == [0.75, 0.25]
