"""The recommendations service across runs and outages, driven directly against the real Redis: a request that
reads during a /cleanup must not leave the old run's versions in the replica's cache (nor pull it back to that run),
fallback answers are written back only into the run they were served in, a replica leaves fallback mode after a
Redis blip even under load, and an empty fallback answer queues nothing to write back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from recommendations.app import create_app
from recommendations.fallback import PendingWrite
from recommendations.service import Answer, RecommendationService
from recommendations.serving_state import ServingStateCache, Versions
from recommendations.user_store import UserSnapshot
from recsys_core.algorithms.bandit import ItemStats
from recsys_core.experiments import load_experiment
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import AddItemsRequest
from recsys_core.settings import Settings
from recsys_io.catalog import add_items
from recsys_io.generations import delete_generations_before
from recsys_io.redis_client import REDIS_UNAVAILABLE, as_str
from tests.integration.helpers import FailingOnCall, a_redis_call_that_swallows_its_cancellation
from tests.support.proxy import TcpProxy
from tests.support.stack import REDIS_URL

ITEMS = [f"item-{n}" for n in range(50)]
T = TypeVar("T")


def _service(redis_client: Redis, keys: GlobalKeys) -> RecommendationService:
    settings = Settings(redis_prefix=keys.prefix)
    return RecommendationService(settings, redis_client, load_experiment(None, None, "blend"))


async def test_a_request_during_a_cleanup_does_not_pin_the_old_runs_versions(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    service = _service(redis_client, keys)
    old_run, new_run = keys.for_generation(0), keys.for_generation(1)
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=ITEMS))
    await redis_client.set(old_run.bandit_snapshot, ItemStats.empty(len(ITEMS)).to_bytes())
    await redis_client.set(old_run.bandit_version, 500)  # a long old run: its versions are high
    await redis_client.set(old_run.co_likes_version, 300)
    await service.recommend("ann", 10)

    # /cleanup has bumped the generation but not yet deleted the old run's keys when the next request reads.
    await redis_client.incr(keys.generation)
    await add_items(redis_client, keys, 1, AddItemsRequest(item_ids=ITEMS))
    during = await service.recommend("bob", 10)
    await delete_generations_before(redis_client, keys, 1)
    # The new run's first snapshots: item-7 is liked by everyone who saw it.
    likes = np.zeros(len(ITEMS), np.float32)
    likes[7] = 1000
    for _ in range(3):
        await redis_client.set(new_run.bandit_snapshot, ItemStats(likes, np.zeros_like(likes), likes).to_bytes())
        await redis_client.incr(new_run.bandit_version)
    after = await service.recommend("cid", 10)

    state = service.cache.state
    print(f"answer during the cleanup {len(during.item_ids)} items; replica at {state.versions}")
    assert len(during.item_ids) == 10
    assert (state.generation, state.bandit_version, state.co_likes_version) == (1, 3, 0)
    assert state.stats.likes[7] == 1000 and "item-7" in after.item_ids


async def test_an_empty_fallback_answer_queues_no_write_back(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    redis_client, keys = redis_and_keys
    service = _service(redis_client, keys)
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=ITEMS[:3]))
    assert len((await service.recommend("ann", 10)).item_ids) == 3  # ann has now seen the whole catalog

    answer = service._fallback("ann", 10, "C")  # what an outage would answer her

    assert answer.item_ids == [] and answer.fallback
    assert not service.memory.has_pending()
    assert await service.flush_fallback_writes() == 0


def _failing_once(real: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """``real``, except that its first call fails as a dropped Redis connection does."""
    return FailingOnCall(real, 1, RedisConnectionError("connection reset by peer (injected)"))


async def test_a_replica_under_load_leaves_fallback_mode_after_a_redis_blip(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    service = _service(redis_client, keys)
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=ITEMS))
    await service.recommend("warm-up", 10)  # the replica has the catalog cached: it can answer from the fallback
    monkeypatch.setattr(service.users, "read", _failing_once(service.users.read))
    answers: list[tuple[str, Answer]] = []
    last_fallback = -1
    # The load goes on until 300 normal answers in a row followed the last fallback answer (or this many answers
    # were given): how many fallback answers the blip costs depends on the machine's speed, the recovery does not.
    normal_in_a_row, most_answers = 300, 20_000

    async def caller(number: int) -> None:
        nonlocal last_fallback
        request = 0
        while len(answers) - (last_fallback + 1) < normal_in_a_row and len(answers) < most_answers:
            user = f"user-{number}-{request % 3}"  # each caller's users come back, so some had fallback answers
            answer = await service.recommend(user, 5)
            answers.append((user, answer))
            if answer.fallback:
                last_fallback = len(answers) - 1
            request += 1
            await asyncio.sleep(0.001)  # the client's next request comes a network round trip later

    await asyncio.gather(*(caller(number) for number in range(16)))

    fallback = [index for index, (_, answer) in enumerate(answers) if answer.fallback]
    shown: dict[str, list[str]] = {}
    for user, answer in answers:
        shown.setdefault(user, []).extend(answer.item_ids)
    print(f"{len(answers)} answers, {len(fallback)} from the fallback (the last at #{max(fallback, default=-1)})")
    assert fallback, "the injected failure should have sent at least one answer to the fallback"
    # Back to normal answers once the first write-back went through, while the load goes on.
    assert len(answers) < most_answers, "the replica was still answering from the fallback under load"
    assert all(not answer.fallback for _, answer in answers[-normal_in_a_row:])
    assert all(len(items) == len(set(items)) for items in shown.values()), "an item was shown twice to a user"


async def test_a_write_back_of_an_older_run_does_not_recreate_its_keys(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    service = _service(redis_client, keys)
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=ITEMS))
    await service.recommend("warm-up", 10)
    service._fallback("ann", 10, "C")  # an answer Redis has not been told of
    await redis_client.incr(keys.generation)  # a /cleanup on another replica: run 0's keys are gone
    await delete_generations_before(redis_client, keys, 1)

    await service.flush_fallback_writes()

    assert not service.memory.has_pending()
    assert not await redis_client.exists(keys.for_generation(0).user_shown("ann"))


async def test_a_request_that_read_the_older_run_does_not_pull_the_replica_back(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    cache = ServingStateCache(redis_client, keys)
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=ITEMS[:10]))
    await redis_client.set(keys.generation, 1)  # a /cleanup
    await add_items(redis_client, keys, 1, AddItemsRequest(item_ids=ITEMS[:11]))
    newer = await cache.ensure(Versions(1, 1, 0, 0))
    assert newer.generation == 1 and len(newer.catalog) == 11

    assert await cache.ensure(Versions(0, 1, 0, 0)) is newer  # read before the /cleanup: the replica stays

    await redis_client.delete(keys.generation)  # a Redis that lost its data: generation 0 again
    assert (await cache.ensure(Versions(0, 1, 0, 0))).generation == 0


async def test_a_fallback_after_a_failed_claim_skips_what_the_read_said_was_shown(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=ITEMS[:20]))
    first = await _service(redis_client, keys).recommend("ann", 10)
    other_replica = _service(redis_client, keys)  # it never served ann: it remembers nothing of her
    await other_replica.recommend("warm-up", 1)
    monkeypatch.setattr(other_replica.users, "claim", _failing_once(other_replica.users.claim))

    answer = await other_replica.recommend("ann", 10)

    assert answer.fallback and len(answer.item_ids) == 10
    assert not set(answer.item_ids) & set(first.item_ids)


async def test_a_large_write_back_goes_in_chunks_and_a_cancelled_one_stays_pending(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    service = _service(redis_client, keys)
    items = tuple(f"item-{n}" for n in range(3_000))  # more than one Lua unpack takes
    service.memory.add_pending(PendingWrite(0, "ann", items[:2_000]))
    service.memory.add_pending(PendingWrite(0, "ann", items[1_000:]))  # merged, each item once

    real_script = service._sadd_if_current

    async def cancelled(*args: object, **kwargs: object) -> object:
        raise asyncio.CancelledError  # the service stops mid-write

    monkeypatch.setattr(service, "_sadd_if_current", cancelled)
    with pytest.raises(asyncio.CancelledError):
        await service.flush_fallback_writes()
    assert service.memory.is_pending("ann")  # not dropped: the next write-back sends it

    monkeypatch.setattr(service, "_sadd_if_current", real_script)
    assert await service.flush_fallback_writes() == 1
    assert not service.memory.is_pending("ann")
    assert await redis_client.scard(keys.for_generation(0).user_shown("ann")) == 3_000


async def _catalog_with_liked_items(redis_client: Redis, keys: GlobalKeys, likes_of: dict[int, float]) -> None:
    """ITEMS in run 0's catalog and a first bandit snapshot where item i was liked ``likes_of[i]`` times out of as
    many impressions."""
    run = keys.for_generation(0)
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=ITEMS))
    likes = np.zeros(len(ITEMS), np.float32)
    likes[list(likes_of)] = list(likes_of.values())
    await redis_client.set(run.bandit_snapshot, ItemStats(likes, np.zeros_like(likes), likes).to_bytes())
    await redis_client.set(run.bandit_version, 1)


async def test_the_service_shuts_down_even_if_a_write_back_swallows_its_cancellation(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback flusher's Redis calls happen while Redis is unreachable or slow, and a cancellation that lands
    during a Redis command can be swallowed inside the client: the lifespan must end anyway (it used to cancel the
    flusher's endless loop and wait for it)."""
    _, keys = redis_and_keys
    calls = 0
    swallow = True
    flushing = asyncio.Event()

    async def write_back_that_swallows_cancellation(service: RecommendationService) -> int:
        nonlocal calls
        calls += 1
        flushing.set()
        if swallow:
            await a_redis_call_that_swallows_its_cancellation(0.5)
        return 0

    monkeypatch.setattr(RecommendationService, "flush_fallback_writes", write_back_that_swallows_cancellation)
    app = create_app(Settings(redis_prefix=keys.prefix))
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    await asyncio.wait_for(flushing.wait(), 10)  # the flusher is inside a write-back (every second)
    shutdown = asyncio.create_task(lifespan.__aexit__(None, None, None))
    try:
        done, _ = await asyncio.wait({shutdown}, timeout=10)
        print(f"write-backs: {calls}; shutdown finished: {bool(done)}")
        assert done, "the lifespan did not end: the fallback flusher went on"
    finally:
        swallow = False
        if not shutdown.done():
            for task in asyncio.all_tasks():
                if task.get_coro().__qualname__.startswith("RecommendationService.run_fallback_flusher"):  # type: ignore[union-attr]
                    task.cancel()
            await asyncio.wait({shutdown}, timeout=10)


