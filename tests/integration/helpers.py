"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

import aio_pika
import httpx

from event_collector.publisher import EventPublisher
from recsys_core.settings import Settings
from recsys_io.amqp import dead_letter_queue_name

T = TypeVar("T")


def new_id(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4()}"


def catalog(
    n: int, genres: tuple[str, ...] = ("Drama", "Comedy", "Action", "Horror")
) -> tuple[list[str], list[list[str]]]:
    ids = [new_id("item-") for _ in range(n)]
    return ids, [[genres[i % len(genres)], genres[(i * 7 + 1) % len(genres)]] for i in range(n)]


def add_items(client: httpx.Client, recs_url: str, ids: list[str], genres: list[list[str]]) -> dict[str, int]:
    response = client.post(f"{recs_url}/add_items", json={"item_ids": ids, "genres": genres})
    assert response.status_code == 200, response.text
    return response.json()


def recs(client: httpx.Client, recs_url: str, user_id: str, k: int | None = None) -> httpx.Response:
    params = {"k": k} if k is not None else None
    response = client.get(f"{recs_url}/recs/{user_id}", params=params)
    assert response.status_code == 200, response.text
    return response


def interact(client: httpx.Client, collector_url: str, user_id: str, items: list[str], actions: list[str]) -> None:
    response = client.post(
        f"{collector_url}/interact", json={"user_id": user_id, "item_ids": items, "actions": actions}
    )
    assert response.status_code == 200, response.text


def eventually(check: Callable[[], T | None], timeout_s: float, interval_s: float = 0.05) -> tuple[T, float]:
    """Poll ``check`` until it returns something truthy; (value, seconds it took). Fails after the timeout."""
    started = time.monotonic()
    while True:
        value = check()
        elapsed = time.monotonic() - started
        if value:
            return value, elapsed
        if elapsed > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)


async def delete_events_queue(channel: aio_pika.abc.AbstractChannel, queue_name: str) -> None:
    """A test's own events queue and its dead-letter queue."""
    for name in (queue_name, dead_letter_queue_name(queue_name)):
        await channel.queue_delete(name)


async def a_redis_call_that_swallows_its_cancellation(seconds: float) -> None:
    """Stands for a Redis command during which a cancellation is swallowed inside redis-py (seen in the collector's
    generation watch): the caller goes on as if nobody had cancelled it. Loops that stop only when cancelled then
    never stop."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def connected_publisher(
    queue_name: str | None = None, timeout_s: float = 5.0, max_in_flight: int = 4
) -> AsyncIterator[tuple[EventPublisher, str, aio_pika.abc.AbstractChannel]]:
    """A collector's publisher to a queue of the test's own (a new name unless given), once connected, and a
    channel to read the queue; both queues are deleted afterwards."""
    settings = Settings()
    queue_name = queue_name or f"test-publisher-{uuid.uuid4().hex[:10]}"
    publisher = EventPublisher(settings.amqp_url, queue_name, timeout_s=timeout_s, max_in_flight=max_in_flight)
    publisher.start()
    for _ in range(100):
        if publisher.connected:
            break
        await asyncio.sleep(0.05)
    connection = await aio_pika.connect(settings.amqp_url)
    channel = await connection.channel()
    try:
        yield publisher, queue_name, channel
    finally:
        try:
            await publisher.close()
        finally:  # the queues go even when the publisher under test fails to close
            await delete_events_queue(channel, queue_name)
            await connection.close()


class FailingOnCall(Generic[T]):
    """``real``, except that its ``number``-th call raises ``error`` (a fault injected into one call); ``calls``
    counts every call."""

    def __init__(self, real: Callable[..., Awaitable[T]], number: int, error: Exception) -> None:
        self.real, self.number, self.error = real, number, error
        self.calls = 0

    async def __call__(self, *args: object, **kwargs: object) -> T:
        self.calls += 1
        if self.calls == self.number:
            raise self.error
        return await self.real(*args, **kwargs)
