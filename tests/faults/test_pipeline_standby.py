"""Two pipelines of one deployment: one leads, the other stands by and takes over without losing an event."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import httpx
import pytest

from devstack.stack import ServiceProcess, free_port
from tests.faults.events import Sent, assert_stored_exactly_once, bandit_likes, send_events, wait_until_stored
from tests.integration.helpers import add_items, catalog, eventually
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

LEASE_S = 6.0
CALLS = 1200
KILL_AFTER = 300


def _status(client: httpx.Client, url: str) -> dict[str, object]:
    return client.get(f"{url}/status").json()


def _wait_leader(client: httpx.Client, url: str, timeout_s: float) -> float:
    """Seconds until the pipeline at ``url`` reports itself the leader."""
    started = time.monotonic()
    eventually(lambda: _status(client, url)["role"] == "leader", timeout_s)
    return time.monotonic() - started


def _two_pipelines(stack_factory: Callable[..., ServiceStack]) -> tuple[ServiceStack, ServiceProcess, ServiceProcess]:
    """A stack whose pipeline leads, and a second pipeline process of the same deployment (the standby)."""
    stack = stack_factory(PIPELINE_LEASE_S=str(LEASE_S)).start()
    second = stack.start_service("pipeline", port=free_port(), label="pipeline-b")
    return stack, stack.services["pipeline"], second


def _fresh_run(stack: ServiceStack, items: int) -> list[str]:
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{stack.recs_url}/cleanup").status_code == 200
        ids, genres = catalog(items)
        add_items(client, stack.recs_url, ids, genres)
    return ids


def _stream_with_fault(stack: ServiceStack, ids: list[str], fault: Callable[[], None]) -> Sent:
    """``CALLS`` /interact calls from 20 senders; ``fault`` runs in a thread once ``KILL_AFTER`` were accepted, so
    the senders never pause. Every call must be accepted: the collector needs only RabbitMQ."""
    background: list[asyncio.Task[None]] = []

    async def on_progress(sent: Sent) -> None:
        if sent.accepted >= KILL_AFTER and not background:
            background.append(asyncio.create_task(asyncio.to_thread(fault)))

    async def scenario() -> Sent:
        sent = await send_events(stack.collector_url, ids, CALLS, Sent(), concurrency=20, on_progress=on_progress)
        await asyncio.gather(*background)
        return sent

    sent = asyncio.run(scenario())
    assert background and sent.statuses == {200: CALLS}
    return sent


def test_a_standby_takes_over_from_a_killed_leader_and_misses_no_event(
    stack_factory: Callable[..., ServiceStack],
) -> None:
    stack, first, second = _two_pipelines(stack_factory)
    with httpx.Client(timeout=30) as client:
        leader, standby = _status(client, first.url), _status(client, second.url)
        assert leader["role"] == "leader" and standby["role"] == "standby"
        assert standby["leader"] == leader["lease_token"]
        # A standby holds no run: it is not ready, and it refuses to retrain.
        assert client.get(f"{second.url}/ready").status_code == 503
        refused = client.post(f"{second.url}/retrain")
        assert refused.status_code == 409 and "standby" in refused.json()["detail"]
    ids = _fresh_run(stack, 80)

    killed: list[float] = []

    def kill() -> None:
        killed.append(time.monotonic())
        first.stop(signal.SIGKILL)

    sent = _stream_with_fault(stack, ids, kill)
    with httpx.Client(timeout=30) as client:
        took_over_s = time.monotonic() - killed[0] + _wait_leader(client, second.url, LEASE_S * 3)
        stored, seconds = wait_until_stored(stack, sent.events, timeout_s=60)
        status = _status(client, second.url)
    print(
        f"{CALLS} calls, {sent.accepted} accepted ({sent.events} events); leader SIGKILLed after {KILL_AFTER}; "
        f"the standby leads {took_over_s:.1f}s after the kill (lease {LEASE_S:.0f}s); all stored {seconds:.1f}s "
        f"after the last answer: {stored.describe()}; the new leader applied {status['events_applied']}"
    )
    assert_stored_exactly_once(stack, sent, stored)
    # The new leader reloaded the run from Redis when it took over, then consumed the rest: its memory has it all.
    assert status["events_applied"] == stored.stream_length
    assert status["messages_stored"] == sent.accepted
    eventually(lambda: bandit_likes(stack) == sent.likes, timeout_s=10)


def test_a_restarted_pipeline_waits_as_standby_and_a_clean_stop_hands_over_at_once(
    stack_factory: Callable[..., ServiceStack],
) -> None:
    stack, first, second = _two_pipelines(stack_factory)
    with httpx.Client(timeout=30) as client:
        assert _status(client, second.url)["role"] == "standby"
        first.stop(signal.SIGTERM)
        # A clean stop releases the lease: the standby leads at its next look (a fifth of the TTL), not after the
        # TTL. The bound is the TTL itself, which the takeover would need if the lease were not released.
        handed_over_s = _wait_leader(client, second.url, LEASE_S)
        first.start()  # the old leader comes back: it must wait while the other one leads
        time.sleep(LEASE_S / 5 * 2)
        back = _status(client, first.url)
        leader = _status(client, second.url)
        print(f"clean stop: the standby leads after {handed_over_s:.2f}s (lease {LEASE_S:.0f}s); restarted: {back}")
        assert handed_over_s < LEASE_S * 0.8
        assert back["role"] == "standby" and back["leader"] == leader["lease_token"]
        assert leader["role"] == "leader" and leader["lease_terms"] == 1

        # The leader serves the run: events sent now reach it (and only it applies them).
        ids = _fresh_run(stack, 20)
        body = {"user_id": "u-1", "item_ids": ids[:3], "actions": ["like", "like", "dislike"]}
        assert client.post(f"{stack.collector_url}/interact", json=body).status_code == 200
        eventually(lambda: _status(client, second.url).get("events_applied") == 3, 10)
        assert _status(client, first.url)["role"] == "standby"


def test_a_leader_paused_past_its_lease_steps_down_when_it_wakes_and_stores_nothing(
    stack_factory: Callable[..., ServiceStack],
) -> None:
    """SIGSTOP the leader mid-stream until the standby has taken over, then SIGCONT it: the batch it held is
    refused by the store's fence and goes back to the queue, it publishes nothing, and it becomes the standby."""
    stack, first, second = _two_pipelines(stack_factory)
    ids = _fresh_run(stack, 80)
    leader_process = first.process
    assert leader_process is not None
    steps: dict[str, float] = {}

    def pause_until_taken_over() -> None:
        leader_process.send_signal(signal.SIGSTOP)
        with httpx.Client(timeout=30) as client:
            steps["took_over_s"] = _wait_leader(client, second.url, LEASE_S * 3)
        leader_process.send_signal(signal.SIGCONT)

    sent = _stream_with_fault(stack, ids, pause_until_taken_over)
    stored, seconds = wait_until_stored(stack, sent.events, timeout_s=60)
    with httpx.Client(timeout=30) as client:
        eventually(lambda: _status(client, first.url).get("leader") == _status(client, second.url)["lease_token"], 10)
        woken, leader = _status(client, first.url), _status(client, second.url)
    print(
        f"{CALLS} calls, {sent.accepted} accepted; leader SIGSTOPped after {KILL_AFTER}, the standby led "
        f"{steps['took_over_s']:.1f}s later, then SIGCONT; all stored {seconds:.1f}s after the last answer: "
        f"{stored.describe()}; the woken one: {woken}"
    )
    assert_stored_exactly_once(stack, sent, stored)
    assert woken["role"] == "standby" and woken["leader"] == leader["lease_token"]
    assert leader["role"] == "leader"
    assert leader["events_applied"] == stored.stream_length and leader["messages_stored"] == sent.accepted
    # Only the new leader publishes: the snapshot has every like, and the woken process does not overwrite it.
    eventually(lambda: bandit_likes(stack) == sent.likes, timeout_s=10)
    time.sleep(LEASE_S / 5 * 2)
    assert bandit_likes(stack) == sent.likes


