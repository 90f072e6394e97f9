from __future__ import annotations

from fastapi import APIRouter

from recommendations.cleanup import cleanup
from recommendations.deps import KeysDep, RedisDep, ServiceDep, SettingsDep
from recsys_core.schemas import CleanupResponse

router = APIRouter(tags=["maintenance"])


@router.api_route("/cleanup", methods=["GET", "POST"], response_model=CleanupResponse)
async def cleanup_everything(
    settings: SettingsDep, redis: RedisDep, keys: KeysDep, service: ServiceDep
) -> CleanupResponse:
    """Empty the system: catalog, bandit, models, every user's history, the queue and the pipeline's memory."""
    result = await cleanup(settings, redis, keys)
    service.memory.forget_all()
    return result
