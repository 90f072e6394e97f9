from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from recommendations.deps import KeysDep, RedisDep
from recsys_core.schemas import AddItemsRequest, AddItemsResponse
from recsys_io.catalog import StaleGenerationError, TooManyGenresError, add_items
from recsys_io.http import VALIDATION_ERROR_RESPONSE, JsonBody, json_body_openapi, parse_json_body
from recsys_io.redis_client import read_generation

router = APIRouter(tags=["catalog"])

STALE_RETRIES = 4
ADD_ITEMS_BODY = JsonBody.of(AddItemsRequest)


@router.post(
    "/add_items",
    response_model=AddItemsResponse,
    responses={
        **VALIDATION_ERROR_RESPONSE,
        503: {"description": "Redis is unreachable, or the run kept changing while the batch was added"},
    },
    openapi_extra=json_body_openapi(AddItemsRequest),
)
async def add_catalog_items(raw: Request, redis: RedisDep, keys: KeysDep) -> AddItemsResponse:
    """Add (or update the genres of) items; batches accumulate, and items become recommendable at once.

    The body is read as /interact reads it, so that a body sent without a JSON content type is told so.
    """
    request = await parse_json_body(raw, ADD_ITEMS_BODY)
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
