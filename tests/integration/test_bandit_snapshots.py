"""The pipeline's bandit snapshots against the real Redis: impressions follow the recs log incrementally and stay
equal to the counts the claim script keeps, through a trimmed log and a growing catalog, on Redis 7 and before."""

from __future__ import annotations

import numpy as np
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pipeline import publishing
from pipeline.publishing import BanditSnapshotPublisher
from pipeline.state import RunState
from recommendations.user_store import UserStore
from recsys_core.algorithms.bandit import ItemStats
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import AddItemsRequest
from recsys_io.catalog import add_items
from tests.support.replies import blob

pytestmark = pytest.mark.integration


async def _published(redis: Redis, keys: GlobalKeys) -> ItemStats:
    return ItemStats.from_bytes(blob(await redis.get(keys.for_generation(0).bandit_snapshot)))


async def _claimed_counts(redis: Redis, keys: GlobalKeys, ids: list[str]) -> np.ndarray:
    counts = await redis.hgetall(keys.for_generation(0).item_impressions)
    return np.array([int(counts.get(item.encode(), 0)) for item in ids], dtype=np.float32)


@pytest.mark.parametrize("server", ["redis 7", "before redis 7"])
async def test_impressions_follow_the_recs_log_and_match_the_claimed_counts(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    redis, keys = redis_and_keys
    # Before Redis 7, XINFO STREAM has no entries-added: gaps are found by the log's ids, which cannot tell a
    # trimmed gap from a log whose oldest entry is simply the next one, so that case is read in full too.
    before_7 = server == "before redis 7"
    if before_7:
        monkeypatch.setattr(publishing, "_entries_added", lambda info: None)
    ids = [f"item-{n}" for n in range(12)]
    await add_items(redis, keys, 0, AddItemsRequest(item_ids=ids))
    store = UserStore(redis, keys)
    publisher = BanditSnapshotPublisher(redis, keys)
    state = RunState(0)
    state.apply("u0", "item-1", "like", 1.0)
    state.apply("u0", "item-2", "dislike", 1.0)

    async def show(user: str, items: list[str]) -> None:
        assert await store.claim(0, user, "C", [(item, "bandit") for item in items], len(items))

    async def check(full_reads: int, full_reads_before_7: int) -> None:
        assert await publisher.publish_if_changed(state) is not None
        stats = await _published(redis, keys)
        catalog = await publisher.catalog_ids(0)
        np.testing.assert_array_equal(stats.impressions, await _claimed_counts(redis, keys, list(catalog)))
        assert stats.likes[catalog.index("item-1")] == 1 and stats.dislikes[catalog.index("item-2")] == 1
        assert publisher.full_reads == (full_reads_before_7 if before_7 else full_reads)

    await check(1, 1)  # nothing shown yet: the first snapshot reads the (empty) hash
    await show("u1", ids[:5])
    await show("u2", ids[3:9])
    await check(1, 2)  # counted from the log's new entries
    for user in range(30):
        await show(f"v{user}", ids[user % 12 : user % 12 + 3])
    await check(1, 2)

    # The log was trimmed past the last entry counted (a pipeline far behind): the counts are read again.
    await show("u3", ids[:2])
    await redis.xtrim(keys.for_generation(0).recs_log, maxlen=0)
    await show("u4", ids[5:7])
    await check(2, 3)
    await show("u5", ids[7:10])
    await check(2, 3)
    # Trimmed to nothing: no entry is left to show the gap, only the log's last id.
    await show("u8", ids[1:4])
    await redis.xtrim(keys.for_generation(0).recs_log, maxlen=0)
    await check(3, 4)
    await show("u9", ids[2:5])
    await check(3, 5)

    # A new catalog version: its items are counted from the hash, then from the log again.
    await add_items(redis, keys, 0, AddItemsRequest(item_ids=["late-item"]))
    await show("u6", ["late-item", "item-0"])
    await check(4, 6)
    await show("u7", ["late-item"])
    await check(4, 6)
    stats = await _published(redis, keys)
    assert stats.impressions[-1] == 2  # the late item, shown twice


async def test_an_unreadable_log_is_an_error_not_an_empty_log(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    """Only "no such key" means nothing was shown yet; any other error (here a key of the wrong type) must not
    leave the impressions at what the hash said while the log is ignored."""
    redis, keys = redis_and_keys
    await add_items(redis, keys, 0, AddItemsRequest(item_ids=["a", "b"]))
    await redis.set(keys.for_generation(0).recs_log, "not a stream")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await BanditSnapshotPublisher(redis, keys).publish_if_changed(RunState(0))
