"""The two Redis round trips of a /recs request: read the user's state, then claim the answer atomically."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import orjson
from redis.asyncio import Redis

from recommendations.serving_state import Versions
from recsys_core import lua
from recsys_core.algorithms.factors import FactorModel
from recsys_core.algorithms.twins import TwinLift
from recsys_core.keys import GlobalKeys
from recsys_io.redis_client import as_int, as_str

RECS_LOG_CAP = 100_000


@dataclass(frozen=True, slots=True)
class Feedback:
    item_id: str
    action: str
    ts: float


@dataclass(frozen=True, slots=True)
class UserSnapshot:
    versions: Versions
    shown: list[str]
    history: list[Feedback]  # oldest first
    # The user's factors in model version ``versions.model`` (None: that model does not know the user).
    user_vector: np.ndarray | None = None
    # What users who answered like this one liked and were shown (None: the pipeline found none yet).
    twins: TwinLift | None = None


class UserStore:
    def __init__(self, redis: Redis, keys: GlobalKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._claim = redis.register_script(lua.CLAIM_RECOMMENDATIONS)
        self._read = redis.register_script(lua.READ_USER)

    async def read(self, generation: int, user_id: str) -> UserSnapshot:
        """Round trip 1: the current versions plus this user's shown set and recent feedback.

        The user keys are read under ``generation``; if the returned generation differs, the caller re-reads.
        """
        run = self._keys.for_generation(generation)
        keys = [
            self._keys.generation,
            run.catalog_version,
            run.bandit_version,
            run.model_current,
            run.co_likes_version,
            run.user_shown(user_id),
            run.user_history(user_id),
            run.user_twins(user_id),
            self._keys.dataset,
        ]
        reply = await self._read(keys=keys, args=[run.base, user_id])
        current, catalog, bandit, model, co_likes, shown, history, factors, twins, dataset = reply
        versions = Versions(
            as_int(current), as_int(catalog), as_int(bandit), as_int(model), as_int(co_likes), as_str(dataset)
        )
        feedback = []
        for raw in reversed(history):
            entry = orjson.loads(raw)
            feedback.append(Feedback(entry["item_id"], entry["action"], float(entry.get("ts") or 0.0)))
        vector = FactorModel.vector_from_bytes(factors) if factors else None
        lift = TwinLift.from_text(as_str(twins)) if twins else None
        return UserSnapshot(versions, [as_str(s) for s in shown], feedback, vector, lift)

    async def read_versions(self) -> Versions:
        """The current generation and its catalog/bandit/model versions (one MULTI round trip)."""
        generation = as_int(await self._redis.get(self._keys.generation))
        run = self._keys.for_generation(generation)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self._keys.generation)
            pipe.get(run.catalog_version)
            pipe.get(run.bandit_version)
            pipe.get(run.model_current)
            pipe.get(run.co_likes_version)
            pipe.get(self._keys.dataset)
            current, catalog, bandit, model, co_likes, dataset = await pipe.execute()
        if as_int(current) != generation:
            return await self.read_versions()
        return Versions(
            generation, as_int(catalog), as_int(bandit), as_int(model), as_int(co_likes), as_str(dataset or b"")
        )

    async def claim(
        self, generation: int, user_id: str, group: str, candidates: list[tuple[str, str]], k: int
    ) -> list[str] | None:
        """Round trip 2: atomically add up to ``k`` unseen candidates to the shown set; None if a /cleanup won."""
        run = self._keys.for_generation(generation)
        packed = "\n".join(f"{item_id}\t{source}" for item_id, source in candidates)
        args: list[str | int | float] = [generation, k, group, user_id, time.time(), RECS_LOG_CAP, packed]
        result = await self._claim(
            keys=[
                self._keys.generation,
                run.user_shown(user_id),
                run.item_impressions,
                run.user_sources(user_id),
                run.recs_log,
                run.counters,
                run.user_ab_tally(user_id),
            ],
            args=args,
        )
        if result and not isinstance(result[0], bytes | str) and int(result[0]) == lua.STALE_GENERATION:
            return None
        return [as_str(item) for item in result]
