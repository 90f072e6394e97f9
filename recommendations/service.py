"""What a /recs request does: read (round trip 1), rank with the user's strategy, claim (round trip 2)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from recommendations.fallback import PendingWrite, ReplicaMemory, popular_unseen
from recommendations.metrics import RecsMetrics
from recommendations.serving_state import ServingState, ServingStateCache
from recommendations.user_store import UserSnapshot, UserStore
from recsys_core import lua
from recsys_core.algorithms.twins import DenseTwinLift
from recsys_core.experiments import Experiment
from recsys_core.keys import GlobalKeys
from recsys_core.settings import Settings
from recsys_core.strategies.base import (
    Candidate,
    RecommendationContext,
    UserProfile,
    rank_with_fill,
)
from recsys_io.periodic import closed_within
from recsys_io.redis_client import REDIS_UNAVAILABLE

log = logging.getLogger(__name__)

# A claim can lose items to concurrent requests of the same user (on any replica); each retry re-reads the
# shown set, so every round makes progress unless the others keep winning every offered item.
MAX_CLAIM_ROUNDS = 8
MAX_GENERATION_RETRIES = 3
# Members per script call when fallback answers are written back (a Lua unpack takes a few thousand at most).
WRITE_BACK_CHUNK = 500


class RecommendationsUnavailable(RuntimeError):
    """Neither Redis nor a fallback can answer."""


@dataclass(frozen=True, slots=True)
class Answer:
    item_ids: list[str]
    sources: list[str]
    group: str
    fallback: bool = False


def build_profile(state: ServingState, snapshot: UserSnapshot) -> UserProfile:
    catalog = state.catalog
    latest: dict[str, str] = {}
    for feedback in snapshot.history:  # oldest first, so the latest answer per item wins
        latest.pop(feedback.item_id, None)
        latest[feedback.item_id] = feedback.action
    liked = catalog.indices_of(i for i, action in latest.items() if action == "like")
    disliked = catalog.indices_of(i for i, action in latest.items() if action == "dislike")
    actions = np.array([1 if f.action == "like" else -1 for f in snapshot.history], dtype=np.int8)
    return UserProfile(shown=catalog.mask_of(snapshot.shown), liked=liked, disliked=disliked, recent_actions=actions)


class RecommendationService:
    def __init__(
        self, settings: Settings, redis: Redis, experiment: Experiment, metrics: RecsMetrics | None = None
    ) -> None:
        self.settings = settings
        self.experiment = experiment
        self.keys = GlobalKeys(settings.redis_prefix)
        self.cache = ServingStateCache(redis, self.keys)
        self.users = UserStore(redis, self.keys)
        self.memory = ReplicaMemory(max_users=settings.fallback_memory_users)
        self.metrics = metrics
        self._redis = redis
        self._sadd_if_current = redis.register_script(lua.SADD_IF_CURRENT)
        self._flush_lock = asyncio.Lock()
        # Set when a Redis call failed, cleared by the next successful write-back or probe (a replica's view of
        # its connection, not data: every replica finds out for itself).
        self._redis_down = False
        # One generator per service: seeding a new one from OS entropy per request cost ~2% of the process's
        # CPU. Ranking runs on the event loop thread only, so the generator is never used concurrently.
        self._rng = np.random.default_rng()

    async def recommend(self, user_id: str, k: int) -> Answer:
        answer = await self._answer(user_id, k)
        if self.metrics is not None:
            state = self.cache.state
            self.metrics.observe(
                answer.group, answer.sources, answer.fallback, state.model_version, state.bandit_version
            )
        return answer

    async def _answer(self, user_id: str, k: int) -> Answer:
        group = self.experiment.assign(user_id)
        try:
            if self._redis_down:
                # One request at a time probes Redis (by writing the pending fallback answers back, or a PING); the
                # others answer from the fallback meanwhile instead of queueing behind a Redis that may hang (each
                # would wait for its own timeout, one after another).
                if self._flush_lock.locked():
                    return self._fallback(user_id, k, group.name)
                await self.flush_fallback_writes()
                if self._redis_down:
                    return self._fallback(user_id, k, group.name)
            # A normal answer must not read a shown set that lacks this user's fallback answers. Everyone else goes
            # on meanwhile, so a replica under load leaves fallback mode as soon as Redis answers again.
            if not await self._answers_written_back(user_id):
                return self._fallback(user_id, k, group.name)
            return await self._recommend(user_id, k, group.name)
        except REDIS_UNAVAILABLE as error:
            self._redis_down = True
            log.warning("redis unavailable, answering /recs from the fallback: %s", error)
            return self._fallback(user_id, k, group.name)
        except RecommendationsUnavailable:
            raise
        except Exception:  # a bug or unreadable data: the user still gets an answer, the log gets the traceback
            log.exception("/recs failed for user %r: answering from the fallback", user_id)
            return self._fallback(user_id, k, group.name)

    async def _recommend(self, user_id: str, k: int, group_name: str) -> Answer:
        generation = self.cache.state.generation
        for _ in range(MAX_GENERATION_RETRIES):
            snapshot = await self.users.read(max(generation, 0), user_id)
            if snapshot.versions.generation != generation:
                # The user's keys were read under a stale generation (start-up or /cleanup): read again. The
                # versions came from the old run's keys, so they must not reach the cache.
                generation = snapshot.versions.generation
                continue
            state = await self.cache.ensure(snapshot.versions)
            if state.generation != snapshot.versions.generation:
                # A /cleanup started a newer run while this request read the older one: read again.
                generation = state.generation
                continue
            answer = await self._rank_and_claim(state, snapshot, user_id, k, group_name)
            if answer is not None:
                return answer
            generation = -1  # a /cleanup won the race: re-read everything
        raise RecommendationsUnavailable("the run changed repeatedly during the request")

    async def _rank_and_claim(
        self, state: ServingState, snapshot: UserSnapshot, user_id: str, k: int, group_name: str
    ) -> Answer | None:
        if len(state.catalog) == 0:
            return Answer([], [], group_name)
        profile = build_profile(state, snapshot)
        strategy = self.experiment.assign(user_id).strategy
        ctx = RecommendationContext(
            user_id=user_id,
            catalog=state.catalog,
            stats=state.stats,
            model=state.model,
            profile=profile,
            rng=self._rng,
            k=k,
            co_likes=state.co_likes,
            draws=state.draws,
            user_vector=self._user_vector(state, snapshot),
            twins=self._twins(state, snapshot),
        )
        wanted = k * self.settings.candidates_per_slot
        chosen: list[str] = []
        sources: list[str] = []
        offered = profile.shown.copy()
        # What Redis said the user has seen or answered: a fallback answer must not repeat it either.
        known = np.flatnonzero(profile.excluded())
        # Until the answer is remembered, a fallback answer to this user (Redis blipping) must not serve what any
        # claim round of this request offered: an earlier round's items are claimed, the current one's may be.
        with self.memory.offering(user_id) as offers:
            for _ in range(MAX_CLAIM_ROUNDS):
                ranked = rank_with_fill(strategy, ctx, wanted)
                if not ranked:
                    break
                offers.append(np.fromiter((c.index for c in ranked), dtype=np.int64, count=len(ranked)))
                try:
                    # A fallback answer served before this claim must be in the shown set the claim checks.
                    if not await self._answers_written_back(user_id):
                        raise RedisConnectionError("this user's fallback answers could not be written back to Redis")
                    claimed = await self.users.claim(
                        state.generation, user_id, group_name, self._pairs(state, ranked), k - len(chosen)
                    )
                except REDIS_UNAVAILABLE:
                    self.memory.remember(
                        state.generation, user_id, np.concatenate([known, state.catalog.indices_of(chosen)])
                    )
                    raise
                if claimed is None:
                    return None
                source_of = {state.catalog.item_ids[c.index]: c.source for c in ranked}
                chosen += claimed
                sources += [source_of[item] for item in claimed]
                if len(chosen) >= k:
                    break
                # Lost items to a concurrent request of this user: re-read what it has been shown since (a third
                # round trip, only under such contention) and offer the next ones, never one already offered.
                for candidate in ranked:
                    offered[candidate.index] = True
                fresh = await self.users.read(state.generation, user_id)
                offered |= state.catalog.mask_of(fresh.shown)
                ctx = replace(ctx, profile=replace(profile, shown=offered.copy()))
            # What the user has now been shown (or answered), kept compactly for answers while Redis is unreachable.
            self.memory.remember(state.generation, user_id, np.concatenate([known, state.catalog.indices_of(chosen)]))
        return Answer(chosen, sources, group_name)

    async def _answers_written_back(self, user_id: str) -> bool:
        """True once none of this user's fallback answers waits for Redis: any that wait are written back first
        (after the write-back in flight, if any); False while Redis is down or the write failed."""
        if not self.memory.is_pending(user_id):
            return True
        async with self._flush_lock:
            if not self._redis_down and self.memory.is_pending(user_id):
                await self._write_back()
        return not (self._redis_down or self.memory.is_pending(user_id))

    async def current_state(self) -> ServingState:
        """The serving state as a request would see it now (for debugging and status pages)."""
        return await self.cache.ensure(await self.users.read_versions())

    @staticmethod
    def _twins(state: ServingState, snapshot: UserSnapshot) -> DenseTwinLift | None:
        if snapshot.twins is None:
            return None
        return DenseTwinLift.over(snapshot.twins, state.catalog.index, len(state.catalog))

    @staticmethod
    def _user_vector(state: ServingState, snapshot: UserSnapshot) -> np.ndarray | None:
        """The user's factors when they belong to the model this replica ranks with: the vector comes from the
        version the pointer named, and the replica may hold another (a newer one, or the previous one when a
        blob was retired mid-reload); factors of two versions do not mix."""
        if state.model is None or state.model.version != snapshot.versions.model:
            return None
        return snapshot.user_vector

    @staticmethod
    def _pairs(state: ServingState, ranked: list[Candidate]) -> list[tuple[str, str]]:
        return [(state.catalog.item_ids[c.index], c.source) for c in ranked]

    def _fallback(self, user_id: str, k: int, group_name: str) -> Answer:
        state = self.cache.state
        if len(state.catalog) == 0:
            raise RecommendationsUnavailable("Redis is unreachable and this replica has no catalog cached yet")
        indices = popular_unseen(state, self.memory.shown_or_offered(state.generation, user_id), k)
        items = [state.catalog.item_ids[i] for i in indices]
        self.memory.remember(state.generation, user_id, indices)
        if items:
            self.memory.add_pending(PendingWrite(state.generation, user_id, tuple(items)))
        return Answer(items, ["fallback"] * len(items), group_name, fallback=True)

    async def flush_fallback_writes(self) -> int:
        """Write items served in fallback mode into the users' shown sets (called periodically, and by the first
        request after a failure); with nothing to write after a failure, ping Redis. Either success clears
        ``_redis_down``."""
        async with self._flush_lock:  # one write-back at a time: the periodic flusher waits for a request's
            return await self._write_back()

    async def _write_back(self) -> int:
        pending = self.memory.take_pending()
        try:
            if pending:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for write in pending:
                        run = self.keys.for_generation(write.generation)
                        # Only into the run it was served in: a /cleanup since then deleted that run's keys. In
                        # chunks: a script call takes a bounded number of arguments.
                        for first in range(0, len(write.item_ids), WRITE_BACK_CHUNK):
                            await self._sadd_if_current(
                                keys=[self.keys.generation, run.user_shown(write.user_id)],
                                args=[write.generation, *write.item_ids[first : first + WRITE_BACK_CHUNK]],
                                client=pipe,
                            )
                    await pipe.execute()
            elif self._redis_down:
                await self._redis.ping()
        except REDIS_UNAVAILABLE as error:
            self._redis_down = True
            if pending:
                log.warning("could not write %d fallback answers back to Redis: %s", len(pending), error)
            self.memory.return_pending()
            return 0
        except BaseException:  # cancelled (shutdown) or a bug: the writes stay pending, never silently dropped
            self.memory.return_pending()
            raise
        self.memory.flushed()
        self._redis_down = False
        return len(pending)

    async def run_fallback_flusher(self, closing: asyncio.Event, interval_s: float = 1.0) -> None:
        """Writes fallback answers back every ``interval_s`` until ``closing`` is set (see closed_within: its Redis
        calls happen exactly while Redis is unreachable or slow)."""
        while not await closed_within(closing, interval_s):
            try:
                written = await self.flush_fallback_writes()
            except Exception:  # the flusher must outlive any one failure; the next round tries again
                log.exception("writing fallback answers back failed")
                continue
            if written:
                log.info("wrote %d fallback answers back to Redis", written)
