from __future__ import annotations

from fastapi import APIRouter

from recommendations.deps import RedisDep

router = APIRouter(tags=["health"])


@router.get("/healthcheck")
async def healthcheck() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(redis: RedisDep) -> dict[str, str]:
    """Readiness: Redis answers (a 503 otherwise, from the shared handler)."""
    await redis.ping()
    return {"status": "ready"}
