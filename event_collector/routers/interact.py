from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException

from event_collector.deps import GenerationDep, PublisherDep
from event_collector.publisher import BrokerUnavailable
from recsys_core.schemas import EventMessage, InteractRequest, InteractResponse

router = APIRouter(tags=["events"])


@router.post(
    "/interact",
    response_model=InteractResponse,
    responses={503: {"description": "RabbitMQ (or Redis, before the first success) is unreachable"}},
)
async def interact(request: InteractRequest, publisher: PublisherDep, generations: GenerationDep) -> InteractResponse:
    """Accept likes/dislikes; 200 means RabbitMQ confirmed the persistent message."""
    received_at = time.time()  # per request: never a default evaluated once at import
    generation = generations.current()
    if generation is None:
        raise HTTPException(status_code=503, detail="Redis is unreachable: cannot tell which run this event belongs to")
    event = EventMessage(
        generation=generation,
        user_id=request.user_id,
        item_ids=request.item_ids,
        actions=request.actions,
        timestamp=request.timestamp if request.timestamp is not None else received_at,
        received_at=received_at,
    )
    try:
        await publisher.publish(event)
    except BrokerUnavailable as error:
        raise HTTPException(status_code=503, detail=str(error), headers={"Retry-After": "1"}) from error
    return InteractResponse(message_id=event.message_id, events=len(event.item_ids))
