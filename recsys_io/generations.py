"""Retiring old runs: after /cleanup bumps the generation, every key of older generations is deleted."""

from __future__ import annotations

import re

from redis.asyncio import Redis

from recsys_core.keys import GlobalKeys

UNLINK_BATCH = 500


async def delete_generations_before(redis: Redis, keys: GlobalKeys, generation: int) -> int:
    """UNLINK every key of a generation older than ``generation``; returns how many were deleted."""
    pattern = re.compile(rf"^{re.escape(keys.prefix)}:g(\d+):".encode())
    deleted = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=f"{keys.prefix}:g*", count=2000):
        match = pattern.match(key)
        if match and int(match.group(1)) < generation:
            batch.append(key)
            if len(batch) >= UNLINK_BATCH:
                deleted += await redis.unlink(*batch)
                batch.clear()
    if batch:
        deleted += await redis.unlink(*batch)
    return deleted
