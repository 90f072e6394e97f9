"""A replica's serving-state cache against the real Redis: it reloads only what changed, and the posterior
draws it shares between requests live exactly as long as the bandit evidence they were drawn from."""

from __future__ import annotations

import asyncio

import numpy as np
from redis.asyncio import Redis

from recommendations.serving_state import ServingStateCache, Versions
from recsys_core.algorithms.bandit import ItemStats
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import AddItemsRequest
from recsys_core.settings import Settings
from recsys_io.catalog import add_items
from recsys_io.redis_client import create_redis


async def _publish_bandit(client: Redis, keys: GlobalKeys, likes: list[float], version: int) -> None:
    run = keys.for_generation(0)
    n = len(likes)
    stats = ItemStats(np.array(likes, np.float32), np.zeros(n, np.float32), np.full(n, 10, np.float32))
    await client.set(run.bandit_snapshot, stats.to_bytes())
    await client.set(run.bandit_version, version)


async def test_draws_are_renewed_with_the_evidence_and_kept_across_other_reloads(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    request = AddItemsRequest(item_ids=["a", "b", "c"], genres=[["Drama"], ["Comedy"], ["Drama"]])
    await add_items(redis_client, keys, 0, request)
    await _publish_bandit(redis_client, keys, [1, 2, 3], version=1)
    cache = ServingStateCache(redis_client, keys)

    first = await cache.ensure(Versions(0, 1, 1, 0))
    assert len(first.catalog) == 3 and first.stats.likes.tolist() == [1, 2, 3]
    first.draws.draw("strategy", 1, np.random.default_rng(0), lambda: "draw on bandit v1")

    # Nothing newer: the same state, the same draws.
    assert (await cache.ensure(Versions(0, 1, 1, 0))) is first
    # A newer model pointer (its blob is missing here, so no model loads): the evidence is the same, so are the draws.
    model_only = await cache.ensure(Versions(0, 1, 1, 5))
    assert model_only.model_version == 5 and model_only.draws is first.draws

    # New bandit evidence: the draws start over, so no request ranks on a sample of old evidence.
    await _publish_bandit(redis_client, keys, [0, 0, 9], version=2)
    renewed = await cache.ensure(Versions(0, 1, 2, 5))
    assert renewed.stats.likes.tolist() == [0, 0, 9]
    assert renewed.draws is not first.draws and len(renewed.draws) == 0

    # A late item (catalog v2, same evidence): the arms are padded, and the draws start over too.
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["d"], genres=[["Horror"]]))
    grown = await cache.ensure(Versions(0, 2, 2, 5))
    assert len(grown.catalog) == 4 and grown.stats.likes.size == 4
    assert grown.draws is not renewed.draws


async def test_a_burst_beyond_the_connection_pool_waits_for_a_connection() -> None:
    """More concurrent commands than the pool holds: they wait for a connection (up to the Redis timeout) instead
    of failing with "Too many connections", which a service would take for Redis being down."""
    client = create_redis(Settings(), max_connections=2)
    try:
        replies = await asyncio.gather(*(client.ping() for _ in range(50)))
    finally:
        await client.aclose()
    assert replies == [True] * 50
