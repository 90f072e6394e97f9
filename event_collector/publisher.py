"""Confirmed, persistent publishing to the events queue, with a connection that heals itself.

/interact answers 200 only after the broker confirmed the message that holds its event (publisher confirms on
every channel). While the broker is unreachable, ``publish`` fails at once with ``BrokerUnavailable`` (the route
turns it into a 503); a background task keeps connecting, and aio-pika's robust connection reconnects after drops.

Group commit: at most ``max_in_flight`` messages await their confirm at once. Events that arrive meanwhile wait
and leave together, as one ``EventBatch`` message, when a confirm comes back. An idle collector therefore
publishes each event at once, alone; a busy one sends a few messages holding many events. Much of the cost of
an event, in the collector and in the pipeline, is per message: the pipeline spends ~240 µs of CPU on a message
of one event and ~400 µs on a message of eight (``python -m benchmarks.cpu_probe pipeline``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustChannel, AbstractRobustConnection

from recsys_core.schemas import EventMessage
from recsys_io.amqp import declare_events_queue, events_message

log = logging.getLogger(__name__)

# Batches publish concurrently on a few shared confirming channels, taken in turn. (A pool that lent each request
# a channel of its own until the confirm came back kept one message in flight per channel: ~25% fewer /interact
# per second and a longer tail in the quick benchmark.) Two channels, so the broker's per-channel work can use
# two cores.
PUBLISH_CHANNELS = 2
RECONNECT_DELAY_S = 1.0
# A bound on one message, so that a burst becomes several messages of moderate size rather than one the pipeline
# must store in a single huge Redis pipeline.
MAX_EVENTS_PER_MESSAGE = 256
# ...and on its interactions: one /interact may carry up to 1,000 of them, and a message is one store call.
MAX_INTERACTIONS_PER_MESSAGE = 4096
# AMQP's reply code for a mandatory message no queue was bound to take.
NO_ROUTE = 312


@dataclass(slots=True)
class _Waiting:
    """An event waiting for its message's confirm, and whether it has left in a message yet."""

    event: EventMessage
    confirmed: asyncio.Future[None]
    sent: bool = False


class BrokerUnavailable(RuntimeError):
    """The broker did not confirm the message (unreachable, timed out, or it refused it)."""


