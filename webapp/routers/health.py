from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthcheck")
async def healthcheck() -> dict[str, str]:
    """Liveness: the process answers (the backends may still be down; the page says so)."""
    return {"status": "ok"}
