"""Fixtures of the integration tests that talk to Redis directly (not through a service stack)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis
from redis.asyncio import Redis

from devstack.stack import delete_prefix
from recsys_core.keys import GlobalKeys
from recsys_core.settings import Settings


@pytest.fixture
async def redis_and_keys() -> AsyncIterator[tuple[Redis, GlobalKeys]]:
    """An async client of the shared Redis and the keys of a prefix of this test's own, deleted afterwards."""
    settings = Settings()
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    async_client = Redis.from_url(settings.redis_url)
    yield async_client, GlobalKeys(prefix)
    await async_client.aclose()
    sync_client = redis.Redis.from_url(settings.redis_url)
    delete_prefix(sync_client, prefix)
    sync_client.close()
