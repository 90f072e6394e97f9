"""Publishing what /recs reads: bandit snapshots (often) and models (per retrain), both atomically.

A model is written under a new version first (the item side as one blob, the users' factors as a hash); one
script then flips the ``model:current`` pointer (if the run is still the same) and retires versions beyond the
ones kept for rollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass

import numpy as np
from redis.asyncio import Redis

from pipeline.state import RunState
from recsys_core import lua
from recsys_core.algorithms.bandit import ItemStats
from recsys_core.algorithms.factors import FactorModel
from recsys_core.keys import GlobalKeys
from recsys_core.strategies.base import ItemNeighbours
from recsys_io.redis_client import REDIS_UNAVAILABLE, as_int, as_str

# Users per HSET while publishing a model's user factors: one command per few thousand users keeps each one short
# for the Redis server, which serves /recs meanwhile.
USER_FACTORS_PER_COMMAND = 5_000


@dataclass(slots=True)
class _CatalogIds:
    version: int = -1
    generation: int = -1
    ids: tuple[str, ...] = ()


class BanditSnapshotPublisher:
    """Builds per-item evidence arrays aligned with the catalog and publishes them when anything changed."""

    def __init__(self, redis: Redis, keys: GlobalKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(lua.PUBLISH_SNAPSHOT)
        self._catalog = _CatalogIds()
        self._last_signature: tuple[int, int, int, int] | None = None

    async def catalog_ids(self, generation: int) -> tuple[str, ...]:
        run = self._keys.for_generation(generation)
        version = as_int(await self._redis.get(run.catalog_version))
        if (self._catalog.generation, self._catalog.version) != (generation, version):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(run.catalog_version)
                pipe.lrange(run.catalog_ids, 0, -1)
                version_raw, ids = await pipe.execute()
            self._catalog = _CatalogIds(as_int(version_raw), generation, tuple(as_str(i) for i in ids))
        return self._catalog.ids

    async def publish_if_changed(self, state: RunState) -> int | None:
        """The new bandit version, or None when nothing changed since the last snapshot."""
        run = self._keys.for_generation(state.generation)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(run.catalog_version)
            pipe.hget(run.counters, "impressions")
            catalog_version, impressions_total = await pipe.execute()
        signature = (state.generation, state.applied_events, as_int(impressions_total), as_int(catalog_version))
        if signature == self._last_signature:
            return None
        ids = await self.catalog_ids(state.generation)
        impressions = {as_str(k): int(v) for k, v in (await self._redis.hgetall(run.item_impressions)).items()}
        stats = ItemStats(
            likes=np.fromiter((state.likes.get(i, 0) for i in ids), dtype=np.float32, count=len(ids)),
            dislikes=np.fromiter((state.dislikes.get(i, 0) for i in ids), dtype=np.float32, count=len(ids)),
            impressions=np.fromiter((impressions.get(i, 0) for i in ids), dtype=np.float32, count=len(ids)),
        )
        version = await self._script(
            keys=[self._keys.generation, run.bandit_snapshot, run.bandit_version],
            args=[state.generation, stats.to_bytes()],
        )
        self._last_signature = signature
        return None if int(version) == lua.STALE_GENERATION else int(version)


class CoLikesPublisher:
    """Publishes co-like neighbours (computed in a worker thread) whenever new likes arrived."""

    def __init__(self, redis: Redis, keys: GlobalKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(lua.PUBLISH_SNAPSHOT)
        self._published_at: tuple[int, int] | None = None

    def is_stale(self, state: RunState) -> bool:
        return self._published_at != (state.generation, state.applied_events)

    async def publish(self, state: RunState, neighbours: ItemNeighbours, events_seen: int) -> int | None:
        run = self._keys.for_generation(state.generation)
        blob = await asyncio.to_thread(neighbours.to_bytes)
        version = await self._script(
            keys=[self._keys.generation, run.co_likes, run.co_likes_version], args=[state.generation, blob]
        )
        self._published_at = (state.generation, events_seen)
        return None if int(version) == lua.STALE_GENERATION else int(version)


def _serialize_for_serving(model: FactorModel) -> tuple[bytes, list[dict[str, bytes]]]:
    """The item side as a blob, and the users' factor rows in HSET-sized chunks (a worker thread's work: a
    model of 200k users is 200k rows to encode)."""
    rows = list(model.user_rows())
    chunks = [dict(rows[i : i + USER_FACTORS_PER_COMMAND]) for i in range(0, len(rows), USER_FACTORS_PER_COMMAND)]
    return model.item_side().to_bytes(), chunks


class PublishRefused(RuntimeError):
    """The model was not published (and its keys are deleted): the reason says why."""


class ModelPublisher:
    def __init__(self, redis: Redis, keys: GlobalKeys, keep: int) -> None:
        self._redis = redis
        self._keys = keys
        self._keep = keep
        self._script = redis.register_script(lua.PUBLISH_MODEL)
        self._delete_unless_current = redis.register_script(lua.DELETE_MODEL_IF_NOT_CURRENT)
        self._next_version = redis.register_script(lua.INCR_MODEL_COUNTER)

    async def next_version(self, generation: int) -> int | None:
        """A new version number of the run's models; None when a /cleanup made the run obsolete."""
        counter = self._keys.for_generation(generation).model_counter
        version = int(await self._next_version(keys=[self._keys.generation, counter], args=[generation]))
        return None if version == lua.STALE_GENERATION else version

    async def publish(
        self, generation: int, model: FactorModel, meta: dict[str, object], lease_token: str | None = None
    ) -> int | None:
        """The version once /recs can read it, or None when a /cleanup made it obsolete; ``PublishRefused`` when
        ``lease_token`` no longer holds the lease or a newer version is served already.

        Replicas load the item side (the blob); the users' factors go to a hash that /recs reads one user at a
        time. Both are written before the pointer flips, so a reader never sees half a version.
        """
        run = self._keys.for_generation(generation)
        serving_blob, user_chunks = await asyncio.to_thread(_serialize_for_serving, model)
        meta = {**meta, "version": model.version, "published_at": time.time()}
        blob_key, meta_key = run.model_blob(model.version), run.model_meta(model.version)
        users_key = run.model_user_factors(model.version)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(blob_key, serving_blob)
                pipe.set(meta_key, json.dumps(meta))
                pipe.delete(users_key)
                for fields in user_chunks:
                    pipe.hset(users_key, mapping=fields)
                await pipe.execute()
            result = int(
                await self._script(
                    keys=[self._keys.generation, run.model_current, run.model_versions, self._keys.pipeline_leader],
                    args=[generation, model.version, self._keep, run.base, lease_token or ""],
                )
            )
        except REDIS_UNAVAILABLE:
            # A version the pointer never named is in no retirement list: delete it now (best effort), or its
            # blob and users' factors would stay until the run ends; but only if the flip did not happen (its
            # reply may be what was lost).
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                await self._delete_unless_current(keys=[run.model_current], args=[model.version, run.base])
            raise
        if result == lua.STALE_GENERATION:
            await self._redis.delete(blob_key, meta_key, users_key)
            return None
        if result == lua.NOT_LEASE_HOLDER:
            raise PublishRefused("this pipeline lost its lease before the model was published")
        if result == lua.OLDER_THAN_SERVED:
            raise PublishRefused("a newer model was published meanwhile")
        return model.version
