from __future__ import annotations

from fastapi import APIRouter

from recommendations.deps import KeysDep, RedisDep
from recsys_core.schemas import AddItemsRequest, AddItemsResponse
from recsys_io.catalog import StaleGenerationError, add_items
from recsys_io.redis_client import read_generation

router = APIRouter(tags=["catalog"])

STALE_RETRIES = 3


@router.post("/add_items", response_model=AddItemsResponse)
async def add_catalog_items(request: AddItemsRequest, redis: RedisDep, keys: KeysDep) -> AddItemsResponse:
    """Add (or update the genres of) items; batches accumulate, and items become recommendable at once."""
    for _ in range(STALE_RETRIES):
        generation = await read_generation(redis, keys)
        try:
            return await add_items(redis, keys, generation, request)
        except StaleGenerationError:
            continue  # a /cleanup ran meanwhile: the batch belongs to the new run
    return await add_items(redis, keys, await read_generation(redis, keys), request)
