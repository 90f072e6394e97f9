from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BeforeValidator, Field, TypeAdapter

from recommendations.service import RecommendationService, RecommendationsUnavailable
from recsys_core.schemas import DEFAULT_K, MAX_K, RecsResponse, UserId
from recsys_io.http import VALIDATION_ERROR_RESPONSE, param_openapi, parse_param

router = APIRouter(tags=["recommendations"])

USER_ID = TypeAdapter(UserId)


def _written_in_digits(value: object) -> object:
    # Pydantic's lax int would take "5.0", " 5", "+5" and "5_0" (as 50); a query parameter is plain digits.
    if isinstance(value, list):
        raise ValueError("k is given more than once: give it once")
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("k must be a whole number written in digits, e.g. k=10")
    return value


K = TypeAdapter(Annotated[int, Field(ge=1, le=MAX_K, default=DEFAULT_K), BeforeValidator(_written_in_digits)])


@router.get(
    "/recs/{user_id}",
    response_model=RecsResponse,
    responses={
        **VALIDATION_ERROR_RESPONSE,
        503: {"description": "Redis is unreachable and no fallback is available"},
    },
    openapi_extra={
        "parameters": [
            param_openapi("user_id", "path", USER_ID, required=True),
            param_openapi("k", "query", K, required=False, description="how many items"),
        ]
    },
)
async def recommendations(request: Request) -> Response:
    """``k`` unique catalog items this user was never shown (fewer only when fewer unseen items exist).

    The hottest route reads its parameters and the service itself: FastAPI's parameter and dependency
    solving was ~10% of the service's CPU per request. The adapters apply the same limits as the contracts.
    """
    user_id: str = parse_param(USER_ID, request.path_params["user_id"], ("path", "user_id"))
    raw_k: str | list[str] | None = request.query_params.get("k")
    if raw_k is not None and len(given := request.query_params.getlist("k")) > 1:
        raw_k = given  # refused below: which of several k values was meant is not ours to guess
    k: int = DEFAULT_K if raw_k is None else parse_param(K, raw_k, ("query", "k"))
    service: RecommendationService = request.app.state.service
    try:
        answer = await service.recommend(user_id, k)
    except RecommendationsUnavailable as error:
        # The group still names the user's arm: an A/B analysis counts the failure against it instead of losing it.
        group = service.experiment.assign(user_id).name
        headers = {"Retry-After": "1", "X-Experiment-Group": group}
        raise HTTPException(status_code=503, detail=str(error), headers=headers) from error
    headers = {"X-Experiment-Group": answer.group, "X-Recommendation-Sources": ",".join(answer.sources)}
    if answer.fallback:
        headers["X-Fallback"] = "redis-unavailable"
    # The ids are catalog ids (validated when added): serialised directly instead of re-validated per request.
    return Response(orjson.dumps({"item_ids": answer.item_ids}), media_type="application/json", headers=headers)
