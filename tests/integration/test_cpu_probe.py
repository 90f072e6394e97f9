"""The CPU probe of the benchmarks drives the real apps and leaves nothing behind."""

from __future__ import annotations

import uuid

import aio_pika
import pytest
import redis

from benchmarks.cpu_probe import probe, probe_pipeline
from recsys_core.settings import Settings

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("service", ["recs", "interact", "pipeline", "bare-recs", "bare-interact"])
async def test_probe_measures_and_cleans_up(service: str) -> None:
    prefix = f"test-probe-{uuid.uuid4().hex[:8]}"
    if service == "pipeline":  # the drain only ends once the pipeline consumed every batch message
        micros = await probe_pipeline(16, events_per_message=4, prefix=prefix)
    else:
        micros = await probe(service, 64, prefix=prefix)
    # A request of either service costs tens of microseconds at least; a broken probe that skipped the calls
    # (or divided by the wrong count) would report about nothing.
    assert 10 < micros < 1_000_000
    client = redis.Redis.from_url(Settings().redis_url)
    try:
        assert list(client.scan_iter(match=f"{prefix}*")) == []
    finally:
        client.close()
    connection = await aio_pika.connect_robust(Settings().amqp_url)
    async with connection:
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelClosed):
            await channel.declare_queue(f"{prefix}.events", passive=True)
