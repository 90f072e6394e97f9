"""The recommendations service across runs and outages, driven directly against the real Redis: a request that
reads during a /cleanup must not leave the old run's versions in the replica's cache, and an empty fallback answer
queues nothing to write back."""

from __future__ import annotations

import numpy as np
from redis.asyncio import Redis

from recommendations.service import RecommendationService
from recsys_core.algorithms.bandit import ItemStats
from recsys_core.experiments import load_experiment
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import AddItemsRequest
from recsys_core.settings import Settings
from recsys_io.catalog import add_items
from recsys_io.generations import delete_generations_before

ITEMS = [f"item-{n}" for n in range(50)]


def _service(redis_client: Redis, keys: GlobalKeys) -> RecommendationService:
    settings = Settings(redis_prefix=keys.prefix)
    return RecommendationService(settings, redis_client, load_experiment(None, None, "blend"))


async def test_a_request_during_a_cleanup_does_not_pin_the_old_runs_versions(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    service = _service(redis_client, keys)
    old_run, new_run = keys.for_generation(0), keys.for_generation(1)
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=ITEMS))
    await redis_client.set(old_run.bandit_snapshot, ItemStats.empty(len(ITEMS)).to_bytes())
    await redis_client.set(old_run.bandit_version, 500)  # a long old run: its versions are high
    await redis_client.set(old_run.co_likes_version, 300)
    await service.recommend("ann", 10)

    # /cleanup has bumped the generation but not yet deleted the old run's keys when the next request reads.
    await redis_client.incr(keys.generation)
    await add_items(redis_client, keys, 1, AddItemsRequest(item_ids=ITEMS))
    during = await service.recommend("bob", 10)
    await delete_generations_before(redis_client, keys, 1)
    # The new run's first snapshots: item-7 is liked by everyone who saw it.
    likes = np.zeros(len(ITEMS), np.float32)
    likes[7] = 1000
    for _ in range(3):
        await redis_client.set(new_run.bandit_snapshot, ItemStats(likes, np.zeros_like(likes), likes).to_bytes())
        await redis_client.incr(new_run.bandit_version)
    after = await service.recommend("cid", 10)

    state = service.cache.state
    print(f"answer during the cleanup {len(during.item_ids)} items; replica at {state.versions}")
    assert len(during.item_ids) == 10
    assert (state.generation, state.bandit_version, state.co_likes_version) == (1, 3, 0)
    assert state.stats.likes[7] == 1000 and "item-7" in after.item_ids


async def test_an_empty_fallback_answer_queues_no_write_back(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    redis_client, keys = redis_and_keys
    service = _service(redis_client, keys)
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=ITEMS[:3]))
    assert len((await service.recommend("ann", 10)).item_ids) == 3  # ann has now seen the whole catalog

    answer = service._fallback("ann", 10, "C")  # what an outage would answer her

    assert answer.item_ids == [] and answer.fallback
    assert not service.memory.has_pending()
    assert await service.flush_fallback_writes() == 0
