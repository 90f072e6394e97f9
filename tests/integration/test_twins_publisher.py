"""The pipeline's twin publisher on the real Redis: it reads what users were shown and answered, and publishes each
one's matches under the run's generation only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.typing import EncodableT, FieldT

import pipeline.twins
from pipeline.twins import REBUILD_MAX_BUSY_SHARE, REMATCH_CHUNK, TwinsPublisher, UserReactions
from recsys_core.algorithms.twins import ReactionMatrix, TwinLift, TwinParams
from recsys_core.keys import GlobalKeys
from recsys_core.settings import Settings
from recsys_io.redis_client import as_str
from tests.integration.helpers import FailingOnCall

pytestmark = pytest.mark.integration


async def _answered(
    redis: Redis, keys: GlobalKeys, user: str, shown: list[str], answers: Mapping[FieldT, EncodableT]
) -> None:
    run = keys.for_generation(0)
    await redis.sadd(run.user_shown(user), *shown)
    if answers:
        await redis.hset(run.user_feedback(user), mapping=answers)


async def _earlier_user_with_a_gem(redis: Redis, keys: GlobalKeys) -> None:
    """ "earlier" was shown a and b, liked both, and liked "gem" (shown elsewhere)."""
    await _answered(redis, keys, "earlier", ["a", "b"], {"a": "like", "b": "like", "gem": "like"})


async def _user_who_liked_a_and_b(redis: Redis, keys: GlobalKeys) -> None:
    await _answered(redis, keys, "user", ["a", "b"], {"a": "like", "b": "like"})


async def test_a_user_gets_the_likes_of_an_earlier_user_who_answered_alike(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis, keys = redis_and_keys
    delays: list[float] = []
    # A strong prior: two shared likes among a handful of users make a near-certain match.
    settings = Settings(redis_prefix=keys.prefix, twins_prior=0.5, twins_refresh_s=0.01, twins_link_weight=0.6)
    with ThreadPoolExecutor(max_workers=1) as executor:
        publisher = TwinsPublisher(redis, keys, settings, executor, on_published=delays.append)
        await _answered(redis, keys, "earlier", ["a", "b", "dud"], {"a": "like", "b": "like", "gem": "like"})
        for other in ("x", "y", "z"):  # users who saw a and b and liked neither: a like on them is rare
            await _answered(redis, keys, other, ["a", "b"], {})
        await _answered(redis, keys, "user", ["a", "b", "c"], {"a": "like", "b": "like"})
        received = time.time()
        publisher.note(0, {"earlier": received, "user": received, "x": received})
        assert await publisher.step() == 3

        text = await redis.get(keys.for_generation(0).user_twins("user"))
        assert text
        lift = TwinLift.from_text(as_str(text))
        masses = dict(zip(lift.item_ids, zip(lift.liked.tolist(), lift.shown.tolist(), strict=True), strict=True))
        print(f"the user's twins: {masses}")
        assert masses["gem"][0] > 0.5  # the earlier user's other like
        assert masses["dud"][0] == 0.0 and masses["dud"][1] > 0.5  # shown to the earlier user, not liked
        assert not {"a", "b", "c"} & masses.keys()  # never what the user was shown
        # x shares no like with anybody: an empty lift clears whatever an older one said.
        assert await redis.get(keys.for_generation(0).user_twins("x")) == b""
        assert len(delays) == 3 and all(0 <= d < 5 for d in delays)
        assert publisher.describe()["users_in_book"] == 3
        # Each of the two is the other's twin with weight ~0.66 > twins_link_weight: both are linked; x is not.
        assert publisher.describe()["users_linked"] == 2


async def test_by_default_a_user_is_matched_when_their_feedback_arrives_and_not_again_on_each_rebuild(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis, keys = redis_and_keys
    settings = Settings(redis_prefix=keys.prefix, twins_prior=0.5, twins_refresh_s=0.01)
    assert settings.twins_active_s == 0
    with ThreadPoolExecutor(max_workers=1) as executor:
        publisher = TwinsPublisher(redis, keys, settings, executor)
        await _earlier_user_with_a_gem(redis, keys)
        publisher.note(0, {"earlier": time.time()})
        # No matrix yet when the feedback came: matched on the first one, built in the same step.
        assert await publisher.step() == 1
        await asyncio.sleep(0.05)  # a rebuild is due at the next step
        await _user_who_liked_a_and_b(redis, keys)
        publisher.note(0, {"user": time.time()})
        assert await publisher.step() == 1  # the user, on the current matrix; the rebuild matches nobody again
        assert publisher.lifts == {"feedback": 2, "rematch": 0}
        assert await redis.get(keys.for_generation(0).user_twins("user"))


async def test_a_lift_whose_publication_failed_is_published_at_the_next_step(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the rematch nothing else would match the user again before their next feedback."""
    redis, keys = redis_and_keys
    settings = Settings(redis_prefix=keys.prefix, twins_prior=0.5, twins_refresh_s=0.01)
    with ThreadPoolExecutor(max_workers=1) as executor:
        publisher = TwinsPublisher(redis, keys, settings, executor)
        await _earlier_user_with_a_gem(redis, keys)
        await _user_who_liked_a_and_b(redis, keys)
        # The second publication fails: "user"'s, on the matrix built for "earlier".
        monkeypatch.setattr(
            publisher, "_publish", FailingOnCall(publisher._publish, 2, RedisConnectionError("reset (injected)"))
        )
        publisher.note(0, {"earlier": time.time()})
        await publisher.step()
        publisher.note(0, {"user": time.time()})
        with pytest.raises(RedisConnectionError):
            await publisher.step()
        assert await redis.exists(keys.for_generation(0).user_twins("user")) == 0
        assert await publisher.step() == 1  # read and matched again
        assert await redis.get(keys.for_generation(0).user_twins("user"))


