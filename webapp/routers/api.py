"""The JSON API the page's script calls; the browser never talks to the backends directly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query

from recsys_core.schemas import MAX_K
from webapp.backends import BackendError
from webapp.deps import BackendsDep, SettingsDep, UserIdPath
from webapp.schemas import ErrorBody, FeedbackRequest, FeedbackResponse, RecsPage, StatusPage, UserPage
from webapp.views import anchor_ids, recs_page, status_page, user_page

T = TypeVar("T")

router = APIRouter(
    prefix="/api",
    tags=["api"],
    responses={
        502: {"model": ErrorBody, "description": "a backend refused the request or answered something unexpected"},
        503: {"model": ErrorBody, "description": "a backend is unreachable or unavailable"},
        504: {"model": ErrorBody, "description": "a backend did not answer in time"},
    },
)


async def _optional(call: Awaitable[T], warnings: list[str]) -> T | None:
    """The answer, or None with the reason added to ``warnings``: a secondary backend may fail alone."""
    try:
        return await call
    except BackendError as error:
        warnings.append(error.detail)
        return None


@router.get("/recs/{user_id}")
async def recommendations(
    user_id: UserIdPath,
    backends: BackendsDep,
    settings: SettingsDep,
    k: Annotated[int | None, Query(ge=1, le=MAX_K, description="how many items (default: DEFAULT_K)")] = None,
) -> RecsPage:
    """A fresh set of recommendations (a new /recs call) with titles, genres and why each was chosen."""
    answer = await backends.recs(user_id, k or settings.default_k)
    warnings: list[str] = []
    # Without titles the list is still useful (ids only), so a catalog failure is a warning, not an error.
    catalog = await _optional(backends.catalog(answer.item_ids + anchor_ids(answer)), warnings)
    return recs_page(user_id, answer, catalog or {}, warnings)


@router.get("/users/{user_id}")
async def user(user_id: UserIdPath, backends: BackendsDep) -> UserPage:
    """The user's experiment group and likes/dislikes (newest first) with titles."""
    return user_page(user_id, await backends.user(user_id))


@router.post("/feedback")
async def feedback(request: FeedbackRequest, backends: BackendsDep) -> FeedbackResponse:
    """Send one like/dislike to the event collector's /interact."""
    status_code, answer = await backends.interact(request.user_id, request.item_id, request.action)
    return FeedbackResponse(
        status=answer.status,
        collector_status=status_code,
        message_id=answer.message_id,
        user_id=request.user_id,
        item_id=request.item_id,
        action=request.action,
    )


@router.get("/status")
async def status(backends: BackendsDep, settings: SettingsDep) -> StatusPage:
    """Catalog, events, bandit, model age and training metrics, MLflow link, pipeline liveness, experiment."""
    warnings: list[str] = []
    recs_status, experiment, pipeline = await asyncio.gather(
        backends.status(),
        _optional(backends.experiment(), warnings),
        _optional(backends.pipeline_status(), warnings),
    )
    return status_page(recs_status, experiment, pipeline, time.time(), settings.mlflow_public_url, warnings)
