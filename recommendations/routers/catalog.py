from __future__ import annotations

from fastapi import APIRouter, HTTPException

from recommendations.deps import KeysDep, RedisDep
from recsys_core.schemas import AddItemsRequest, AddItemsResponse
from recsys_io.catalog import StaleGenerationError, TooManyGenresError, add_items
from recsys_io.redis_client import read_generation

router = APIRouter(tags=["catalog"])

STALE_RETRIES = 4


@router.post(
    "/add_items",
    response_model=AddItemsResponse,
    responses={503: {"description": "Redis is unreachable, or the run kept changing while the batch was added"}},
)
async def add_catalog_items(request: AddItemsRequest, redis: RedisDep, keys: KeysDep) -> AddItemsResponse:
    """Add (or update the genres of) items; batches accumulate, and items become recommendable at once."""
    for _ in range(STALE_RETRIES):
        generation = await read_generation(redis, keys)
        try:
            return await add_items(redis, keys, generation, request)
        except StaleGenerationError:
            continue  # a /cleanup ran meanwhile: the batch belongs to the new run
        except TooManyGenresError as error:
            raise HTTPException(status_code=422, detail=str(error)) from error
    raise HTTPException(
        status_code=503,
        detail=f"the run changed {STALE_RETRIES} times while the batch was added (repeated /cleanup); send it again",
        headers={"Retry-After": "1"},
    )
