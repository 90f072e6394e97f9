"""Adding items on the real Redis: an id already in the run's catalog is updated in place, never appended again."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from recsys_core.keys import GlobalKeys
from recsys_core.schemas import AddItemsRequest
from recsys_io.catalog import add_items, load_catalog

pytestmark = pytest.mark.integration


async def test_an_item_added_again_is_updated_not_duplicated(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    redis_client, keys = redis_and_keys
    first = await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["a", "b"], genres=[["Drama"], ["Drama"]]))
    assert (first.added, first.updated, first.catalog_size) == (2, 0, 2)
    again = await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["b", "c"], genres=[["Comedy"], []]))
    assert (again.added, again.updated, again.catalog_size) == (1, 1, 3)
    catalog = await load_catalog(redis_client, keys.for_generation(0))
    assert catalog.item_ids == ("a", "b", "c")
    assert catalog.genres_of(1) == ("Comedy",)  # the update's genres replace the first ones
