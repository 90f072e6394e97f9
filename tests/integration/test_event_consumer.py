"""The pipeline's consumer on the real RabbitMQ (a queue of this test's own): a batch that fails to store for a
reason other than Redis being unavailable goes to the dead-letter queue, and consumption goes on."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest

from pipeline.consumer import EventConsumer
from recsys_core.schemas import EventMessage
from recsys_core.settings import Settings
from recsys_io.amqp import dead_letter_queue_name, declare_events_queue, events_message, parse_events
from tests.integration.helpers import delete_events_queue

pytestmark = pytest.mark.integration


def _event(user: str) -> EventMessage:
    return EventMessage(generation=0, user_id=user, item_ids=["a"], actions=["like"], timestamp=1.0, received_at=1.0)


async def test_a_batch_that_cannot_be_stored_is_dead_lettered_and_consumption_goes_on() -> None:
    settings = Settings()
    queue_name = f"test-consumer-{uuid.uuid4().hex[:10]}"
    stored: list[str] = []
    second_stored = asyncio.Event()

    async def handler(events: list[EventMessage]) -> None:
        if any(event.user_id == "poison" for event in events):
            raise ValueError("this batch cannot be stored")
        stored.extend(event.user_id for event in events)
        if "after" in stored:
            second_stored.set()

    connection = await aio_pika.connect(settings.amqp_url)
    channel = await connection.channel()
    await declare_events_queue(channel, queue_name)
    consumer = EventConsumer(settings.amqp_url, queue_name, handler, prefetch=10, batch_size=10, batch_wait_s=0.01)
    try:
        await channel.default_exchange.publish(events_message([_event("poison")]), routing_key=queue_name)
        consumer.start()
        for _ in range(100):  # the poison batch first, alone
            if consumer.rejected:
                break
            await asyncio.sleep(0.05)
        await channel.default_exchange.publish(events_message([_event("after")]), routing_key=queue_name)
        await asyncio.wait_for(second_stored.wait(), timeout=5)

        dead_queue = await channel.declare_queue(dead_letter_queue_name(queue_name), passive=True)
        dead = await dead_queue.get(no_ack=True, fail=False)
        print(f"rejected {consumer.rejected}, consumed {consumer.consumed}, stored {stored}")
        assert consumer.rejected == 1 and stored == ["after"]
        assert dead is not None and [event.user_id for event in parse_events(dead)] == ["poison"]
    finally:
        try:
            await consumer.close()
        finally:
            await delete_events_queue(channel, queue_name)
            await connection.close()


async def test_closing_is_bounded_even_if_a_task_swallows_its_cancellation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.consumer.CLOSE_TIMEOUT_S", 0.2)

    async def handler(events: list[EventMessage]) -> None:
        return None

    consumer = EventConsumer("amqp://unused", f"q-{uuid.uuid4().hex}", handler, 1, 1, 0.01)
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue  # as a library catching too much would

    consumer._tasks = [asyncio.create_task(stubborn())]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(consumer.close(), timeout=5)
    assert loop.time() - started < 2
    release.set()
    await consumer._tasks[0]


class _Delivery:
    """A delivered message whose channel may have died before it is settled (ack/reject then raise)."""

    def __init__(self, user: str, channel_alive: bool) -> None:
        message = events_message([_event(user)])
        self.body, self.type = message.body, message.type
        self.channel_alive = channel_alive
        self.settled: list[str] = []

    async def ack(self) -> None:
        self._settle("ack")

    async def reject(self, requeue: bool = False) -> None:
        self._settle("reject")

    def _settle(self, how: str) -> None:
        if not self.channel_alive:
            raise aio_pika.exceptions.ChannelInvalidStateError("the channel is closed")
        self.settled.append(how)


async def test_only_settled_messages_are_counted_so_a_redelivery_is_counted_once() -> None:
    """A message whose ack fails (its channel died, as when a paused pipeline misses its heartbeat) is redelivered
    by the broker: it counts when that redelivery is acked, not twice. Unparseable messages count as rejected only
    once dead-lettered."""
    stored: list[str] = []

    async def handler(events: list[EventMessage]) -> None:
        stored.extend(event.user_id for event in events)

    consumer = EventConsumer("amqp://unused", "unused", handler, prefetch=10, batch_size=1, batch_wait_s=0.0)
    lost = _Delivery("u", channel_alive=False)
    redelivered = _Delivery("u", channel_alive=True)
    garbage_lost, garbage = _Delivery("g", channel_alive=False), _Delivery("g", channel_alive=True)
    garbage_lost.body = garbage.body = b"not json"
    for delivery in (lost, garbage_lost, redelivered, garbage):
        consumer._inbox.put_nowait(delivery)  # type: ignore[arg-type]  # a stand-in message: body and settling only
    processing = asyncio.create_task(consumer._process_forever())
    try:
        for _ in range(200):
            if consumer._inbox.empty() and garbage.settled:
                break
            await asyncio.sleep(0.01)
    finally:
        processing.cancel()
    print(f"stored {stored}, consumed {consumer.consumed}, rejected {consumer.rejected}")
    assert stored == ["u", "u"]  # the redelivery is stored again (the event store deduplicates it by id)
    assert redelivered.settled == ["ack"] and garbage.settled == ["reject"]
    assert (consumer.consumed, consumer.rejected) == (1, 1)