async def test_nothing_is_published_once_a_cleanup_started_another_run(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis, keys = redis_and_keys
    settings = Settings(redis_prefix=keys.prefix, twins_prior=0.5, twins_refresh_s=0.01)
    with ThreadPoolExecutor(max_workers=1) as executor:
        publisher = TwinsPublisher(redis, keys, settings, executor)
        await _earlier_user_with_a_gem(redis, keys)
        await _user_who_liked_a_and_b(redis, keys)
        await redis.set(keys.generation, 1)  # a /cleanup after the feedback of run 0 was stored
        publisher.note(0, {"earlier": time.time(), "user": time.time()})
        assert await publisher.step() == 0
        assert await redis.exists(keys.for_generation(0).user_twins("user")) == 0
        assert publisher.published == 0


async def test_a_slow_matrix_build_is_paced_and_fresh_users_are_still_matched_at_once(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis, keys = redis_and_keys
    builds: list[float] = []
    real_build = ReactionMatrix.build

    def slow_build(rows: list[tuple[str, np.ndarray, np.ndarray]], item_ids: tuple[str, ...]) -> ReactionMatrix:
        builds.append(time.monotonic())
        time.sleep(0.05)  # a large book
        return real_build(rows, item_ids)

    monkeypatch.setattr("pipeline.twins.ReactionMatrix.build", slow_build)
    settings = Settings(redis_prefix=keys.prefix, twins_prior=0.5, twins_refresh_s=0.01)
    with ThreadPoolExecutor(max_workers=1) as executor:
        publisher = TwinsPublisher(redis, keys, settings, executor)
        await _earlier_user_with_a_gem(redis, keys)
        publisher.note(0, {"earlier": time.time()})
        await publisher.step()
        assert len(builds) == 1
        await _user_who_liked_a_and_b(redis, keys)
        publisher.note(0, {"user": time.time()})
        assert await publisher.step() == 1  # matched on the existing matrix: no rebuild so soon
        assert len(builds) == 1
        assert await redis.get(keys.for_generation(0).user_twins("user"))
        # 0.05 s per build allows one every 0.05 / REBUILD_MAX_BUSY_SHARE s, far above twins_refresh_s.
        pause = 0.05 / REBUILD_MAX_BUSY_SHARE
        measured = publisher.describe()["last_matrix_build_s"]
        assert isinstance(measured, float) and measured >= 0.05
        # (+10 ms: describe() rounds the build time, and the build started a little before slow_build ran.)
        while time.monotonic() < builds[0] + measured / REBUILD_MAX_BUSY_SHARE + 0.01:
            await publisher.step()
        publisher.note(0, {"user": time.time()})
        await publisher.step()
        print(f"builds at {[round(at - builds[0], 3) for at in builds]} s, pause {pause:.2f} s")
        assert len(builds) == 2 and builds[1] - builds[0] >= pause


async def test_a_user_answering_while_the_active_users_are_matched_again_goes_first(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis, keys = redis_and_keys
    settings = Settings(redis_prefix=keys.prefix, twins_prior=0.5, twins_refresh_s=0.01, twins_active_s=3.0)
    active = [f"active-{n:02}" for n in range(5 * REMATCH_CHUNK)]
    for user in active:
        await _answered(redis, keys, user, ["a", "b"], {"a": "like"})
    await _answered(redis, keys, "late", ["a", "b"], {"a": "like", "b": "like"})
    calls: list[set[str]] = []
    real_lifts = pipeline.twins._lifts
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1) as executor:
        publisher = TwinsPublisher(redis, keys, settings, executor)

        def recorded_lifts(
            matrix: ReactionMatrix, users: dict[str, UserReactions], params: TwinParams
        ) -> tuple[dict[str, str], dict[str, str], float]:
            calls.append(set(users))
            if len(calls) == 3:  # "late" answers while the second chunk of the re-match is computed
                loop.call_soon_threadsafe(publisher.note, 0, {"late": time.time()})
            return real_lifts(matrix, users, params)

        monkeypatch.setattr("pipeline.twins._lifts", recorded_lifts)
        publisher.note(0, dict.fromkeys(active, time.time()))
        await publisher.step()  # no matrix yet: the first one is built, then everybody is matched on it
        order = [sorted(users)[0] if len(users) == 1 else len(users) for users in calls]
        print(f"lift calls: {order}")
        late_at = calls.index({"late"})
        assert late_at == 3, "matched right after the chunk during which it answered"
        rematched = [users for users in calls if users != {"late"}]
        assert all(len(users) == REMATCH_CHUNK for users in rematched) and set().union(*rematched) == set(active)
        assert sum(len(users) for users in calls[late_at + 1 :]) == 2 * REMATCH_CHUNK  # the rest came after
        assert await redis.exists(keys.for_generation(0).user_twins("late")) == 1  # its lift was written
        # Counted by trigger: the users noted before the first matrix got their first lifts on it.
        assert publisher.lifts == {"feedback": 1 + len(active), "rematch": 0}
        assert publisher.match_cpu_s["feedback"] > 0
        # Matched again on the next rebuild: they are active (TWINS_ACTIVE_S=3).
        await asyncio.sleep(0.02)
        publisher.note(0, {"late": time.time()})  # a change to the book, so a rebuild is due
        await publisher.step()
        assert publisher.lifts["rematch"] == len(active) + 1  # and "late", matched at the step's start too


async def test_a_restarted_publisher_links_its_users_again(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    redis, keys = redis_and_keys
    settings = Settings(redis_prefix=keys.prefix, twins_prior=0.5, twins_refresh_s=0.01, twins_link_weight=0.6)
    users = ["earlier", "user", "x", "y", "z"]
    await _answered(redis, keys, "earlier", ["a", "b", "dud"], {"a": "like", "b": "like", "gem": "like"})
    for other in ("x", "y", "z"):
        await _answered(redis, keys, other, ["a", "b"], {})
    await _answered(redis, keys, "user", ["a", "b", "c"], {"a": "like", "b": "like"})
    with ThreadPoolExecutor(max_workers=1) as executor:
        before = TwinsPublisher(redis, keys, settings, executor)
        before.note(0, dict.fromkeys(users, time.time()))
        await before.step()
        stored = await redis.hgetall(keys.for_generation(0).twin_links)
        print(f"links kept in Redis: {stored}")
        assert stored == {b"user": b"earlier", b"earlier": b"user"}

        after = TwinsPublisher(redis, keys, settings, executor)  # the pipeline restarted
        after.reset(0)
        assert await after.restore(0, users) == 5
        assert after.describe()["users_linked"] == 2
        # The user's row carries the earlier user's like of "gem" again, as before the restart.
        row = after._book.reactions_of("user")
        assert row is not None and "gem" in {after._book.item_ids()[i] for i in row[0]}

        # Links of another run are not written once a /cleanup started it.
        await redis.set(keys.generation, 1)
        before.note(0, {"user": time.time()})
        await redis.delete(keys.for_generation(0).twin_links)
        await before.step()
        assert await redis.exists(keys.for_generation(0).twin_links) == 0


async def test_a_cleanup_during_a_matrix_build_or_a_read_keeps_the_old_run_out_of_the_new_one(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis, keys = redis_and_keys
    settings = Settings(redis_prefix=keys.prefix, twins_prior=0.5, twins_refresh_s=0.01)
    started = asyncio.Event()
    real_build = ReactionMatrix.build

    def slow_build(rows: list[tuple[str, np.ndarray, np.ndarray]], item_ids: tuple[str, ...]) -> ReactionMatrix:
        loop.call_soon_threadsafe(started.set)
        time.sleep(0.2)  # a large book
        return real_build(rows, item_ids)

    loop = asyncio.get_running_loop()
    monkeypatch.setattr("pipeline.twins.ReactionMatrix.build", slow_build)
    with ThreadPoolExecutor(max_workers=1) as executor:
        publisher = TwinsPublisher(redis, keys, settings, executor)
        await _earlier_user_with_a_gem(redis, keys)
        publisher.note(0, {"earlier": time.time()})
        stepping = asyncio.create_task(publisher.step())
        await started.wait()
        publisher.reset(1)  # /cleanup: the pipeline switched to run 1 while run 0's matrix was being built
        await stepping
        assert publisher.describe()["users_in_matrix"] == 0  # the old run's matrix was dropped

        real_read = publisher._read

        async def read_then_cleanup(generation: int, user_ids: list[str]) -> object:
            answers = await real_read(generation, user_ids)
            publisher.reset(2)  # another /cleanup while run 1's answers were read
            return answers

        monkeypatch.setattr(publisher, "_read", read_then_cleanup)
        await redis.set(keys.generation, 1)
        publisher.note(1, {"earlier": time.time()})
        await publisher.step()
        assert publisher.describe()["users_in_book"] == 0  # run 1's user did not enter run 2's book
