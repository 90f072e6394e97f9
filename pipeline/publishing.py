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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

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


# Entries of the recs log read per XRANGE while catching up on impressions.
RECS_LOG_BATCH = 10_000


@dataclass(slots=True)
class _CatalogIds:
    version: int = -1
    generation: int = -1
    ids: tuple[str, ...] = ()
    # Catalog position of each id, as str (the pipeline's counters) and as bytes (what Redis replies hold).
    index: dict[str, int] = field(default_factory=dict)
    index_of_bytes: dict[bytes, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Impressions:
    """Per-item impressions of one run, aligned with one catalog version, as of the recs log entry ``cursor``."""

    generation: int
    catalog_version: int
    counts: np.ndarray  # float64, one per catalog item
    cursor: bytes  # the last recs log entry counted ("0-0": none)
    # How many entries the log had ever been given up to ``cursor`` (Redis 7's ``entries-added``; None before 7).
    added: int | None


def _stream_id(entry_id: bytes | str) -> tuple[int, int]:
    milliseconds, _, sequence = as_str(entry_id).partition("-")
    return int(milliseconds), int(sequence or 0)


def _entries_added(info: dict[str, object]) -> int | None:
    added = info.get("entries-added")
    return added if isinstance(added, int) else None


def _lost_entries_after(cursor: bytes, info: dict[str, Any]) -> bool:
    """Before Redis 7 (no count of added entries): whether the log's cap removed entries after ``cursor``. It
    did when its oldest entry is newer than the cursor, or when it is empty although entries came after it."""
    first = info.get("first-entry")
    if first:
        return _stream_id(first[0]) > _stream_id(cursor)
    return _stream_id(info["last-generated-id"]) > _stream_id(cursor)


def _no_such_key(reply: object) -> bool:
    """XINFO STREAM's error for a log that does not exist (any other error is raised, not taken for it)."""
    return isinstance(reply, ResponseError) and "no such key" in str(reply).lower()


class BanditSnapshotPublisher:
    """Builds per-item evidence arrays aligned with the catalog and publishes them when anything changed.

    Impressions are written by the recommendations service (its claim script counts them in a hash and logs each
    answer in the run's recs log, atomically). The publisher reads the hash once per run and catalog version and
    then only the log entries added since, so a snapshot costs what changed, not the catalog's size (reading the
    whole hash five times a second was most of the pipeline's event-loop time under load). A log that lost
    entries past the last one counted (trimmed to its cap) is noticed and the hash read again.
    """

    def __init__(self, redis: Redis, keys: GlobalKeys, lease_token: str = "") -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(lua.PUBLISH_SNAPSHOT)
        # Redis refuses a snapshot from a process that does not hold the pipeline lease ("": not checked).
        self._lease_token = lease_token
        self._catalog = _CatalogIds()
        self._impressions: _Impressions | None = None
        self._last_signature: tuple[int, int, int, int] | None = None
        self.full_reads = 0  # how often the whole impressions hash was read (the tests check when)

    async def catalog_ids(self, generation: int) -> tuple[str, ...]:
        run = self._keys.for_generation(generation)
        version = as_int(await self._redis.get(run.catalog_version))
        if (self._catalog.generation, self._catalog.version) != (generation, version):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(run.catalog_version)
                pipe.lrange(run.catalog_ids, 0, -1)
                version_raw, ids = await pipe.execute()
            decoded = tuple(as_str(i) for i in ids)
            self._catalog = _CatalogIds(
                as_int(version_raw),
                generation,
                decoded,
                {item: position for position, item in enumerate(decoded)},
                {item.encode(): position for position, item in enumerate(decoded)},
            )
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
        await self.catalog_ids(state.generation)
        catalog = self._catalog
        impressions = await self._current_impressions(state.generation, catalog)
        stats = ItemStats(
            likes=self._aligned(state.likes, catalog),
            dislikes=self._aligned(state.dislikes, catalog),
            impressions=impressions.astype(np.float32),
        )
        version = int(
            await self._script(
                keys=[self._keys.generation, self._keys.pipeline_leader, run.bandit_snapshot, run.bandit_version],
                args=[state.generation, self._lease_token, stats.to_bytes()],
            )
        )
        if version == lua.NOT_LEASE_HOLDER:
            return None  # unchanged signature: published again if this process leads again
        self._last_signature = signature
        return None if version == lua.STALE_GENERATION else version

    @staticmethod
    def _aligned(counts: dict[str, int], catalog: _CatalogIds) -> np.ndarray:
        """Counts per item id as an array over the catalog (O(items counted), not O(catalog))."""
        values = np.zeros(len(catalog.ids), dtype=np.float32)
        index = catalog.index
        for item, count in counts.items():
            position = index.get(item)
            if position is not None:
                values[position] = count
        return values

    async def _current_impressions(self, generation: int, catalog: _CatalogIds) -> np.ndarray:
        known = self._impressions
        same_run = known is not None and (known.generation, known.catalog_version) == (generation, catalog.version)
        if known is None or not same_run or not await self._count_new_impressions(known, catalog):
            known = await self._read_all_impressions(generation, catalog)
        self._impressions = known
        return known.counts

    async def _read_all_impressions(self, generation: int, catalog: _CatalogIds) -> _Impressions:
        run = self._keys.for_generation(generation)
        async with self._redis.pipeline(transaction=True) as pipe:  # the hash and the log's end, consistently
            pipe.hgetall(run.item_impressions)
            pipe.xinfo_stream(run.recs_log)
            hashed, info = await pipe.execute(raise_on_error=False)
        if isinstance(hashed, Exception):
            raise hashed
        self.full_reads += 1
        counts = np.zeros(len(catalog.ids), dtype=np.float64)
        index = catalog.index_of_bytes
        for item, count in hashed.items():
            position = index.get(item if isinstance(item, bytes) else item.encode())
            if position is not None:
                counts[position] = int(count)
        if _no_such_key(info):  # no log yet: nothing was ever shown in this run
            # Whether the server counts added entries is known once there is a log (``_count_new_impressions``).
            return _Impressions(generation, catalog.version, counts, b"0-0", 0)
        if isinstance(info, Exception):
            raise info
        return _Impressions(generation, catalog.version, counts, info["last-generated-id"], _entries_added(info))

    async def _count_new_impressions(self, known: _Impressions, catalog: _CatalogIds) -> bool:
        """Add the items of the log entries after ``known.cursor``; False when that cannot be done exactly (the
        log lost entries after the cursor to its cap, or an entry names an item of a newer catalog): read
        everything then. Redis 7 counts the entries ever added to a log, so a gap shows as fewer entries read
        than were added; before 7, by the log's oldest and newest ids (``_lost_entries_after``)."""
        run = self._keys.for_generation(known.generation)
        index = catalog.index_of_bytes
        while True:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xinfo_stream(run.recs_log)
                pipe.xrange(run.recs_log, min=b"(" + known.cursor, count=RECS_LOG_BATCH)
                info, entries = await pipe.execute(raise_on_error=False)
            if _no_such_key(info):  # no log: fine while nothing was ever counted from one
                return known.cursor == b"0-0"
            for reply in (info, entries):
                if isinstance(reply, Exception):
                    raise reply
            if _entries_added(info) is None:  # before Redis 7
                known.added = None
                if _lost_entries_after(known.cursor, info):
                    return False
            for entry_id, fields in entries:
                items = fields.get(b"items", b"")
                for item in items.split(b",") if items else ():
                    position = index.get(item)
                    if position is None:
                        return False
                    known.counts[position] += 1
                known.cursor = entry_id
                if known.added is not None:
                    known.added += 1
            if len(entries) < RECS_LOG_BATCH:
                return known.added is None or known.added == _entries_added(info)


class CoLikesPublisher:
    """Publishes co-like neighbours (computed in a worker thread) whenever new likes arrived."""

    def __init__(self, redis: Redis, keys: GlobalKeys, lease_token: str = "") -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(lua.PUBLISH_SNAPSHOT)
        self._lease_token = lease_token  # as BanditSnapshotPublisher's
        self._published_at: tuple[int, int] | None = None

    def is_stale(self, state: RunState) -> bool:
        return self._published_at != (state.generation, state.applied_events)

    async def publish(self, state: RunState, neighbours: ItemNeighbours, events_seen: int) -> int | None:
        run = self._keys.for_generation(state.generation)
        blob = await asyncio.to_thread(neighbours.to_bytes)
        version = int(
            await self._script(
                keys=[self._keys.generation, self._keys.pipeline_leader, run.co_likes, run.co_likes_version],
                args=[state.generation, self._lease_token, blob],
            )
        )
        if version == lua.NOT_LEASE_HOLDER:
            return None
        self._published_at = (state.generation, events_seen)
        return None if version == lua.STALE_GENERATION else version


def _serialize_for_serving(model: FactorModel) -> tuple[bytes, list[dict[FieldT, EncodableT]]]:
    """The item side as a blob, and the users' factor rows in HSET-sized chunks (a worker thread's work: a
    model of 200k users is 200k rows to encode)."""
    rows = list(model.user_rows())
    chunks: list[dict[FieldT, EncodableT]] = [
        dict(rows[i : i + USER_FACTORS_PER_COMMAND]) for i in range(0, len(rows), USER_FACTORS_PER_COMMAND)
    ]
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
        except (*REDIS_UNAVAILABLE, asyncio.CancelledError):
            # A version the pointer never named is in no retirement list: delete it now (best effort), or its
            # blob and users' factors would stay until the run ends; but only if the flip did not happen (its
            # reply may be what was lost). A cancellation (the process is ending) gets the same clean-up.
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
