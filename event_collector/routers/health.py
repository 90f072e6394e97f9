from __future__ import annotations

from fastapi import APIRouter, HTTPException

from event_collector.deps import PublisherDep

router = APIRouter(tags=["health"])


@router.get("/healthcheck")
async def healthcheck() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(publisher: PublisherDep) -> dict[str, str]:
    """Readiness: connected to RabbitMQ."""
    if not publisher.connected:
        raise HTTPException(status_code=503, detail="not connected to RabbitMQ")
    return {"status": "ready"}
