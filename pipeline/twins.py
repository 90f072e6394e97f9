"""The pipeline's twin matching: each active user's twin lift, published to Redis for /recs to read.

When a user's feedback is stored, the pipeline reads what /recs showed them and how they answered, records it in
the run's ``ReactionBook`` and publishes the user's ``TwinLift`` (what the users who answered like them liked
and were shown) under ``user_twins``. The matrix of everybody's reactions the matches are looked up in is
rebuilt at most every ``twins_refresh_s``; on each rebuild the twins of users active within ``twins_active_s``
are recomputed (0 by default: the replay found no clear gain in it, and under load it was a third of the
pipeline's CPU). The matching and the matrix build run in the background executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from redis.asyncio import Redis

from recsys_core import lua
from recsys_core.algorithms.twins import ReactionBook, ReactionMatrix, TwinParams, link_order
from recsys_core.keys import GlobalKeys
from recsys_core.settings import Settings
from recsys_io.redis_client import REDIS_UNAVAILABLE, as_str

log = logging.getLogger(__name__)

# Users read per Redis round trip when the book is refilled after a restart.
RESTORE_CHUNK = 500
# At most this share of a core goes to rebuilding the matrix: a book of 50,000 users takes ~0.25 s to build.
REBUILD_MAX_BUSY_SHARE = 0.2
# After a rebuild the active users are matched again this many per thread hop, fresh answers served in between.
REMATCH_CHUNK = 8
# Why a lift was computed: the user's feedback just arrived, or active users are matched on a rebuilt matrix.
FEEDBACK, REMATCH = "feedback", "rematch"


@dataclass(frozen=True, slots=True)
class UserReactions:
    shown: tuple[str, ...]
    liked: tuple[str, ...]
    disliked: tuple[str, ...]


def _lifts(
    matrix: ReactionMatrix, users: dict[str, UserReactions], params: TwinParams
) -> tuple[dict[str, str], dict[str, str], float]:
    """Each user's lift as the text /recs reads ("" when there is none, which clears an older one), the users
    whose likeliest twin is sure enough to link them to it, and the CPU seconds the matching took."""
    started = time.thread_time()
    texts, links = {}, {}
    for user_id, reactions in users.items():
        lift = matrix.lift(user_id, reactions.shown, reactions.liked, reactions.disliked, params)
        texts[user_id] = "" if lift is None else lift.to_text()
        if lift is not None and lift.sure_twin is not None:
            links[user_id] = lift.sure_twin
    return texts, links, time.thread_time() - started


class TwinsPublisher:
    def __init__(
        self,
        redis: Redis,
        keys: GlobalKeys,
        settings: Settings,
        executor: Executor,
        on_published: Callable[[float], None] | None = None,
        may_publish: Callable[[], bool] = lambda: True,
        on_matched: Callable[[str, int, float], None] | None = None,
        lease_token: str = "",
    ) -> None:
        self._redis = redis
        # False once this process may have lost the pipeline lease (pipeline/leadership.py): nothing is written then.
        self._may_publish = may_publish
        # And Redis refuses the writes of a process that does not hold it ("": not checked), in case the check above
        # passed just before a pause during which another process took over.
        self._lease_token = lease_token
        self._keys = keys
        self._settings = settings
        self._executor = executor
        self._params = TwinParams(
            prior=settings.twins_prior,
            noise=settings.twins_noise,
            link_weight=settings.twins_link_weight,
            max_viewers_per_item=settings.twins_max_viewers_per_item,
        )
        self._set = redis.register_script(lua.SET_IF_CURRENT)
        self._hset = redis.register_script(lua.HSET_IF_CURRENT)
        self._wake = asyncio.Event()
        # Called with the seconds from the collector receiving a user's feedback to their twins being published.
        self._on_published = on_published
        # Called with the trigger ("feedback" or "rematch"), the number of lifts and their CPU seconds.
        self._on_matched = on_matched
        self.enabled = settings.twins_max_users > 0
        self.reset(-1)
        self.published = 0
        self.last_build_s = 0.0
        # Lifts computed and their CPU seconds, by trigger: a user's new feedback, or the rematch of active
        # users on a rebuilt matrix (the pipeline's largest CPU cost under load: /status shows the split).
        self.lifts = {FEEDBACK: 0, REMATCH: 0}
        self.match_cpu_s = {FEEDBACK: 0.0, REMATCH: 0.0}

    def reset(self, generation: int) -> None:
        """Forget everything: a new run starts (after a /cleanup, or at start)."""
        self._generation = generation
        self._book = ReactionBook(max(self._settings.twins_max_users, 1))
        self._matrix: ReactionMatrix | None = None
        self._next_build_at = 0.0
        self._book_changed = False
        self._dirty: set[str] = set()
        # When the collector received the oldest feedback of each user not published since.
        self._received: dict[str, float] = {}
        # Users who answered recently, with what they answered (recomputed on every matrix rebuild).
        self._active: dict[str, tuple[float, UserReactions]] = {}
        # Users recorded while there was no matrix to match them on.
        self._unmatched: set[str] = set()

    def describe(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "users_in_book": len(self._book),
            "users_in_matrix": 0 if self._matrix is None else len(self._matrix.user_ids),
            "active_users": len(self._active),
            "last_matrix_build_s": round(self.last_build_s, 4),
            "lifts_published": self.published,
            "lifts_computed": dict(self.lifts),
            "lift_cpu_s": {trigger: round(seconds, 3) for trigger, seconds in self.match_cpu_s.items()},
            "users_linked": self._book.linked_users,
        }

    def note(self, generation: int, received_at: dict[str, float]) -> None:
        """These users' feedback of run ``generation`` (received by the collector at those times) is stored:
        match them again soon."""
        if not self.enabled or not received_at:
            return
        if generation != self._generation:
            self.reset(generation)
        self._dirty |= received_at.keys()
        for user_id, at in received_at.items():
            self._received[user_id] = min(at, self._received.get(user_id, at))
        self._wake.set()

    async def restore(self, generation: int, user_ids: list[str], chunk: int = RESTORE_CHUNK) -> int:
        """Refill the book after a restart with what ``user_ids`` (the most recent first) were shown and
        answered, as read from Redis, so the users who come back find their twins again. Users recorded live
        meanwhile keep their newer record. Returns how many users were restored."""
        restored = 0
        for first in range(0, min(len(user_ids), self._settings.twins_max_users), chunk):
            if not self.enabled or generation != self._generation:
                break  # a /cleanup started another run
            reactions = await self._read(generation, user_ids[first : first + chunk])
            if generation != self._generation:
                break
            for user_id, known in reactions.items():  # most recent first: each goes in as the oldest so far
                if known.shown or known.liked or known.disliked:
                    restored += self._book.restore(user_id, known.shown, known.liked, known.disliked)
            self._book_changed = self._book_changed or restored > 0
        linked = await self._restore_links(generation) if restored else 0
        if restored:
            log.info("twin book restored with %d users of run %d (%d linked)", restored, generation, linked)
        return restored

    async def _restore_links(self, generation: int, chunk: int = RESTORE_CHUNK) -> int:
        """Link the restored users to their twins again, as the links were made before the restart."""
        links: dict[str, str] = {}
        run = self._keys.for_generation(generation)
        async for user_id, twin_id in self._redis.hscan_iter(run.twin_links, count=chunk):
            links[as_str(user_id)] = as_str(twin_id)
        made = 0
        for done, (user_id, twin_id) in enumerate(link_order(links), start=1):
            if generation != self._generation:
                break  # a /cleanup started another run
            made += self._book.restore_link(user_id, twin_id)
            if done % chunk == 0:
                await asyncio.sleep(0)  # a few milliseconds per chunk on the event loop
        self._book_changed = self._book_changed or made > 0
        return made

    async def run_forever(self, stopping: asyncio.Event) -> None:
        while self.enabled and not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.twins_refresh_s)
            self._wake.clear()
            try:
                await self.step()
            except REDIS_UNAVAILABLE as error:
                log.warning("could not publish twins: %s", error)
            except Exception:  # one bad step must not end the matching for the run
                log.exception("twin matching failed; trying again")

    async def step(self) -> int:
        """Publish the matches of the users who just answered, on the current matrix (their next /recs may be a
        fraction of a second away), then rebuild the matrix when due and publish again the matches of every
        recently active user. Returns how many lifts were written."""
        generation = self._generation
        matched = await self._match_fresh(generation)
        written = len(matched)
        now = time.monotonic()
        if self._book_changed and now >= self._next_build_at and generation == self._generation:
            rows, item_ids = self._book.rows(), self._book.item_ids()
            self._book_changed = False  # before the build: a restore running meanwhile marks it changed again
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            matrix = await loop.run_in_executor(self._executor, ReactionMatrix.build, rows, item_ids)
            if generation != self._generation:
                return written  # a /cleanup started another run during the build: that matrix is the old run's
            self._matrix = matrix
            built = time.monotonic()
            # A large book takes a while to build: keep the rebuilds under REBUILD_MAX_BUSY_SHARE of a core.
            self.last_build_s = built - started
            pause = max(self._settings.twins_refresh_s, self.last_build_s / REBUILD_MAX_BUSY_SHARE)
            self._next_build_at = started + pause
            horizon = built - self._settings.twins_active_s
            # Users who answered before there was any matrix have no lift yet: matched now, active or not.
            self._active = {
                u: entry for u, entry in self._active.items() if entry[0] >= horizon or u in self._unmatched
            }
            # The unmatched first (their first lift), then those matched again.
            rest = sorted(self._active, key=lambda u: (u not in self._unmatched, u))
            # Everybody active is matched again on the new matrix, a few at a time: whoever answers meanwhile
            # goes first, since their next /recs may be a fraction of a second away (a lift takes ~1-2 ms).
            fresh: set[str] = set()
            for first in range(0, len(rest), REMATCH_CHUNK):
                newly = await self._match_fresh(generation)
                fresh |= newly
                written += len(newly)
                if generation != self._generation:
                    break  # a /cleanup started another run
                batch = rest[first : first + REMATCH_CHUNK]
                chunk = {u: self._active[u][1] for u in batch if u not in fresh and u in self._active}
                first_lifts = {u: reactions for u, reactions in chunk.items() if u in self._unmatched}
                again = {u: reactions for u, reactions in chunk.items() if u not in self._unmatched}
                written += len(await self._match(generation, first_lifts, FEEDBACK))
                written += len(await self._match(generation, again, REMATCH))
        return written

    async def _match_fresh(self, generation: int) -> set[str]:
        """Read, record and match the users noted since the last call; returns those whose lift was written."""
        if generation != self._generation:
            return set()  # the users noted now belong to the run a /cleanup started
        dirty, self._dirty = self._dirty, set()
        if not dirty:
            return set()
        try:
            fresh = await self._read(generation, sorted(dirty))
        except BaseException:
            if generation == self._generation:
                self._dirty |= dirty  # read them again next time
            raise
        if generation != self._generation:
            return set()  # read from the old run: they must not enter the new run's book
        now = time.monotonic()
        for user_id, reactions in fresh.items():
            self._book.record(user_id, reactions.shown, reactions.liked, reactions.disliked)
            self._active[user_id] = (now, reactions)
        self._book_changed = self._book_changed or bool(fresh)
        if self._matrix is None:
            self._unmatched |= fresh.keys()
        return await self._match(generation, {u: self._active[u][1] for u in fresh}, FEEDBACK)

    async def _match(self, generation: int, targets: dict[str, UserReactions], trigger: str) -> set[str]:
        """Compute and publish the targets' lifts on the current matrix; returns the users whose lift was written."""
        if not targets or self._matrix is None or generation != self._generation:
            return set()
        loop = asyncio.get_running_loop()
        try:
            texts, links, cpu_s = await loop.run_in_executor(
                self._executor, _lifts, self._matrix, targets, self._params
            )
            written = await self._publish_lifts(generation, texts, links, trigger, len(targets), cpu_s)
        except REDIS_UNAVAILABLE:
            if generation == self._generation:
                # Matched again at the next step from a fresh read: nothing else would (no rematch by default).
                self._dirty |= targets.keys()
            raise
        self._unmatched -= targets.keys()
        return written

    async def _publish_lifts(
        self, generation: int, texts: dict[str, str], links: dict[str, str], trigger: str, count: int, cpu_s: float
    ) -> set[str]:
        self.lifts[trigger] += count
        self.match_cpu_s[trigger] += cpu_s
        if self._on_matched is not None:
            self._on_matched(trigger, count, cpu_s)
        made: dict[str, str] = {}
        if generation == self._generation:
            made = {user_id: twin_id for user_id, twin_id in links.items() if self._book.link(user_id, twin_id)}
            self._book_changed = self._book_changed or bool(made)
        if not await self._publish(generation, texts, made):
            return set()
        published_at = time.time()
        for user_id in texts:
            received = self._received.pop(user_id, None)
            if received is not None and self._on_published is not None:
                self._on_published(max(published_at - received, 0.0))
        return set(texts)

    async def _read(self, generation: int, user_ids: list[str]) -> dict[str, UserReactions]:
        run = self._keys.for_generation(generation)
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.smembers(run.user_shown(user_id))
                pipe.hgetall(run.user_feedback(user_id))
            replies = await pipe.execute()
        result = {}
        for position, user_id in enumerate(user_ids):
            shown, feedback = replies[2 * position], replies[2 * position + 1]
            answers = {as_str(item): as_str(action) for item, action in feedback.items()}
            result[user_id] = UserReactions(
                tuple(as_str(item) for item in shown),
                tuple(item for item, action in answers.items() if action == "like"),
                tuple(item for item, action in answers.items() if action == "dislike"),
            )
        return result

    async def _publish(self, generation: int, texts: dict[str, str], links: dict[str, str]) -> int:
        """Write the lifts, and the links made with them (for a restart to find), in one round trip."""
        if not self._may_publish():
            return 0
        run = self._keys.for_generation(generation)
        users = sorted(texts)
        async with self._redis.pipeline(transaction=False) as pipe:
            fence = [self._keys.generation, self._keys.pipeline_leader]
            await self._set(
                keys=[*fence, *(run.user_twins(u) for u in users)],
                args=[generation, self._lease_token, self._settings.twins_ttl_s, *(texts[u] for u in users)],
                client=pipe,
            )
            if links:
                pairs = [value for pair in sorted(links.items()) for value in pair]
                await self._hset(
                    keys=[*fence, run.twin_links], args=[generation, self._lease_token, *pairs], client=pipe
                )
            written = (await pipe.execute())[0]
        if int(written) < 0:
            return 0  # a /cleanup started another run meanwhile, or another process took the lease
        self.published += int(written)
        return int(written)
