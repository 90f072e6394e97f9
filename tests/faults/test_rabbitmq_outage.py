"""RabbitMQ unreachable from the collector: quick 503s, never a 200 for an unconfirmed event, and recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aio_pika
import httpx
import pytest

from tests.faults.events import Sent, assert_stored_exactly_once, event_body, send_events, wait_until_stored
from tests.integration.helpers import add_items, catalog, eventually
from tests.support.proxy import TcpProxy
from tests.support.stack import AMQP_URL, ServiceStack, free_port

pytestmark = pytest.mark.integration

# A functional bound on a hang (the publish timeout is 3 s), not a speed benchmark.
REFUSAL_BOUND_S = 2.0
RECOVERY_TIMEOUT_S = 30.0


def _refused_quickly(client: httpx.Client, url: str, body: dict[str, object]) -> httpx.Response:
    started = time.monotonic()
    response = client.post(f"{url}/interact", json=body)
    seconds = time.monotonic() - started
    assert response.status_code == 503, f"{response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/json")
    assert "RabbitMQ" in response.json()["detail"]
    assert seconds < REFUSAL_BOUND_S, f"a refusal took {seconds:.2f}s"
    return response


def _first_success(client: httpx.Client, url: str, item_ids: list[str], sent: Sent) -> float:
    """Retry one /interact until it is accepted (as a client honouring Retry-After would); seconds taken."""
    started = time.monotonic()

    def accepted() -> bool:
        body = event_body(10_000 + sum(sent.statuses.values()), item_ids)
        began = time.monotonic()
        response = client.post(f"{url}/interact", json=body)
        sent.record(response, body, time.monotonic() - began)
        assert response.status_code in (200, 503), response.text
        return response.status_code == 200

    eventually(accepted, timeout_s=RECOVERY_TIMEOUT_S, interval_s=0.2)
    return time.monotonic() - started


def test_collector_refuses_quickly_while_rabbitmq_is_down_and_recovers(
    stack_factory: Callable[..., ServiceStack], proxy_for: Callable[[str], TcpProxy]
) -> None:
    proxy = proxy_for(AMQP_URL)
    stack = stack_factory().start("pipeline", "recommendations")
    proxy.pause()  # down from the start: the collector has never been connected
    collector = stack.start_service("event_collector", AMQP_URL=proxy.url_for(AMQP_URL)).url
    sent = Sent()
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{stack.recs_url}/cleanup").status_code == 200
        ids, genres = catalog(40)
        add_items(client, stack.recs_url, ids, genres)

        never_connected = [_refused_quickly(client, collector, event_body(n, ids)) for n in range(5)]
        ready = client.get(f"{collector}/ready")
        assert ready.status_code == 503 and "RabbitMQ" in ready.json()["detail"]

        proxy.resume()
        first_connect_s = _first_success(client, collector, ids, sent)
        assert client.get(f"{collector}/ready").status_code == 200
        asyncio.run(send_events(collector, ids, 100, sent, concurrency=10, first=0))
        assert sent.statuses.get(200) == sent.accepted >= 101

        # An outage after a working connection: every call is a quick 503 (no 200 can be confirmed).
        cut = proxy.pause()
        during = [_refused_quickly(client, collector, event_body(n, ids)) for n in range(1000, 1020)]
        assert client.get(f"{collector}/ready").status_code == 503
        outage = asyncio.run(send_events(collector, ids, 100, Sent(), concurrency=10, first=2000))
        assert outage.statuses == {503: 100}, f"answers while RabbitMQ was unreachable: {outage.statuses}"
        assert outage.slowest_s < REFUSAL_BOUND_S, f"the slowest refusal took {outage.slowest_s:.2f}s"

        proxy.resume()
        reconnect_s = _first_success(client, collector, ids, sent)
        after = asyncio.run(send_events(collector, ids, 200, Sent(), concurrency=10, first=3000))
        assert after.statuses == {200: 200}, f"answers after the recovery: {after.statuses}"
    total = Sent(
        statuses={},
        message_ids=sent.message_ids | after.message_ids,
        events=sent.events + after.events,
        likes=sent.likes + after.likes,
    )
    stored, seconds = wait_until_stored(stack, total.events, timeout_s=30)
    print(
        f"never connected: {len(never_connected)} x 503; first connection {first_connect_s:.1f}s after the "
        f"broker appeared; outage cut {cut} connections: {len(during) + 100} x 503 (slowest "
        f"{outage.slowest_s * 1000:.0f} ms); reconnected {reconnect_s:.1f}s after it was back; "
        f"{total.accepted} accepted in all, stored within {seconds:.1f}s: {stored.describe()}"
    )
    assert_stored_exactly_once(stack, total, stored)


def test_collector_pointed_at_a_closed_port(stack_factory: Callable[..., ServiceStack]) -> None:
    stack = stack_factory()
    closed = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    collector = stack.start_service("event_collector", AMQP_URL=closed).url
    with httpx.Client(timeout=30) as client:
        refusals = [_refused_quickly(client, collector, event_body(n, ["item-1", "item-2"])) for n in range(10)]
        ready = client.get(f"{collector}/ready")
        assert ready.status_code == 503
        assert ready.json()["detail"]
        assert client.get(f"{collector}/healthcheck").status_code == 200  # alive, just not ready
    print(f"closed port: {len(refusals)} x 503 with a JSON detail, /ready 503, /healthcheck 200")


def test_a_stalled_broker_is_a_503_within_twice_the_publish_timeout(
    stack_factory: Callable[..., ServiceStack], proxy_for: Callable[[str], TcpProxy]
) -> None:
    """The broker takes the connection but answers nothing (a stall, not a refusal): no request hangs. Each waits
    at most the publish timeout for its message to leave and, once it left, the timeout again for its confirm
    (a 503 for a message the broker then stores would make a retry count twice)."""
    timeout_s = 1.0
    proxy = proxy_for(AMQP_URL)
    stack = stack_factory()
    collector = stack.start_service(
        "event_collector", AMQP_URL=proxy.url_for(AMQP_URL), AMQP_PUBLISH_TIMEOUT_S=str(timeout_s)
    ).url
    ids = [f"item-{n}" for n in range(20)]
    with httpx.Client(timeout=30) as client:
        eventually(lambda: client.get(f"{collector}/ready").status_code == 200, timeout_s=RECOVERY_TIMEOUT_S)
    before = asyncio.run(send_events(collector, ids, 20, Sent(), concurrency=10, first=0))
    assert before.statuses == {200: 20}, before.statuses
    proxy.stall()
    # 40 callers against at most 4 messages in flight: most events wait for a slot before their message leaves.
    stalled = asyncio.run(send_events(collector, ids, 120, Sent(), concurrency=40, first=1000))
    print(f"stalled broker: {stalled.statuses}, slowest answer {stalled.slowest_s:.2f} s (timeout {timeout_s} s)")
    assert stalled.statuses == {503: 120}, f"answers while the broker stalled: {stalled.statuses}"
    assert stalled.slowest_s < 2 * timeout_s + 1.0, f"the slowest 503 took {stalled.slowest_s:.2f} s"


def test_an_events_queue_deleted_behind_the_collector_is_declared_again(
    stack_factory: Callable[..., ServiceStack],
) -> None:
    """A broker recreated without its data, or an operator's delete: the next event declares the queue again
    and is accepted (a message returned unrouted was stored nowhere, so sending it again duplicates nothing)."""
    stack = stack_factory()
    collector = stack.start_service("event_collector").url
    ids = ["item-1", "item-2"]
    with httpx.Client(timeout=30) as client:
        eventually(lambda: client.get(f"{collector}/ready").status_code == 200, timeout_s=RECOVERY_TIMEOUT_S)
        assert client.post(f"{collector}/interact", json=event_body(0, ids)).status_code == 200

        async def delete_queue() -> None:
            connection = await aio_pika.connect(AMQP_URL)
            async with connection:
                await (await connection.channel()).queue_delete(stack.queue)

        asyncio.run(delete_queue())
        answers = [client.post(f"{collector}/interact", json=event_body(n, ids)) for n in range(1, 4)]
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]

    async def depth() -> int:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            queue = await (await connection.channel()).declare_queue(stack.queue, passive=True)
            return int(queue.declaration_result.message_count or 0)

    assert asyncio.run(depth()) == 3, "the three events after the delete, each once"
