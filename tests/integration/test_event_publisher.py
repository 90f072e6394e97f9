"""The collector's publisher against the real RabbitMQ: many requests share a few confirming channels.

Every confirmed publish must be in the queue exactly once, and a message no queue took must fail (the route
answers 503 then), even while hundreds of other publishes are in flight on the same channels.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from event_collector.publisher import BrokerUnavailable, EventPublisher
from recsys_core.schemas import EventMessage
from recsys_core.settings import Settings
from recsys_io.amqp import dead_letter_queue_name

pytestmark = pytest.mark.integration


def _event(n: int) -> EventMessage:
    return EventMessage(
        generation=1, user_id=f"user-{n}", item_ids=[f"item-{n}"], actions=["like"], timestamp=1.0, received_at=1.0
    )


@pytest.fixture
async def publisher_and_queue() -> AsyncIterator[tuple[EventPublisher, str, aio_pika.abc.AbstractChannel]]:
    settings = Settings()
    queue_name = f"test-publisher-{uuid.uuid4().hex[:10]}"
    publisher = EventPublisher(settings.amqp_url, queue_name, timeout_s=5.0)
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
        await publisher.close()
        for name in (queue_name, dead_letter_queue_name(queue_name)):
            await channel.queue_delete(name)
        await connection.close()


async def test_concurrent_publishes_are_each_confirmed_and_stored_once(
    publisher_and_queue: tuple[EventPublisher, str, aio_pika.abc.AbstractChannel],
) -> None:
    publisher, queue_name, channel = publisher_and_queue
    events = [_event(n) for n in range(600)]
    await asyncio.gather(*(publisher.publish(event) for event in events))
    queue = await channel.declare_queue(queue_name, passive=True)
    received: list[str] = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        received.append(json.loads(message.body)["message_id"])
    print(f"{len(events)} confirmed, {len(received)} in the queue, {len(set(received))} distinct")
    assert sorted(received) == sorted(event.message_id for event in events)


async def test_a_message_no_queue_takes_is_refused_while_others_are_in_flight(
    publisher_and_queue: tuple[EventPublisher, str, aio_pika.abc.AbstractChannel],
) -> None:
    publisher, queue_name, channel = publisher_and_queue
    await asyncio.gather(*(publisher.publish(_event(n)) for n in range(50)))
    await channel.queue_delete(queue_name)  # the routing key now reaches no queue: the broker returns it
    results = await asyncio.gather(*(publisher.publish(_event(n)) for n in range(50)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, BrokerUnavailable)]
    print(f"{len(refused)} of {len(results)} refused after the queue was deleted")
    assert len(refused) == len(results)