async def test_requests_queued_behind_a_reload_that_hangs_share_its_failure(
    redis_and_keys: tuple[Redis, GlobalKeys], proxy_for: Callable[[str], TcpProxy]
) -> None:
    """Redis stalls during a reload: the requests waiting for it must not each try again after their own
    timeout (the last of 8 would wait 8 timeouts); they fail with it and answer from the fallback."""
    redis_client, keys = redis_and_keys
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=ITEMS))
    proxy = proxy_for(REDIS_URL)
    timeout_s = 0.5
    stalled_client = Redis.from_url(proxy.url_for(REDIS_URL), socket_timeout=timeout_s)
    try:
        cache = ServingStateCache(stalled_client, keys)
        await stalled_client.ping()
        proxy.stall()

        async def timed_ensure() -> tuple[bool, float]:
            started = time.monotonic()
            try:
                await cache.ensure(Versions(0, 1, 0, 0))
            except REDIS_UNAVAILABLE:
                return False, time.monotonic() - started
            return True, time.monotonic() - started

        outcomes = await asyncio.gather(*(timed_ensure() for _ in range(8)))
    finally:
        proxy.resume()
        await stalled_client.aclose()
    slowest = max(seconds for _, seconds in outcomes)
    print(f"8 requests behind a stalled reload: slowest failed after {slowest:.2f}s (timeout {timeout_s}s)")
    assert not any(ok for ok, _ in outcomes)
    assert slowest < 3 * timeout_s, "the queued requests retried the reload one after another"


