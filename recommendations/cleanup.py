"""/cleanup: start a new, empty run without restarting anything.

Order matters: purge the queue of the old run's backlog, bump the generation (every reader and writer of the old
run is refused from then on), wait until every live collector stamps the new one (so an event sent after /cleanup
returns belongs to the new run), wait for the pipeline to drop its in-memory state, then delete the old run's keys.
The purge comes first because a purge after the bump would also delete events of the new run that were already
confirmed; old-run events queued after the purge carry the old generation, and the pipeline drops them.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aio_pika
from redis.asyncio import Redis

from recsys_core.keys import GlobalKeys
from recsys_core.schemas import CleanupResponse
from recsys_core.settings import Settings
from recsys_io.amqp import declare_events_queue
from recsys_io.generations import delete_generations_before
from recsys_io.redis_client import as_int, as_str

log = logging.getLogger(__name__)

PIPELINE_ACK_TIMEOUT_S = 10.0
# A collector that stops refreshing its announcement vanishes within its TTL (3 s), so this is never reached
# unless a collector keeps announcing an old generation, which it does not (event_collector.generation).
COLLECTOR_ACK_TIMEOUT_S = 5.0


async def purge_events_queue(settings: Settings) -> bool:
    try:
        async with asyncio.timeout(settings.amqp_publish_timeout_s):
            connection = await aio_pika.connect(settings.amqp_url, timeout=settings.amqp_publish_timeout_s)
            async with connection:
                channel = await connection.channel()
                queue = await declare_events_queue(channel, settings.events_queue)
                await queue.purge()
        return True
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPException) as error:
        # Not fatal: events of the old run still carry the old generation and the pipeline drops them.
        log.warning("could not purge %s during cleanup: %r", settings.events_queue, error)
        return False


async def wait_for_pipeline(redis: Redis, keys: GlobalKeys, generation: int) -> bool:
    """True once the pipeline reports the new generation; False right away when no pipeline is alive."""
    deadline = time.monotonic() + PIPELINE_ACK_TIMEOUT_S
    while time.monotonic() < deadline:
        alive, acknowledged = await redis.mget(keys.pipeline_heartbeat, keys.pipeline_generation)
        if alive is None:
            return False
        if as_int(acknowledged) >= generation:
            return True
        await asyncio.sleep(0.05)
    log.warning("the pipeline did not acknowledge generation %d within %.0fs", generation, PIPELINE_ACK_TIMEOUT_S)
    return False


async def wait_for_collectors(redis: Redis, keys: GlobalKeys, generation: int) -> bool:
    """True once every live collector process announces ``generation`` (or none is alive).

    Announcements that expired belong to dead processes: they are removed from the set and not waited for.
    """
    deadline = time.monotonic() + COLLECTOR_ACK_TIMEOUT_S
    while True:
        instances = list(await redis.smembers(keys.collectors))
        announced = await redis.mget([keys.collector(as_str(i)) for i in instances]) if instances else []
        dead = [instance for instance, value in zip(instances, announced, strict=True) if value is None]
        if dead:
            await redis.srem(keys.collectors, *dead)
        if all(as_int(value) >= generation for value in announced if value is not None):
            return True
        if time.monotonic() >= deadline:
            log.warning("a collector did not switch to generation %d within %.0fs", generation, COLLECTOR_ACK_TIMEOUT_S)
            return False
        await asyncio.sleep(0.02)


async def cleanup(settings: Settings, redis: Redis, keys: GlobalKeys) -> CleanupResponse:
    # Redis first: a cleanup that is going to fail with a 503 must not have purged the confirmed events already.
    await redis.ping()
    purged = await purge_events_queue(settings)
    generation = int(await redis.incr(keys.generation))
    collectors_switched = await wait_for_collectors(redis, keys, generation)
    acknowledged = await wait_for_pipeline(redis, keys, generation)
    deleted = await delete_generations_before(redis, keys, generation)
    log.info(
        "cleanup: generation %d, collectors switched=%s, queue purged=%s, pipeline ack=%s, %d keys deleted",
        generation,
        collectors_switched,
        purged,
        acknowledged,
        deleted,
    )
    return CleanupResponse(
        generation=generation,
        collectors_switched=collectors_switched,
        queue_purged=purged,
        pipeline_acknowledged=acknowledged,
        keys_deleted=deleted,
    )
