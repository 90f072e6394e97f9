"""Consuming the events queue in batches: store durably, apply in memory, then ack.

At-least-once: a message is acked only after Redis stored it (or recognised it as a redelivery, or as an
event of an older run). If Redis fails, the batch is retried until it succeeds; nothing is acked meanwhile,
so a crash redelivers it. A message that cannot be parsed, or whose batch fails to store for any other reason
than Redis being unavailable, is rejected to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pydantic import ValidationError

from pipeline.leadership import LeadershipLost
from recsys_core.schemas import EventMessage
from recsys_io.amqp import declare_events_queue, parse_events

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
RECONNECT_DELAY_S = 1.0

BatchHandler = Callable[[list[EventMessage]], Awaitable[None]]


class EventConsumer:
    def __init__(
        self,
        amqp_url: str,
        queue_name: str,
        handler: BatchHandler,
        prefetch: int,
        batch_size: int,
        batch_wait_s: float,
        heartbeat_s: int = 0,
    ) -> None:
        self._amqp_url = amqp_url
        # A paused process (SIGSTOP, a stalled VM) keeps its connection's TCP alive, and with it every message
        # delivered to it and not acked yet (up to the prefetch) until the broker's heartbeat check gives up:
        # 60 s by default, while a standby takes the lease within seconds and cannot get those messages. A
        # heartbeat in the URL wins; 0 keeps the broker's.
        self._connect_options: dict[str, Any] = {}  # aio-pika's connection options
        if heartbeat_s > 0 and "heartbeat" not in parse_qs(urlsplit(amqp_url).query):
            self._connect_options["heartbeat"] = heartbeat_s
        self._queue_name = queue_name
        self._handler = handler
        self._prefetch = prefetch
        self._batch_size = batch_size
        self._batch_wait_s = batch_wait_s
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._connection: AbstractRobustConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.consumed = 0
        self.rejected = 0

    @property
    def connected(self) -> bool:
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._subscribe()), asyncio.create_task(self._process_forever())]

    async def _subscribe(self) -> None:
        while True:
            connection: AbstractRobustConnection | None = None
            try:
                connection = await aio_pika.connect_robust(
                    self._amqp_url, timeout=5, reconnect_interval=RECONNECT_DELAY_S, **self._connect_options
                )
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=self._prefetch)
                queue = await declare_events_queue(channel, self._queue_name)
                await queue.consume(self._inbox.put)
            except (OSError, TimeoutError, aio_pika.exceptions.AMQPException) as error:
                log.warning("could not consume from RabbitMQ (%r); retrying in %.0fs", error, RECONNECT_DELAY_S)
                if connection is not None:
                    # A robust connection left open would keep reconnecting on its own: one more per attempt.
                    with contextlib.suppress(Exception):
                        await connection.close()
                await asyncio.sleep(RECONNECT_DELAY_S)
                continue
            except asyncio.CancelledError:
                # Stopped half-way (the runtime stops): ``close`` does not know this connection yet.
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close()
                raise
            self._connection = connection
            log.info("consuming %s (prefetch %d)", self._queue_name, self._prefetch)
            return

    async def _next_batch(self) -> list[AbstractIncomingMessage]:
        """The first waiting message, plus whatever arrives within ``batch_wait_s``, up to ``batch_size``."""
        batch = [await self._inbox.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._batch_wait_s
        while len(batch) < self._batch_size:
            if not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._inbox.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _process_forever(self) -> None:
        while True:
            messages = await self._next_batch()
            events: list[EventMessage] = []
            parsed: list[AbstractIncomingMessage] = []
            for message in messages:
                try:
                    events += parse_events(message)
                    parsed.append(message)
                except ValidationError as error:
                    log.error("rejecting an unparseable message to the dead-letter queue: %s", error)
                    self.rejected += await self._settle(message, accept=False)
            try:
                await self._handler(events)  # retries internally while Redis is unavailable
            except LeadershipLost as error:
                # Nothing of the batch was stored: left unacked, it goes back to the queue when the stepping-down
                # pipeline closes its connection, for the new leader.
                log.warning("stopped consuming: %s", error)
                return
            except Exception:
                # Not a Redis outage (those are retried): something in these messages cannot be stored. They go to
                # the dead-letter queue, kept for inspection, and consumption goes on.
                log.exception("rejecting %d messages to the dead-letter queue: storing them failed", len(parsed))
                for message in parsed:
                    self.rejected += await self._settle(message, accept=False)
                continue
            for message in parsed:
                self.consumed += await self._settle(message, accept=True)

    @staticmethod
    async def _settle(message: AbstractIncomingMessage, accept: bool) -> bool:
        """Ack (or dead-letter) a message; False if its channel died first. Only settled messages are counted:
        an unsettled one comes back as a redelivery and is counted then, so "consumed" and "rejected" add up to
        the messages published, once each, even across a lost connection (e.g. a pipeline paused past its
        heartbeat)."""
        try:
            await (message.ack() if accept else message.reject(requeue=False))
        except (aio_pika.exceptions.AMQPException, RuntimeError) as error:
            # The channel died meanwhile: the broker redelivers the message (a stored one is then deduplicated).
            log.warning("could not settle a message (%s); the broker will redeliver it", error)
            return False
        return True

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a cancellation swallowed somewhere below must not hang a step-down or a shutdown.
            _, pending = await asyncio.wait(self._tasks, timeout=CLOSE_TIMEOUT_S)
            if pending:
                log.warning("%d consumer task(s) still running %.0fs after cancel", len(pending), CLOSE_TIMEOUT_S)
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                # A task that had died must not stop the rest of the shutdown.
                log.error("a consumer task had failed", exc_info=task.exception())
        if self._connection is not None:
            await self._connection.close()
