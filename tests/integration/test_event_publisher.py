"""The collector's publisher against the real RabbitMQ: many requests share a few confirming channels.

Every confirmed publish must be in the queue exactly once, and a message no queue took must fail (the route
answers 503 then), even while hundreds of other publishes are in flight on the same channels. Events that wait
for a confirm leave together in one message (group commit), which the pipeline's parser reads back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractMessage, PublishResultType

from event_collector.publisher import (
    MAX_EVENTS_PER_MESSAGE,
    MAX_INTERACTIONS_PER_MESSAGE,
    BrokerUnavailable,
    EventPublisher,
)
from recsys_core.schemas import EVENT_BATCH_TYPE, EventMessage
from recsys_io.amqp import parse_events
from tests.integration.helpers import connected_publisher

pytestmark = pytest.mark.integration


def _event(n: int) -> EventMessage:
    return EventMessage(
        generation=1, user_id=f"user-{n}", item_ids=[f"item-{n}"], actions=["like"], timestamp=1.0, received_at=1.0
    )


@pytest.fixture
async def publisher_and_queue() -> AsyncIterator[tuple[EventPublisher, str, aio_pika.abc.AbstractChannel]]:
    async with connected_publisher() as opened:
        yield opened


async def test_concurrent_publishes_are_each_confirmed_and_stored_once(
    publisher_and_queue: tuple[EventPublisher, str, aio_pika.abc.AbstractChannel],
) -> None:
    publisher, queue_name, channel = publisher_and_queue
    events = [_event(n) for n in range(600)]
    await asyncio.gather(*(publisher.publish(event) for event in events))
    queue = await channel.declare_queue(queue_name, passive=True)
    received: list[EventMessage] = []
    sizes: list[int] = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        held = parse_events(message)
        received += held
        sizes.append(len(held))
    messages = len(sizes)
    ids = [event.message_id for event in received]
    print(f"{len(events)} confirmed, {len(received)} in the queue in {messages} messages of {sizes} events")
    assert sorted(ids) == sorted(event.message_id for event in events)
    assert {event.message_id: event for event in received} == {event.message_id: event for event in events}
    # Group commit: the events that arrived while the first messages awaited their confirms left together.
    assert messages < len(events) / 10
    assert max(sizes) == MAX_EVENTS_PER_MESSAGE  # a burst is cut into messages of bounded size
    assert (publisher.messages_published, publisher.events_published) == (messages, len(events))


async def test_a_lone_event_is_sent_at_once_in_the_single_event_format(
    publisher_and_queue: tuple[EventPublisher, str, aio_pika.abc.AbstractChannel],
) -> None:
    publisher, queue_name, channel = publisher_and_queue
    event = _event(1)
    await publisher.publish(event)
    queue = await channel.declare_queue(queue_name, passive=True)
    message = await queue.get(no_ack=True)
    assert message.type != EVENT_BATCH_TYPE
    assert message.message_id == event.message_id
    assert EventMessage.model_validate_json(message.body) == event  # what a pipeline before batches reads
    assert await queue.get(no_ack=True, fail=False) is None


async def test_an_event_whose_request_gave_up_while_waiting_is_never_sent() -> None:
    """A request answered 503 (its wait timed out) must not have its event published afterwards."""
    async with connected_publisher(timeout_s=0.3, max_in_flight=1) as (publisher, queue_name, channel):
        release = asyncio.Event()
        real_exchange = publisher._channels[0].default_exchange

        class HeldExchange:
            """The first message waits for ``release`` (a broker slow to confirm), longer than the timeout."""

            async def publish(
                self, message: AbstractMessage, routing_key: str, *, mandatory: bool = True
            ) -> PublishResultType | None:
                await release.wait()
                return await real_exchange.publish(message, routing_key, mandatory=mandatory)

        class HeldChannel:
            default_exchange = HeldExchange()

        publisher._channels = [HeldChannel()]  # type: ignore[list-item]  # a stand-in: only default_exchange
        held, waiting = _event(1), _event(2)
        results = await asyncio.gather(publisher.publish(held), publisher.publish(waiting), return_exceptions=True)
        assert all(isinstance(result, BrokerUnavailable) for result in results), results
        release.set()
        later = _event(3)
        await publisher.publish(later)
        queue = await channel.declare_queue(queue_name, passive=True)
        received = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            received += [event.message_id for event in parse_events(message)]
        print(f"in the queue: {len(received)} event(s)")
        assert received == [later.message_id]


def _slow_exchange(publisher: EventPublisher, delay_s: float) -> None:
    """Every message reaches the broker ``delay_s`` late (a broker slow to confirm), on one channel."""
    real_exchange = publisher._channels[0].default_exchange

    class SlowExchange:
        async def publish(
            self, message: AbstractMessage, routing_key: str, *, mandatory: bool = True
        ) -> PublishResultType | None:
            await asyncio.sleep(delay_s)
            return await real_exchange.publish(message, routing_key, mandatory=mandatory)

    class SlowChannel:
        default_exchange = SlowExchange()

    publisher._channels = [SlowChannel()]  # type: ignore[list-item]  # a stand-in: only default_exchange


async def test_a_sent_event_is_answered_by_its_confirm_even_after_the_requests_own_deadline() -> None:
    """No 503 for an event the broker stores: the client would retry it and it would count twice."""
    async with connected_publisher(timeout_s=0.6, max_in_flight=1) as (publisher, queue_name, channel):
        _slow_exchange(publisher, 0.4)
        first, second = _event(1), _event(2)
        # ``second`` waits for the first confirm (one message in flight), leaves at ~0.4 s and is confirmed at
        # ~0.8 s: after its request's own 0.6 s, within its message's (sent at 0.4 s, timing out at 1.0 s).
        results = await asyncio.gather(publisher.publish(first), publisher.publish(second), return_exceptions=True)
        queue = await channel.declare_queue(queue_name, passive=True)
        received = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            received += [event.message_id for event in parse_events(message)]
        print(f"answers {results}; in the queue: {len(received)} event(s)")
        assert list(results) == [None, None]  # gather gives a list (typeshed: a tuple): compare the items
        assert received == [first.message_id, second.message_id]


async def test_a_burst_of_large_events_is_cut_by_interactions_too(
    publisher_and_queue: tuple[EventPublisher, str, aio_pika.abc.AbstractChannel],
) -> None:
    publisher, queue_name, channel = publisher_and_queue
    size = 1_000  # the most one /interact may carry
    events = [
        EventMessage(
            generation=1,
            user_id=f"user-{n}",
            item_ids=[f"item-{i}" for i in range(size)],
            actions=["like"] * size,
            timestamp=1.0,
            received_at=1.0,
        )
        for n in range(40)
    ]
    await asyncio.gather(*(publisher.publish(event) for event in events))
    queue = await channel.declare_queue(queue_name, passive=True)
    sizes = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        sizes.append(sum(len(event.item_ids) for event in parse_events(message)))
    print(f"{len(events)} events of {size} interactions in {len(sizes)} messages of {sizes} interactions")
    assert sum(sizes) == len(events) * size
    assert max(sizes) <= MAX_INTERACTIONS_PER_MESSAGE and len(sizes) > 1


async def test_messages_returned_unrouted_are_sent_again_once_the_queue_is_declared_again(
    publisher_and_queue: tuple[EventPublisher, str, aio_pika.abc.AbstractChannel],
) -> None:
    """The queue deleted behind the publisher (a broker recreated without its data): the broker returns the
    messages in flight unrouted, stored nowhere; the publisher declares the queue again and sends them again."""
    publisher, queue_name, channel = publisher_and_queue
    await asyncio.gather(*(publisher.publish(_event(n)) for n in range(50)))
    await channel.queue_delete(queue_name)  # the routing key now reaches no queue: the broker returns it
    events = [_event(n) for n in range(100, 150)]
    results = await asyncio.gather(*(publisher.publish(event) for event in events), return_exceptions=True)
    queue = await channel.declare_queue(queue_name, passive=True)
    received = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        received += [event.message_id for event in parse_events(message)]
    print(f"after the delete: answers {set(map(repr, results))}; {len(received)} events in the declared-again queue")
    assert results == [None] * len(events)
    assert sorted(received) == sorted(event.message_id for event in events), "each event once, none lost"


async def test_a_request_whose_sent_message_was_cancelled_at_shutdown_still_answers() -> None:
    async with connected_publisher(timeout_s=0.3) as (publisher, _, _):
        request = asyncio.create_task(publisher.publish(_event(1)))
        await asyncio.sleep(0)  # the request queued its event, and the task that sends it, not started yet
        await publisher.close()  # cancels that task before it ever ran
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(request, timeout=3)
