"""The catalog's genre budget on the real Redis: batch after batch, a run holds a bounded number of genre names
(a replica keeps the genres as an items x genres matrix), and a batch over the budget adds nothing."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

import recsys_io.catalog
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import AddItemsRequest
from recsys_io.catalog import TooManyGenresError, add_items, load_catalog


async def test_a_batch_that_would_pass_the_runs_genre_budget_adds_nothing(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    monkeypatch.setattr(recsys_io.catalog, "MAX_DISTINCT_GENRES_PER_RUN", 5)
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["a", "b"], genres=[["g1", "g2"], ["g3"]]))
    # Known genres cost nothing; two new ones fill the budget exactly.
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["c"], genres=[["g1", "g4", "g5"]]))

    with pytest.raises(TooManyGenresError, match="1 new genres and the run already has 5"):
        await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["d", "e"], genres=[["g6"], ["g1"]]))

    catalog = await load_catalog(redis_client, keys.for_generation(0))
    assert catalog.item_ids == ("a", "b", "c")
    assert await redis_client.scard(keys.for_generation(0).catalog_genre_names) == 5
    # Items without genres, or with known ones only, still go in.
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["d"]))
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["e"], genres=[["g2"]]))
    assert len(await load_catalog(redis_client, keys.for_generation(0))) == 5


async def test_a_run_past_its_budget_still_takes_batches_of_known_genres(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    monkeypatch.setattr(recsys_io.catalog, "MAX_DISTINCT_GENRES_PER_RUN", 5)
    # Two batches checked at the same time took the run one over its budget.
    await redis_client.sadd(keys.for_generation(0).catalog_genre_names, *[f"g{n}" for n in range(6)])
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["a"], genres=[["g1", "g5"]]))
    with pytest.raises(TooManyGenresError):
        await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["b"], genres=[["g9"]]))
