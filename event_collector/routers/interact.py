from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import TypeAdapter

from event_collector.generation import GenerationSource
from event_collector.publisher import BrokerUnavailable, EventPublisher
from recsys_core.schemas import (
    EventMessage,
    IdempotencyKey,
    InteractRequest,
    InteractResponse,
    idempotent_message_id,
)
from recsys_io.http import (
    VALIDATION_ERROR_RESPONSE,
    JsonBody,
    json_body_openapi,
    param_openapi,
    parse_json_body,
    parse_param,
)

router = APIRouter(tags=["events"])

INTERACT_BODY = JsonBody.of(InteractRequest)
IDEMPOTENCY_KEY = TypeAdapter(IdempotencyKey)
IDEMPOTENCY_KEY_HELP = (
    "optional: retries of one event with the same key (e.g. after a 503, which may still have been stored) "
    "are stored once; the key is scoped to the user"
)


@router.post(
    "/interact",
    response_model=InteractResponse,
    responses={
        **VALIDATION_ERROR_RESPONSE,
        503: {"description": "RabbitMQ (or Redis, before the first success) is unreachable"},
    },
    openapi_extra={
        **json_body_openapi(InteractRequest),
        "parameters": [
            param_openapi(
                "Idempotency-Key", "header", IDEMPOTENCY_KEY, required=False, description=IDEMPOTENCY_KEY_HELP
            )
        ],
    },
)
async def interact(request: Request) -> Response:
    """Accept likes/dislikes; 200 means RabbitMQ confirmed the persistent message.

    The hottest route: it reads its body and its collaborators (``app.state``) itself, without FastAPI's
    body parsing and dependency solving, which were a quarter of the collector's CPU per request.
    """
    received_at = time.time()  # per request: never a default evaluated once at import
    body = await parse_json_body(request, INTERACT_BODY)
    raw_key = request.headers.get("idempotency-key")
    key: str | None = None if raw_key is None else parse_param(IDEMPOTENCY_KEY, raw_key, ("header", "Idempotency-Key"))
    generations: GenerationSource = request.app.state.generations
    publisher: EventPublisher = request.app.state.publisher
    generation = generations.current()
    if generation is None:
        raise HTTPException(
            status_code=503,
            detail="Redis is unreachable: cannot tell which run this event belongs to",
            headers={"Retry-After": "1"},
        )
    event = EventMessage(
        **({} if key is None else {"message_id": idempotent_message_id(body.user_id, key)}),
        generation=generation,
        user_id=body.user_id,
        item_ids=body.item_ids,
        actions=body.actions,
        timestamp=body.timestamp if body.timestamp is not None else received_at,
        received_at=received_at,
    )
    try:
        await publisher.publish(event)
    except BrokerUnavailable as error:
        raise HTTPException(status_code=503, detail=str(error), headers={"Retry-After": "1"}) from error
    answer = {"status": "accepted", "message_id": event.message_id, "events": len(event.item_ids)}
    return Response(orjson.dumps(answer), media_type="application/json")