def test_the_standby_gets_what_a_still_paused_leader_had_been_delivered(
    stack_factory: Callable[..., ServiceStack],
) -> None:
    """SIGSTOP the leader mid-stream and leave it stopped: the broker kept delivering to it (its socket still
    accepts bytes) until the prefetch was full, and those messages came back to the queue only when the broker's
    60 s heartbeat check gave up (500+ accepted events stored 25-100 s late in a chaos run). With a heartbeat of
    half the lease, the standby stores every accepted event while the old leader is still stopped."""
    stack, first, second = _two_pipelines(stack_factory)
    ids = _fresh_run(stack, 80)
    leader_process = first.process
    assert leader_process is not None
    paused_at: list[float] = []

    def pause() -> None:
        paused_at.append(time.monotonic())
        leader_process.send_signal(signal.SIGSTOP)

    try:
        sent = _stream_with_fault(stack, ids, pause)
        stored, seconds = wait_until_stored(stack, sent.events, timeout_s=LEASE_S * 6)
        still_paused = leader_process.poll() is None
        with httpx.Client(timeout=30) as client:
            leader = _status(client, second.url)
    finally:
        leader_process.send_signal(signal.SIGCONT)
    print(
        f"{CALLS} calls, {sent.accepted} accepted; leader SIGSTOPped after {KILL_AFTER} and left stopped; all "
        f"stored {time.monotonic() - paused_at[0]:.1f}s after the pause ({seconds:.1f}s after the last answer): "
        f"{stored.describe()}"
    )
    assert still_paused and leader["role"] == "leader"
    assert_stored_exactly_once(stack, sent, stored)
