"""RabbitMQ: the events queue's declaration and its message format, shared by the collector (publisher) and the
pipeline (consumer)."""

from __future__ import annotations

import uuid

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from recsys_core.schemas import EVENT_BATCH_TYPE, EventBatch, EventMessage


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


def events_message(events: list[EventMessage]) -> aio_pika.Message:
    """One persistent message holding ``events``: a lone event in the single-event format (nothing to wrap, and
    what a pipeline from before batches reads), several as an ``EventBatch``."""
    if len(events) == 1:
        body, kind, message_id = events[0].model_dump_json(), None, events[0].message_id
    else:
        body, kind, message_id = EventBatch(events=events).model_dump_json(), EVENT_BATCH_TYPE, uuid.uuid4().hex
    return aio_pika.Message(
        body=body.encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
        type=kind,
    )


def parse_events(message: AbstractIncomingMessage) -> list[EventMessage]:
    """The events one message holds: a collector's batch, or one event (the format before batches)."""
    if message.type == EVENT_BATCH_TYPE:
        return EventBatch.model_validate_json(message.body).events
    return [EventMessage.model_validate_json(message.body)]