async def test_unreadable_snapshots_keep_the_previous_objects_and_requests_answer(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    run = keys.for_generation(0)
    await _catalog_with_liked_items(redis_client, keys, {3: 50})
    service = _service(redis_client, keys)
    await service.recommend("ann", 10)

    # A corrupt bandit snapshot, model blob and co-likes blob, each under a newer version.
    await redis_client.set(run.bandit_snapshot, b"not a snapshot")
    await redis_client.set(run.bandit_version, 2)
    await redis_client.set(run.model_blob(1), b"not an npz")
    await redis_client.set(run.model_current, 1)
    await redis_client.set(run.co_likes, b"not neighbours")
    await redis_client.set(run.co_likes_version, 1)
    answer = await service.recommend("bob", 10)

    state = service.cache.state
    assert not answer.fallback and len(set(answer.item_ids)) == 10
    assert (state.bandit_version, state.model_version, state.co_likes_version) == (2, 1, 1)
    assert state.stats.likes[3] == 50, "the previous bandit evidence is kept"
    assert state.model is None and state.co_likes is None


async def test_a_fallback_answer_during_a_claim_never_overlaps_it(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests of one user around a Redis blip: one is served from the fallback after the other read the
    user's state (its items must reach the shown set before that claim), another while that claim is in flight
    (it must skip what the claim may take). Together the user is never shown an item twice."""
    redis_client, keys = redis_and_keys
    # Room for every answer beside the claim's candidates (k × candidates_per_slot of them are in flight).
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=[f"item-{n}" for n in range(100)]))
    service = _service(redis_client, keys)
    answers = [await service.recommend("ann", 10)]
    real_read, real_claim = service.users.read, service.users.claim

    async def read_then_blip(generation: int, user_id: str) -> UserSnapshot:
        snapshot = await real_read(generation, user_id)
        answers.append(service._fallback("ann", 5, "C"))  # another request of ann, while Redis blipped
        return snapshot

    async def claim_in_flight(
        generation: int, user_id: str, group: str, candidates: list[tuple[str, str]], k: int
    ) -> list[str] | None:
        answers.append(service._fallback("ann", 5, "C"))  # one more, while this claim is on its way
        return await real_claim(generation, user_id, group, candidates, k)

    monkeypatch.setattr(service.users, "read", read_then_blip)
    monkeypatch.setattr(service.users, "claim", claim_in_flight)
    answers.append(await service.recommend("ann", 10))

    shown = [item for answer in answers for item in answer.item_ids]
    print([(answer.item_ids, answer.fallback) for answer in answers])
    assert [answer.fallback for answer in answers] == [False, True, True, False]
    assert [len(answer.item_ids) for answer in answers] == [10, 5, 5, 10]
    assert len(shown) == len(set(shown)) == 30, "an item was shown twice"
    in_redis = {as_str(member) for member in await redis_client.smembers(keys.for_generation(0).user_shown("ann"))}
    assert set(answers[1].item_ids) <= in_redis, "the first fallback answer was written back before the claim"


async def test_an_unexpected_error_answers_from_the_fallback(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client, keys = redis_and_keys
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=ITEMS))
    service = _service(redis_client, keys)
    first = await service.recommend("ann", 10)

    def broken_strategy(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug in a strategy")

    monkeypatch.setattr("recommendations.service.rank_with_fill", broken_strategy)
    answer = await service.recommend("ann", 10)
    assert answer.fallback and len(answer.item_ids) == 10
    assert not set(answer.item_ids) & set(first.item_ids)
    assert not service._redis_down, "a bug is not a Redis outage"


async def test_a_redis_that_lost_its_data_is_not_served_from_the_old_cache(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    """Versions start over after Redis loses its data (no persistence, a restart): the replica must see it by the
    dataset mark, not keep serving the old catalog until the new versions pass the old ones."""
    redis_client, keys = redis_and_keys
    for batch in range(5):  # catalog version 5
        await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=ITEMS[batch * 10 : batch * 10 + 10]))
    service = _service(redis_client, keys)
    assert len((await service.recommend("ann", 10)).item_ids) == 10
    old_mark = service.cache.state.dataset
    assert old_mark

    async for key in redis_client.scan_iter(match=f"{keys.prefix}:*"):  # the data is lost
        await redis_client.delete(key)
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["new-1", "new-2", "new-3"]))
    answer = await service.recommend("bob", 10)

    state = service.cache.state
    print(f"after the loss: {answer.item_ids}, catalog {len(state.catalog)} items at version {state.catalog.version}")
    assert sorted(answer.item_ids) == ["new-1", "new-2", "new-3"]
    assert len(state.catalog) == 3 and state.dataset != old_mark
    # A request that read the old mark just before the loss does not pull the replica back.
    stale = Versions(0, 5, 0, 0, 0, old_mark)
    assert await service.cache.ensure(stale) is state


async def test_a_fallback_answer_skips_what_every_claim_round_took(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent request of the same user wins most of the first round's candidates, so the claim goes a second
    round; a fallback answer served during that round must skip the first round's items too."""
    redis_client, keys = redis_and_keys
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=[f"item-{n}" for n in range(100)]))
    service = _service(redis_client, keys)
    shown_key = keys.for_generation(0).user_shown("ann")
    real_claim = service.users.claim
    fallback: list[Answer] = []
    rounds = 0

    async def contended_claim(
        generation: int, user_id: str, group: str, pairs: list[tuple[str, str]], k: int
    ) -> object:
        nonlocal rounds
        rounds += 1
        if rounds == 1:  # another request of ann takes all but the last five candidates first
            await redis_client.sadd(shown_key, *[item for item, _ in pairs[:-5]])
        else:  # Redis blips for another request of ann, answered from the fallback meanwhile
            fallback.append(service._fallback("ann", 10, "C"))
        return await real_claim(generation, user_id, group, pairs, k)

    monkeypatch.setattr(service.users, "claim", contended_claim)
    answer = await service.recommend("ann", 10)

    print(f"{rounds} claim rounds; answer {answer.item_ids}; fallback {fallback[0].item_ids}")
    assert rounds == 2 and len(answer.item_ids) == 10
    assert not set(answer.item_ids) & set(fallback[0].item_ids), "the fallback repeated a claimed item"


async def test_a_fallback_answer_skips_items_the_user_answered_without_being_shown(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    run = keys.for_generation(0)
    # The five most popular items: the fallback's first choice.
    await _catalog_with_liked_items(redis_client, keys, dict.fromkeys(range(5), 100))
    # ann liked item-0 through /interact without /recs showing it to her.
    await redis_client.lpush(run.user_history("ann"), orjson.dumps({"item_id": "item-0", "action": "like", "ts": 1.0}))
    service = _service(redis_client, keys)
    normal = await service.recommend("ann", 10)
    fallback = service._fallback("ann", 10, "C")
    assert "item-0" not in normal.item_ids
    assert "item-0" not in fallback.item_ids, "the fallback recommended an item the user already answered"
