"""What a request needs, reached through ``Depends`` so tests can swap it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from recommendations.service import RecommendationService
from recsys_core.keys import GlobalKeys
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
