from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Response

from recommendations.deps import ServiceDep
from recommendations.service import RecommendationsUnavailable
from recsys_core.schemas import DEFAULT_K, ID_PATTERN, MAX_ID_LENGTH, MAX_K, RecsResponse

router = APIRouter(tags=["recommendations"])

IdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]


@router.get(
    "/recs/{user_id}",
    response_model=RecsResponse,
    responses={503: {"description": "Redis is unreachable and no fallback is available"}},
)
async def recommendations(
    user_id: IdPath,
    service: ServiceDep,
    k: Annotated[int, Query(ge=1, le=MAX_K, description="how many items")] = DEFAULT_K,
) -> Response:
    """``k`` unique catalog items this user was never shown (fewer only when fewer unseen items exist)."""
    try:
        answer = await service.recommend(user_id, k)
    except RecommendationsUnavailable as error:
        raise HTTPException(status_code=503, detail=str(error), headers={"Retry-After": "1"}) from error
    headers = {"X-Experiment-Group": answer.group, "X-Recommendation-Sources": ",".join(answer.sources)}
    if answer.fallback:
        headers["X-Fallback"] = "redis-unavailable"
    # The ids are catalog ids (validated when added): serialised directly instead of re-validated per request.
    return Response(orjson.dumps({"item_ids": answer.item_ids}), media_type="application/json", headers=headers)
