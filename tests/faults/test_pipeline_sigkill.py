"""The pipeline is SIGKILLed in the middle of a stream of events: nothing accepted is lost or stored twice."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from tests.faults.events import Sent, assert_stored_exactly_once, bandit_likes, send_events, wait_until_stored
from tests.integration.helpers import add_items, catalog, eventually
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

CALLS = 2000
KILL_AFTER = 500
RESTART_AFTER = 1200


def test_sigkill_mid_stream_stores_every_accepted_event_once(stack: ServiceStack) -> None:
    pipeline = stack.services["pipeline"]
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{stack.recs_url}/cleanup").status_code == 200
        ids, genres = catalog(80)
        add_items(client, stack.recs_url, ids, genres)

    steps: dict[str, int] = {}
    background: list[asyncio.Task[None]] = []

    async def on_progress(sent: Sent) -> None:
        # The kill and the restart run in threads so the 20 senders never pause.
        if sent.accepted >= KILL_AFTER and "killed_at" not in steps:
            steps["killed_at"] = sent.accepted
            background.append(asyncio.create_task(asyncio.to_thread(pipeline.stop, signal.SIGKILL)))
        if sent.accepted >= RESTART_AFTER and "restarted_at" not in steps:
            steps["restarted_at"] = sent.accepted
            await asyncio.gather(*background)  # killed before it is started again
            background.append(asyncio.create_task(asyncio.to_thread(pipeline.start)))

    async def scenario() -> Sent:
        sent = await send_events(stack.collector_url, ids, CALLS, Sent(), concurrency=20, on_progress=on_progress)
        await asyncio.gather(*background)
        return sent

    sent = asyncio.run(scenario())
    assert pipeline.process is not None and pipeline.process.poll() is None, "the pipeline did not come back"
    assert steps.keys() == {"killed_at", "restarted_at"}
    assert sent.statuses == {200: CALLS}, f"the collector refused events while only the pipeline was down: {sent}"

    stored, seconds = wait_until_stored(stack, sent.events, timeout_s=60)
    with httpx.Client(timeout=30) as client:
        status = client.get(f"{stack.pipeline_url}/status").json()
    print(
        f"{CALLS} calls, {sent.accepted} accepted ({sent.events} events, {sent.likes} likes); SIGKILL after "
        f"{steps['killed_at']}, restart after {steps['restarted_at']}; all stored {seconds:.1f}s after the last "
        f"answer: {stored.describe()}; pipeline applied {status['events_applied']}, "
        f"recognised {status['duplicates']} redeliveries since its restart"
    )
    assert_stored_exactly_once(stack, sent, stored)
    assert status["events_applied"] == stored.stream_length
    assert status["messages_stored"] == sent.accepted
    # The bandit snapshot is built from the restarted pipeline's memory (stream replay + new messages).
    try:
        eventually(lambda: bandit_likes(stack) == sent.likes, timeout_s=10)
    except AssertionError:
        pytest.fail(f"the bandit snapshot holds {bandit_likes(stack)} likes, {sent.likes} were accepted")
