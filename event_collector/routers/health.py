from __future__ import annotations

from fastapi import APIRouter, HTTPException

from event_collector.deps import GenerationsDep, PublisherDep

router = APIRouter(tags=["health"])


@router.get("/healthcheck")
async def healthcheck() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(publisher: PublisherDep, generations: GenerationsDep) -> dict[str, str]:
    """Readiness: connected to RabbitMQ, and a run generation to stamp (Redis answered, within the last 1.5 s).

    Without one every /interact is a 503, so a collector that only reached the broker is not ready.
    """
    missing = []
    if not publisher.connected:
        missing.append("not connected to RabbitMQ")
    if generations.current() is None:
        missing.append("Redis has not answered lately, so the run generation to stamp on events is not sure")
    if missing:
        raise HTTPException(status_code=503, detail="; ".join(missing), headers={"Retry-After": "1"})
    return {"status": "ready"}
