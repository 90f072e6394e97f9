"""RabbitMQ: one declaration of the events queue, shared by the collector (publisher) and the pipeline."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue


def dead_letter_queue_name(queue_name: str) -> str:
    return f"{queue_name}.dead"


async def declare_events_queue(channel: AbstractChannel, queue_name: str) -> AbstractQueue:
    """The durable events queue; messages the pipeline cannot parse go to ``<name>.dead`` for inspection."""
    await channel.declare_queue(dead_letter_queue_name(queue_name), durable=True)
    return await channel.declare_queue(
        queue_name,
        durable=True,
        arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead_letter_queue_name(queue_name),
        },
    )


async def connect(amqp_url: str, connect_timeout_s: float) -> aio_pika.abc.AbstractRobustConnection:
    """A robust connection: aio-pika reconnects and redeclares by itself after the first success."""
    return await aio_pika.connect_robust(amqp_url, timeout=connect_timeout_s)