class EventPublisher:
    def __init__(self, amqp_url: str, queue_name: str, timeout_s: float, max_in_flight: int = 4) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._amqp_url = amqp_url
        self._queue_name = queue_name
        self._timeout_s = timeout_s
        self._max_in_flight = max_in_flight
        self._connection: AbstractRobustConnection | None = None
        self._channels: list[AbstractRobustChannel] = []
        self._next_channel = 0
        self._connector: asyncio.Task[None] | None = None
        # Events waiting for the next message, each with the future its request awaits.
        self._waiting: list[_Waiting] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._closing = False
        self.messages_published = 0
        self.events_published = 0

    @property
    def connected(self) -> bool:
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    def start(self) -> None:
        self._connector = asyncio.create_task(self._connect_until_up())

    async def _connect_until_up(self) -> None:
        while True:
            connection: AbstractRobustConnection | None = None
            try:
                # reconnect_interval: after a broker outage, publishing resumes within about a second (default 5 s).
                connection = await aio_pika.connect_robust(
                    self._amqp_url, timeout=self._timeout_s, reconnect_interval=RECONNECT_DELAY_S
                )
                # on_return_raises: a message no queue accepted is an error, not a silent confirm.
                channels = [
                    await connection.channel(publisher_confirms=True, on_return_raises=True)
                    for _ in range(PUBLISH_CHANNELS)
                ]
                # Declared on a channel that stays open: a robust channel declares its queues again when it
                # reconnects (a broker recreated without its data comes back without them).
                await declare_events_queue(channels[0], self._queue_name)
            except (OSError, TimeoutError, aio_pika.exceptions.AMQPException) as error:
                if connection is not None:  # the broker went away between the connect and the channels
                    with contextlib.suppress(OSError, TimeoutError, aio_pika.exceptions.AMQPException):
                        await connection.close()
                log.warning("RabbitMQ not reachable (%r); retrying in %.0fs", error, RECONNECT_DELAY_S)
                await asyncio.sleep(RECONNECT_DELAY_S)
                continue
            self._connection = connection
            self._channels = channels
            log.info("connected to RabbitMQ, publishing to %s", self._queue_name)
            return

    async def publish(self, event: EventMessage) -> None:
        """Return once the broker confirmed a message holding ``event``; ``BrokerUnavailable`` otherwise.

        Two bounds of ``timeout_s`` each, so a stalled broker answers 503 within twice it: the wait for the event's
        message to leave (a free in-flight slot), and that message's confirm once sent. The second is the send's
        own: a message that left is answered by its confirm even past the first bound, because a 503 could
        answer an event the broker then stores, and a client's retry would store it twice (unless the client sends
        an ``Idempotency-Key``; see the route). A 503 after a send timed out may still be stored all the same: a
        confirm that never came back says nothing either way, and delivery is at least once.
        """
        if not self.connected or not self._channels:
            raise BrokerUnavailable("RabbitMQ is unreachable; the event was not accepted, retry later")
        waiting = _Waiting(event, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._send_waiting()
        try:
            async with asyncio.timeout(self._timeout_s):
                await asyncio.shield(waiting.confirmed)
                return
        except TimeoutError:
            pass
        if waiting.sent:
            # Its message is out: its confirm, or its failure within the send's own timeout, answers. Bounded all
            # the same: a send cancelled before it began (the collector stops) never answers.
            try:
                async with asyncio.timeout(self._timeout_s):
                    await waiting.confirmed
                    return
            except TimeoutError:
                pass
        else:
            # Giving up cancels this request's own event only: it is never sent (it was answered 503), and the
            # other events of a sent batch still get their confirm.
            waiting.confirmed.cancel()
        raise BrokerUnavailable(f"RabbitMQ did not confirm the event within {self._timeout_s:g} s")

    def _send_waiting(self) -> None:
        """Send the waiting events, up to ``MAX_EVENTS_PER_MESSAGE`` events and ``MAX_INTERACTIONS_PER_MESSAGE``
        interactions per message (an event over the latter leaves alone), while fewer than ``max_in_flight``
        messages await their confirm."""
        if self._closing or not self._waiting or len(self._in_flight) >= self._max_in_flight:
            return
        waiting = [entry for entry in self._waiting if not entry.confirmed.done()]
        while waiting and len(self._in_flight) < self._max_in_flight:
            size = interactions = 0
            for entry in waiting:
                interactions += len(entry.event.item_ids)
                if size == MAX_EVENTS_PER_MESSAGE or (size and interactions > MAX_INTERACTIONS_PER_MESSAGE):
                    break
                size += 1
            batch, waiting = waiting[:size], waiting[size:]
            for entry in batch:
                entry.sent = True
            task = asyncio.create_task(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._sent)
        self._waiting = waiting

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._send_waiting()  # what arrived while this message was in flight leaves now

    async def _send(self, batch: list[_Waiting]) -> None:
        channel = self._channels[self._next_channel]
        self._next_channel = (self._next_channel + 1) % len(self._channels)
        failure: str | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._publish_routed(channel, events_message([entry.event for entry in batch]))
        except TimeoutError:
            failure = f"RabbitMQ did not confirm the event within {self._timeout_s:g} s"
        except (OSError, RuntimeError, aio_pika.exceptions.AMQPException) as error:
            log.warning("publishing %d events failed: %r", len(batch), error)
            failure = f"RabbitMQ did not take the event ({type(error).__name__}); retry later"
        except BaseException:  # cancelled (the collector stops) or a bug: the waiting requests must not hang
            failure = "the collector failed or stopped before RabbitMQ confirmed the event"
            raise
        finally:
            for entry in batch:
                if entry.confirmed.done():
                    continue
                if failure is None:
                    entry.confirmed.set_result(None)
                else:
                    entry.confirmed.set_exception(BrokerUnavailable(failure))
            if failure is None:
                self.messages_published += 1
                self.events_published += len(batch)

    async def _publish_routed(self, channel: AbstractChannel, message: aio_pika.Message) -> None:
        """Publish and await the confirm. A message returned unrouted (the queue was deleted behind the collector's
        back) was stored nowhere, so after declaring the queue again it is sent once more; safe, not a duplicate."""
        try:
            await channel.default_exchange.publish(message, routing_key=self._queue_name, mandatory=True)
            return
        except aio_pika.exceptions.DeliveryError as error:
            if getattr(error.frame, "reply_code", None) != NO_ROUTE:
                raise
        log.warning("the events queue %s was gone: declaring it again", self._queue_name)
        await declare_events_queue(channel, self._queue_name)
        await channel.default_exchange.publish(message, routing_key=self._queue_name, mandatory=True)

    async def close(self) -> None:
        self._closing = True
        for task in list(self._in_flight):
            task.cancel()
        for task in list(self._in_flight):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for entry in self._waiting:
            if not entry.confirmed.done():
                entry.confirmed.set_exception(BrokerUnavailable("the collector stopped before the event was sent"))
        self._waiting = []
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._connection is not None:
            await self._connection.close()
