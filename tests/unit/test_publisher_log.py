"""A failed connection attempt is logged with its kind: a TimeoutError's own text is empty."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from event_collector import publisher as publisher_module
from event_collector.publisher import EventPublisher


async def test_a_connect_timeout_is_logged_by_name(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    attempted = asyncio.Event()

    async def times_out(*_: object, **__: object) -> None:
        attempted.set()
        raise TimeoutError  # what a connect that ran past its timeout raises: str() is ""

    # the publisher calls aio_pika.connect_robust through the module: patching it there is what it sees
    monkeypatch.setattr(aio_pika, "connect_robust", times_out)
    publisher = EventPublisher("amqp://unused/", "unused", timeout_s=1.0)
    with caplog.at_level("WARNING", logger=publisher_module.__name__):
        publisher.start()
        await asyncio.wait_for(attempted.wait(), timeout=5)
        await asyncio.sleep(0)  # let the attempt log before stopping
        await publisher.close()
    messages = [r.getMessage() for r in caplog.records if "RabbitMQ not reachable" in r.getMessage()]
    assert messages, caplog.text
    assert "TimeoutError" in messages[0], messages[0]
