"""Guarantees that must hold across processes: no repeats across replicas, no lost or doubled events."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.helpers import add_items, catalog, eventually, new_id
from tests.support.replies import stream
from tests.support.stack import ServiceStack, free_port

pytestmark = pytest.mark.integration


def test_two_replicas_never_repeat_an_item(stack: ServiceStack) -> None:
    second = stack.start_service("recommendations", port=free_port(), label="recs-2")
    replicas = [stack.recs_url, second.url]
    with httpx.Client(timeout=30) as client:
        client.get(f"{stack.recs_url}/cleanup")
        ids, genres = catalog(300)
        add_items(client, stack.recs_url, ids, genres)
        user = new_id()
        seen: list[str] = []
        for call in range(12):  # alternating replicas, one call at a time
            seen += client.get(f"{replicas[call % 2]}/recs/{user}").json()["item_ids"]
        assert len(seen) == 120 and len(set(seen)) == 120

    async def hammer() -> list[list[str]]:
        # Both replicas at once, many concurrent calls for the same user: the atomic claim must hold.
        async with httpx.AsyncClient(timeout=30) as aclient:
            calls = [aclient.get(f"{replicas[i % 2]}/recs/{user}") for i in range(20)]
            return [r.json()["item_ids"] for r in await asyncio.gather(*calls)]

    answers = asyncio.run(hammer())
    concurrent = [i for answer in answers for i in answer]
    assert len(concurrent) == len(set(concurrent)), "two concurrent answers shared an item"
    assert not set(concurrent) & set(seen)
    assert len(set(seen) | set(concurrent)) == 300  # 120 + 18 full answers; the rest run dry
    assert set(concurrent) <= set(ids)


def test_pipeline_down_then_up_stores_every_event_once(stack: ServiceStack) -> None:
    with httpx.Client(timeout=30) as client:
        client.get(f"{stack.recs_url}/cleanup")
        ids, genres = catalog(50)
        add_items(client, stack.recs_url, ids, genres)
        stack.services["pipeline"].stop()
        accepted = 0
        for n in range(500):
            response = client.post(
                f"{stack.collector_url}/interact",
                json={
                    "user_id": f"user-{n % 37}",
                    "item_ids": [ids[n % 50]],
                    "actions": ["like" if n % 3 else "dislike"],
                },
            )
            accepted += response.status_code == 200
        assert accepted == 500
        stack.services["pipeline"].start()

        def all_stored() -> int | None:
            status = client.get(f"{stack.recs_url}/status").json()
            return status if status["events_stored"] >= 500 else None

        status, seconds = eventually(all_stored, timeout_s=20)
        time.sleep(1.0)  # a redelivery, if any, would show up as a second copy by now
        status = client.get(f"{stack.recs_url}/status").json()
        print(f"500 accepted, {status['events_stored']} stored after {seconds:.1f}s, counters {status['counters']}")
        assert status["events_stored"] == 500
        assert status["counters"]["messages"] == 500
        messages = {fields[b"msg"] for _, fields in stream(stack.redis.xrange(stack.run_key("events")))}
        assert len(messages) == 500, "some message was stored twice or not at all"
        likes = sum(int(v) for v in stack.redis.hvals(stack.run_key("stats:likes")))
        dislikes = sum(int(v) for v in stack.redis.hvals(stack.run_key("stats:dislikes")))
        assert (likes, dislikes) == (333, 167)
        pipeline = client.get(f"{stack.pipeline_url}/status").json()
        assert pipeline["events_applied"] == 500


def test_an_event_sent_right_after_cleanup_belongs_to_the_new_run(
    stack_factory: Callable[..., ServiceStack],
) -> None:
    """The collector keeps the generation in memory; /cleanup returns only once it stamps the new one.

    With the slowest poll allowed (0.5 s), a /cleanup that did not wait would leave the collector stamping the old
    run for up to half a second, and the event below would be dropped as stale."""
    stack = stack_factory(GENERATION_POLL_INTERVAL_S="0.5").start()
    with httpx.Client(timeout=30) as client:
        for attempt in range(5):
            cleanup = client.get(f"{stack.recs_url}/cleanup").json()
            assert cleanup["collectors_switched"] is True
            ids, genres = catalog(12)
            event = {"user_id": new_id(), "item_ids": ids[:1], "actions": ["like"]}
            assert client.post(f"{stack.collector_url}/interact", json=event).status_code == 200
            add_items(client, stack.recs_url, ids, genres)

            def stored() -> dict[str, Any] | None:
                status = client.get(f"{stack.recs_url}/status").json()
                return status if status["events_stored"] >= 1 else None

            status, _ = eventually(stored, timeout_s=10)
            print(f"attempt {attempt}: generation {cleanup['generation']}, stored {status['events_stored']}")
            assert status["generation"] == cleanup["generation"]
            assert status["events_stored"] == 1


def test_cleanup_during_traffic_leaves_a_consistent_empty_system(stack: ServiceStack) -> None:
    with httpx.Client(timeout=30) as client:
        client.get(f"{stack.recs_url}/cleanup")
        old_ids, old_genres = catalog(200)
        add_items(client, stack.recs_url, old_ids, old_genres)

    async def traffic(stop: asyncio.Event, cleanup_started: list[float]) -> int:
        sent = 0
        async with httpx.AsyncClient(timeout=30) as aclient:
            while not stop.is_set():
                user = f"user-{sent % 20}"
                answer = await aclient.get(f"{stack.recs_url}/recs/{user}")
                items = answer.json()["item_ids"] or old_ids[:2]
                await aclient.post(
                    f"{stack.collector_url}/interact",
                    json={"user_id": user, "item_ids": items[:2], "actions": ["like", "dislike"]},
                )
                sent += 1
        return sent

    async def scenario() -> tuple[float, int]:
        stop = asyncio.Event()
        started: list[float] = []
        workers = [asyncio.create_task(traffic(stop, started)) for _ in range(8)]
        await asyncio.sleep(1.5)
        async with httpx.AsyncClient(timeout=30) as aclient:
            cleanup_at = time.time()
            response = await aclient.get(f"{stack.recs_url}/cleanup")
            assert response.status_code == 200
            assert response.json()["pipeline_acknowledged"] is True
            assert response.json()["collectors_switched"] is True
        stop.set()
        return cleanup_at, sum(await asyncio.gather(*workers))

    cleanup_at, calls = asyncio.run(scenario())
    assert calls > 20
    with httpx.Client(timeout=30) as client:
        time.sleep(1.0)
        status = client.get(f"{stack.recs_url}/status").json()
        assert status["catalog_size"] == 0
        assert client.get(f"{stack.recs_url}/recs/{new_id()}").json() == {"item_ids": []}
        # No key of an older generation survives.
        generation = status["generation"]
        run_key = re.compile(rf"^{re.escape(stack.prefix)}:g(\d+):")
        leftovers = [
            key
            for key in stack.redis.scan_iter(match=f"{stack.prefix}:g*")
            if (match := run_key.match(key.decode())) and int(match.group(1)) != generation
        ]
        assert leftovers == []
        # Events stored in the new run were all received after the cleanup began: nothing old leaked in.
        for _, fields in stream(stack.redis.xrange(stack.run_key("events"))):
            assert float(fields[b"ts"]) >= cleanup_at - 0.5
        # The pipeline's memory matches what Redis holds for the new run.
        pipeline = client.get(f"{stack.pipeline_url}/status").json()
        assert pipeline["generation"] == generation
        assert pipeline["events_applied"] == status["events_stored"]
        # And it is usable again right away.
        ids, genres = catalog(15)
        add_items(client, stack.recs_url, ids, genres)
        assert len(client.get(f"{stack.recs_url}/recs/{new_id()}").json()["item_ids"]) == 10
