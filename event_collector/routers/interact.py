from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, HTTPException, Request, Response

from event_collector.generation import GenerationSource
from event_collector.publisher import BrokerUnavailable, EventPublisher
from recsys_core.schemas import EventMessage, InteractRequest, InteractResponse
from recsys_io.http import VALIDATION_ERROR_RESPONSE, json_body_openapi, parse_json_body

router = APIRouter(tags=["events"])


@router.post(
    "/interact",
    response_model=InteractResponse,
    responses={
        **VALIDATION_ERROR_RESPONSE,
        503: {"description": "RabbitMQ (or Redis, before the first success) is unreachable"},
    },
    openapi_extra=json_body_openapi(InteractRequest),
)
async def interact(request: Request) -> Response:
    """Accept likes/dislikes; 200 means RabbitMQ confirmed the persistent message.

    The hottest route: it reads its body and its collaborators (``app.state``) itself, without FastAPI's
    body parsing and dependency solving, which were a quarter of the collector's CPU per request.
    """
    received_at = time.time()  # per request: never a default evaluated once at import
    body = await parse_json_body(request, InteractRequest)
    generations: GenerationSource = request.app.state.generations
    publisher: EventPublisher = request.app.state.publisher
    generation = generations.current()
    if generation is None:
        raise HTTPException(status_code=503, detail="Redis is unreachable: cannot tell which run this event belongs to")
    event = EventMessage(
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
