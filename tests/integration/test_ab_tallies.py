"""The claim and store scripts keep each experiment group's per-user sums exactly (real Redis)."""

from __future__ import annotations

import random

import pytest
from redis.asyncio import Redis

from pipeline.event_store import EventStore, GroupedEvent
from recommendations.user_store import UserStore
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import EventMessage
from recsys_io.redis_client import as_str

pytestmark = pytest.mark.integration


async def test_group_sums_match_the_users_totals(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    redis_client, keys = redis_and_keys
    users, store = UserStore(redis_client, keys), EventStore(redis_client, keys)
    rng = random.Random(3)
    totals: dict[str, dict[str, list[int]]] = {"C": {}, "T": {}}  # group -> user -> [likes, shown]
    for step in range(300):
        group = rng.choice(["C", "T"])
        user = f"{group}-{rng.randrange(8)}"
        mine = totals[group].setdefault(user, [0, 0])
        if rng.random() < 0.5:
            candidates = [(f"item-{user}-{mine[1] + i}", "bandit") for i in range(rng.randint(1, 10))]
            claimed = await users.claim(0, user, group, candidates, k=len(candidates))
            assert claimed is not None
            mine[1] += len(claimed)
        else:  # a like (or a dislike, which these sums ignore), possibly before the user was shown anything
            action = rng.choice(["like", "like", "dislike"])
            event = EventMessage(
                generation=0, user_id=user, item_ids=[f"any-{step}"], actions=[action], timestamp=1.0, received_at=1.0
            )
            assert await store.store([GroupedEvent(event, group)], store.new_call_id()) == [1]
            mine[0] += action == "like"

    raw = await redis_client.hgetall(keys.for_generation(0).counters)
    counters = {as_str(field): int(value) for field, value in raw.items()}
    for group, per_user in totals.items():
        expected = {
            "users": len(per_user),
            "likes": sum(likes for likes, _ in per_user.values()),
            "impressions": sum(shown for _, shown in per_user.values()),
            "likes_sq": sum(likes * likes for likes, _ in per_user.values()),
            "impressions_sq": sum(shown * shown for _, shown in per_user.values()),
            "likes_x_impressions": sum(likes * shown for likes, shown in per_user.values()),
        }
        assert {name: counters.get(f"{name}:{group}", 0) for name in expected} == expected, group
