"""What a request needs, reached through ``Depends`` so tests can swap it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from redis.asyncio import Redis

from recommendations.service import RecommendationService
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import ID_PATTERN, MAX_ID_LENGTH
from recsys_core.settings import Settings


async def get_service(request: Request) -> RecommendationService:
    return request.app.state.service


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_redis(request: Request) -> Redis:
    return request.app.state.redis


async def get_keys(request: Request) -> GlobalKeys:
    return request.app.state.service.keys


ServiceDep = Annotated[RecommendationService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
KeysDep = Annotated[GlobalKeys, Depends(get_keys)]
# An id in a debug route's path (the hot /recs route validates its own, with the same limits).
IdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
