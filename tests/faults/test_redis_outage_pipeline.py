"""Redis unreachable from the pipeline only: the collector keeps accepting, and every event is stored once after."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from tests.faults.events import Sent, assert_stored_exactly_once, bandit_likes, send_events, wait_until_stored
from tests.integration.helpers import add_items, catalog, eventually
from tests.support.proxy import TcpProxy
from tests.support.stack import REDIS_URL, ServiceStack

pytestmark = pytest.mark.integration

LEASE_S = 2.0


def test_pipeline_keeps_events_while_redis_is_down(
    stack_factory: Callable[..., ServiceStack], proxy_for: Callable[[str], TcpProxy]
) -> None:
    proxy = proxy_for(REDIS_URL)
    stack = stack_factory().start("recommendations", "event_collector")
    # A lease shorter than the outage: it lapses in Redis meanwhile, and nobody else takes it.
    stack.start_service("pipeline", REDIS_URL=proxy.url_for(REDIS_URL), PIPELINE_LEASE_S=str(LEASE_S))
    sent = Sent()
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{stack.recs_url}/cleanup").status_code == 200
        ids, genres = catalog(50)
        add_items(client, stack.recs_url, ids, genres)
        asyncio.run(send_events(stack.collector_url, ids, 100, sent, concurrency=10))
        before, _ = wait_until_stored(stack, sent.events, timeout_s=20)
        assert before.stream_length == sent.events

        cut = proxy.pause()
        asyncio.run(send_events(stack.collector_url, ids, 400, sent, concurrency=20, first=100))
        assert sent.statuses == {200: 500}, f"the collector refused events while only the pipeline lost Redis: {sent}"
        time.sleep(LEASE_S + 1.0)  # the pipeline holds the batch, retrying, and acks nothing
        during = int(stack.redis.xlen(stack.run_key("events")))
        assert during == before.stream_length, "events were stored while the pipeline could not reach Redis"
        status = client.get(f"{stack.pipeline_url}/status")
        assert status.status_code == 200  # its own HTTP face answers from memory

        proxy.resume()
        resumed = time.monotonic()
        stored, _ = wait_until_stored(stack, sent.events, timeout_s=30)
        seconds = time.monotonic() - resumed - 1.0
        pipeline = client.get(f"{stack.pipeline_url}/status").json()
    print(
        f"{sent.accepted} accepted ({sent.events} events), {before.stream_length} stored before the outage "
        f"(cut {cut} connections), {during} during it; all stored {seconds:.1f}s after Redis came back: "
        f"{stored.describe()}; pipeline applied {pipeline['events_applied']}"
    )
    assert_stored_exactly_once(stack, sent, stored)
    assert pipeline["events_applied"] == stored.stream_length
    assert pipeline["messages_stored"] == sent.accepted
    # It took its lapsed lease back (same epoch) and went on with the state it had: no second term, no reload.
    assert pipeline["role"] == "leader" and pipeline["lease_terms"] == 1
    try:
        eventually(lambda: bandit_likes(stack) == sent.likes, timeout_s=10)
    except AssertionError:
        pytest.fail(f"the bandit snapshot holds {bandit_likes(stack)} likes, {sent.likes} were accepted")
