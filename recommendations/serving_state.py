"""A replica's in-process copy of what every request reads: catalog, bandit evidence and the model.

The copy is immutable and swapped as a whole; each request compares the versions it read from Redis in its
first round trip with the copy's and reloads (single-flight) what is stale. So a replica holds no state that
Redis does not have, and any number of replicas serve the same answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from recsys_core.algorithms.bandit import ItemStats
from recsys_core.algorithms.factors import FactorModel
from recsys_core.catalog import CatalogView
from recsys_core.keys import GlobalKeys
from recsys_core.strategies.base import DrawCache, ItemNeighbours
from recsys_io.catalog import load_catalog
from recsys_io.redis_client import REDIS_UNAVAILABLE, as_int, as_str, get_blob

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Versions:
    generation: int
    catalog: int
    bandit: int
    model: int
    co_likes: int = 0
    dataset: str = ""  # the Redis dataset's mark (``GlobalKeys.dataset``)

    def behind(self, wanted: Versions) -> bool:
        """True when ``wanted`` has something newer (versions only grow inside a generation and a dataset)."""
        if wanted.generation != self.generation or wanted.dataset != self.dataset:
            return True
        return (
            wanted.catalog > self.catalog
            or wanted.bandit > self.bandit
            or wanted.model > self.model
            or wanted.co_likes > self.co_likes
        )


@dataclass(frozen=True, slots=True)
class ServingState:
    generation: int
    catalog: CatalogView
    stats: ItemStats  # padded to the catalog size
    bandit_version: int
    model: FactorModel | None
    model_version: int
    co_likes: ItemNeighbours | None = None
    co_likes_version: int = 0
    dataset: str = ""
    # Posterior draws of this bandit snapshot, shared by the requests that rank on it (rebuilt with the evidence).
    draws: DrawCache = field(default_factory=DrawCache, compare=False, repr=False)

    @classmethod
    def empty(cls, generation: int = -1, dataset: str = "") -> ServingState:
        return cls(generation, CatalogView.empty(), ItemStats.empty(), 0, None, 0, dataset=dataset)

    @property
    def versions(self) -> Versions:
        return Versions(
            self.generation,
            self.catalog.version,
            self.bandit_version,
            self.model_version,
            self.co_likes_version,
            self.dataset,
        )


class ServingStateCache:
    def __init__(self, redis: Redis, keys: GlobalKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._state = ServingState.empty()
        self._lock = asyncio.Lock()
        # Reloads that failed on Redis, and the last such error: callers queued behind a failed reload share
        # its failure instead of each trying again after its own timeout.
        self._failed_reloads = 0
        self._last_failure: BaseException | None = None

    @property
    def state(self) -> ServingState:
        return self._state

    async def ensure(self, wanted: Versions) -> ServingState:
        """The state at ``wanted`` versions (or newer, or of a newer run); concurrent callers share one reload,
        and its failure: with Redis stalled, the requests queued behind it fail at once (and answer from the
        fallback) instead of waiting for one timeout after another."""
        if not self._state.versions.behind(wanted):
            return self._state
        failed_before = self._failed_reloads
        async with self._lock:
            if self._failed_reloads != failed_before:
                raise RedisConnectionError(f"the reload this request waited for failed: {self._last_failure}")
            try:
                return await self._ensure_locked(wanted)
            except REDIS_UNAVAILABLE as error:
                self._failed_reloads += 1
                self._last_failure = error
                raise

    async def _ensure_locked(self, wanted: Versions) -> ServingState:
        state = self._state
        # A request that read an older run just before a /cleanup must not pull the replica back to it (it
        # retries on the newer run); only a Redis that lost its data has a lower generation now.
        if wanted.generation < state.generation and (
            as_int(await self._redis.get(self._keys.generation)) >= state.generation
        ):
            return state
        # Likewise a request that read the dataset mark just before Redis lost its data.
        if (
            state.dataset
            and wanted.dataset != state.dataset
            and (as_str(await self._redis.get(self._keys.dataset) or b"") == state.dataset)
        ):
            return state
        if state.versions.behind(wanted):
            state = await self._reload(state, wanted)
            self._state = state
        return state

    async def _reload(self, state: ServingState, wanted: Versions) -> ServingState:
        run = self._keys.for_generation(wanted.generation)
        if wanted.generation != state.generation or wanted.dataset != state.dataset:
            # Another run, or a Redis that lost its data: nothing cached belongs to it (its versions start over).
            state = ServingState.empty(wanted.generation, wanted.dataset)
        catalog = state.catalog
        if wanted.catalog > catalog.version:
            catalog = await load_catalog(self._redis, run)
        stats, bandit_version = state.stats, state.bandit_version
        if wanted.bandit > bandit_version:
            blob = await get_blob(self._redis, run.bandit_snapshot)
            stats = _parsed(ItemStats.from_bytes, blob, "bandit snapshot", wanted.bandit, ItemStats.empty(), stats)
            bandit_version = wanted.bandit
        model, model_version = state.model, state.model_version
        if wanted.model > model_version:
            # A blob retired between the pointer read and now keeps the previous model until the next version.
            model = await self._load_model(run.model_blob(wanted.model), wanted.model) or model
            model_version = wanted.model
        co_likes, co_likes_version = state.co_likes, state.co_likes_version
        if wanted.co_likes > co_likes_version:
            blob = await get_blob(self._redis, run.co_likes)
            co_likes = _parsed(ItemNeighbours.from_bytes, blob, "co-likes", wanted.co_likes, None, co_likes)
            co_likes_version = wanted.co_likes
        evidence_changed = stats is not state.stats or catalog is not state.catalog
        return replace(
            state,
            draws=DrawCache() if evidence_changed else state.draws,
            co_likes=co_likes,
            co_likes_version=co_likes_version,
            catalog=catalog,
            stats=stats.padded(len(catalog)),
            bandit_version=bandit_version,
            model=model,
            model_version=model_version,
        )

    async def _load_model(self, key: str, version: int) -> FactorModel | None:
        blob = await get_blob(self._redis, key)
        if blob is None:
            log.warning("model blob %s is gone", key)
            return None
        # Parsing a few MB of arrays and building the user map would stall the event loop.
        try:
            return await asyncio.to_thread(FactorModel.from_bytes, blob)
        except Exception:  # an unreadable blob must not fail every request until the next version
            log.exception("model version %d is unreadable: keeping the previous model", version)
            return None


def _parsed(parse: Callable[[bytes], T], blob: bytes | None, what: str, version: int, missing: T, previous: T) -> T:
    """``parse(blob)``; ``missing`` without a blob; the ``previous`` object, logged, when the blob is unreadable
    (a corrupt or foreign value must not fail every request until the next version is published)."""
    if not blob:
        return missing
    try:
        return parse(blob)
    except Exception:
        log.exception("%s version %d is unreadable: keeping the previous one", what, version)
        return previous
