"""Redis unreachable from the recommendations service: fallback answers or 503s, never a hang or a 500.

Items served in fallback mode never repeat what this replica showed the user, and once Redis is back they
are written to the user's shown set, so the normal path never shows them again either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from recsys_io.redis_client import as_str
from tests.integration.helpers import add_items, catalog, eventually, new_id
from tests.support.proxy import TcpProxy
from tests.support.stack import REDIS_URL, ServiceStack

pytestmark = pytest.mark.integration

# A functional bound on a hang (Redis timeouts are 1 s), not a speed benchmark.
ANSWER_BOUND_S = 3.0
CATALOG_SIZE = 60
K = 10


def _timed_get(client: httpx.Client, url: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = client.get(url)
    return response, time.monotonic() - started


def _assert_503_json(response: httpx.Response, seconds: float) -> None:
    assert response.status_code == 503, f"{response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]
    assert seconds < ANSWER_BOUND_S, f"a 503 took {seconds:.2f}s"


def _shown_in_redis(stack: ServiceStack, user: str) -> set[str]:
    return {as_str(member) for member in stack.redis.smembers(stack.run_key(f"user:{user}:shown"))}


def test_recs_serve_from_the_fallback_while_redis_is_down(
    stack_factory: Callable[..., ServiceStack], proxy_for: Callable[[str], TcpProxy]
) -> None:
    proxy = proxy_for(REDIS_URL)
    stack = stack_factory().start("pipeline", "event_collector")
    recs = stack.start_service("recommendations", REDIS_URL=proxy.url_for(REDIS_URL)).url
    user, other = new_id("user-"), new_id("user-")
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{recs}/cleanup").status_code == 200
        ids, genres = catalog(CATALOG_SIZE)
        add_items(client, recs, ids, genres)
        before: list[str] = []
        for _ in range(2):  # warm-up: the replica caches the catalog and remembers what it showed
            response = client.get(f"{recs}/recs/{user}", params={"k": K})
            assert response.status_code == 200 and "X-Fallback" not in response.headers
            before += response.json()["item_ids"]
        assert len(set(before)) == 2 * K

        cut = proxy.pause()
        fallback: list[str] = []
        fallback_answers = unavailable = 0
        slowest = 0.0
        for user_id in (user, user, user, other, other):
            response, seconds = _timed_get(client, f"{recs}/recs/{user_id}?k={K}")
            slowest = max(slowest, seconds)
            assert seconds < ANSWER_BOUND_S, f"/recs took {seconds:.2f}s while Redis was down"
            assert response.status_code in (200, 503), f"{response.status_code} {response.text}"
            if response.status_code == 503:
                _assert_503_json(response, seconds)
                unavailable += 1
                continue
            assert response.headers.get("X-Fallback"), "a 200 during the outage must say it came from the fallback"
            items = response.json()["item_ids"]
            assert len(items) == len(set(items)) == K
            assert set(items) <= set(ids)
            fallback_answers += 1
            if user_id == user:
                assert not set(items) & set(before), "the fallback repeated an item shown before the outage"
                assert not set(items) & set(fallback), "the fallback repeated one of its own answers"
                fallback += items
        assert fallback_answers >= 1, "this replica had the catalog cached: it should answer from the fallback"

        for method, path, body in (
            ("POST", "/add_items", {"item_ids": [new_id("item-")]}),
            ("GET", "/status", None),
            ("GET", "/ready", None),
        ):
            started = time.monotonic()
            response = client.request(method, f"{recs}{path}", json=body)
            _assert_503_json(response, time.monotonic() - started)
        assert client.get(f"{recs}/healthcheck").status_code == 200
        # The experiment's configuration needs no Redis (a grader reads it first); only its live figures are gone.
        started = time.monotonic()
        experiment = client.get(f"{recs}/experiments")
        assert time.monotonic() - started < ANSWER_BOUND_S
        assert experiment.status_code == 200, experiment.text
        assert experiment.json()["groups"] and experiment.json()["live"] == [] and experiment.json()["live_error"]

        proxy.resume()
        # Right after the outage: a normal answer (no X-Fallback), without any restart.
        started = time.monotonic()

        def normal_answer() -> list[str] | None:
            response = client.get(f"{recs}/recs/{user}", params={"k": K})
            assert response.status_code in (200, 503), f"{response.status_code} {response.text}"
            if response.status_code != 200 or response.headers.get("X-Fallback"):
                return None
            return response.json()["item_ids"]

        after, _ = eventually(normal_answer, timeout_s=15, interval_s=0.05)
        recovered_s = time.monotonic() - started

        # The fallback answers are written back by a background flusher (or before the first normal answer).
        def written_back() -> set[str] | None:
            shown_now = _shown_in_redis(stack, user)
            return shown_now if shown_now >= set(fallback) else None

        try:
            shown, _ = eventually(written_back, timeout_s=5)
        except AssertionError:
            shown = _shown_in_redis(stack, user)
        rest = set(ids) - set(before) - set(fallback)
        print(
            f"outage cut {cut} connections; {fallback_answers} fallback answers and {unavailable} 503s "
            f"(slowest {slowest * 1000:.0f} ms), 3 admin/status calls 503; normal again {recovered_s:.1f}s after "
            f"Redis came back; the user saw {len(before)} before, {len(fallback)} in fallback, {len(after)} after; "
            f"{len(shown)} in the shown set"
        )
        assert not set(after) & set(fallback), "an item served in fallback mode was shown again after the outage"
        assert not set(after) & set(before)
        assert set(fallback) <= shown, "the items served during the outage were not written back to Redis"
        assert set(after) <= rest and len(after) == min(K, len(rest))
        response = client.get(f"{recs}/status")
        assert response.status_code == 200


def test_recs_answer_concurrently_while_redis_hangs(
    stack_factory: Callable[..., ServiceStack], proxy_for: Callable[[str], TcpProxy]
) -> None:
    """Redis accepts connections but never answers. Once a fallback answer waits to be written back, concurrent
    requests must not queue one by one behind that write (each waiting for the 1 s Redis timeout)."""
    proxy = proxy_for(REDIS_URL)
    stack = stack_factory().start("pipeline", "event_collector")
    recs = stack.start_service("recommendations", REDIS_URL=proxy.url_for(REDIS_URL)).url
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{recs}/cleanup").status_code == 200
        ids, genres = catalog(CATALOG_SIZE)
        add_items(client, recs, ids, genres)
        assert client.get(f"{recs}/recs/{new_id('user-')}", params={"k": K}).status_code == 200

        proxy.stall()
        first, first_s = _timed_get(client, f"{recs}/recs/{new_id('user-')}?k={K}")
        assert first.status_code == 200 and first.headers.get("X-Fallback"), first.text

    async def concurrent(count: int) -> list[tuple[int, float]]:
        async with httpx.AsyncClient(base_url=recs, timeout=60) as aclient:

            async def one() -> tuple[int, float]:
                started = time.monotonic()
                response = await aclient.get(f"/recs/{new_id('user-')}", params={"k": K})
                return response.status_code, time.monotonic() - started

            return await asyncio.gather(*(one() for _ in range(count)))

    answers = asyncio.run(concurrent(20))
    proxy.resume()
    slowest = max(seconds for _, seconds in answers)
    print(
        f"first answer in the stall {first_s:.2f}s; 20 concurrent: codes {sorted({c for c, _ in answers})}, "
        f"slowest {slowest:.2f}s"
    )
    assert {code for code, _ in answers} <= {200, 503}
    assert slowest < ANSWER_BOUND_S, f"a /recs took {slowest:.2f}s while Redis hung: requests queued"
