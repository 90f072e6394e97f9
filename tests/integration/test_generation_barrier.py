"""The collector keeps the generation in memory; /cleanup's barrier makes that safe (real Redis).

Safe means: once ``wait_for_collectors`` returns for generation G, every live collector stamps G, so an event
sent after /cleanup returned is never stamped with the old run (and dropped as stale after a 200).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from event_collector.generation import ANNOUNCEMENT_TTL_MS, GenerationSource
from event_collector.publisher import BrokerUnavailable
from pipeline.event_store import STORED, EventStore, GroupedEvent
from recommendations.cleanup import cleanup, wait_for_collectors
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import AddItemsRequest, EventMessage
from recsys_core.settings import Settings
from recsys_io.amqp import parse_events
from recsys_io.catalog import add_items
from recsys_io.redis_client import REDIS_UNAVAILABLE, GenerationRestorer
from tests.integration.helpers import a_redis_call_that_swallows_its_cancellation, connected_publisher
from tests.support.proxy import TcpProxy
from tests.support.stack import REDIS_URL

pytestmark = pytest.mark.integration


async def test_cleanup_returns_only_once_the_collector_stamps_the_new_run(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    # A slow poll: without the barrier the collector would stamp the old run for up to half a second.
    source = GenerationSource(redis_client, keys, poll_interval_s=0.5)
    await source.start()
    try:
        assert source.current() == 0
        assert await redis_client.smembers(keys.collectors) == {source.instance_id.encode()}
        new_generation = await redis_client.incr(keys.generation)
        assert source.current() == 0  # nothing read it yet
        assert await wait_for_collectors(redis_client, keys, new_generation)
        assert source.current() == new_generation
    finally:
        await source.close()
    # Withdrawn on close: no later /cleanup waits for a stopped process.
    assert await redis_client.smembers(keys.collectors) == set()
    assert await redis_client.exists(keys.collector(source.instance_id)) == 0


async def test_a_collector_that_died_without_withdrawing_is_not_waited_for(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    await redis_client.sadd(keys.collectors, "crashed")
    await redis_client.set(keys.collector("crashed"), 0, px=300)
    new_generation = await redis_client.incr(keys.generation)
    waiting = asyncio.create_task(wait_for_collectors(redis_client, keys, new_generation))
    await asyncio.sleep(0.1)
    assert not waiting.done(), "the announcement is still alive: cleanup must wait for it"
    assert await asyncio.wait_for(waiting, timeout=2.0) is True
    assert await redis_client.smembers(keys.collectors) == set(), "the dead announcement was not removed"


async def test_a_collector_starting_while_cleanup_runs_is_waited_for(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst interleaving: the new collector reads the old generation, then /cleanup bumps it and looks
    for collectors before the new one announced what it read. Announcing 0 before the read covers it."""
    redis_client, keys = redis_and_keys
    real_read = GenerationRestorer.at_least
    cleanup_waits: list[asyncio.Task[bool]] = []

    async def read_then_cleanup(restorer: GenerationRestorer, seen: int) -> int:
        value = await real_read(restorer, seen)
        if not cleanup_waits:
            new_generation = await redis_client.incr(keys.generation)
            cleanup_waits.append(asyncio.create_task(wait_for_collectors(redis_client, keys, new_generation)))
            await asyncio.sleep(0.05)
        return value

    monkeypatch.setattr(GenerationRestorer, "at_least", read_then_cleanup)
    source = GenerationSource(redis_client, keys, poll_interval_s=0.3)
    await source.start()
    try:
        assert source.current() == 0, "it read the old generation"
        (waiting,) = cleanup_waits
        assert not waiting.done(), "cleanup returned while this collector still stamps the old run"
        assert await asyncio.wait_for(waiting, timeout=2.0) is True
        assert source.current() == 1
    finally:
        await source.close()


async def test_close_returns_while_a_refresh_is_in_flight(
    redis_and_keys: tuple[Redis, GlobalKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation that lands during a Redis command can be swallowed inside the client; the watcher must
    stop anyway (a collector once hung on SIGTERM for 20 s until it was killed)."""
    redis_client, keys = redis_and_keys
    real_read = GenerationRestorer.at_least
    reads = 0
    watcher_reading = asyncio.Event()

    async def read_that_swallows_cancellation(restorer: GenerationRestorer, seen: int) -> int:
        nonlocal reads
        reads += 1
        if reads >= 3:  # the first is start-up's; from the third on the watcher is mostly inside a read
            watcher_reading.set()
        await a_redis_call_that_swallows_its_cancellation(0.2)
        return await real_read(restorer, seen)

    monkeypatch.setattr(GenerationRestorer, "at_least", read_that_swallows_cancellation)
    source = GenerationSource(redis_client, keys, poll_interval_s=0.01)
    await source.start()
    await asyncio.wait_for(watcher_reading.wait(), timeout=5.0)
    await asyncio.wait_for(source.close(), timeout=5.0)
    assert await redis_client.smembers(keys.collectors) == set()


async def test_cleanup_during_a_backlog_keeps_every_confirmed_event_of_the_new_run(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    """No pipeline consumes, so the queue holds a backlog when /cleanup runs while 20 clients publish: every event
    confirmed with the new run's generation must still be in the queue afterwards (none purged)."""
    redis_client, keys = redis_and_keys
    settings = Settings(redis_prefix=keys.prefix, events_queue=f"{keys.prefix}.events")
    source = GenerationSource(redis_client, keys, poll_interval_s=0.1)
    await source.start()
    confirmed_new = 0
    publishing = True
    try:
        async with connected_publisher(settings.events_queue, timeout_s=3.0) as (publisher, _, channel):

            async def client() -> None:
                nonlocal confirmed_new
                while publishing:
                    generation = source.current()
                    event = EventMessage(
                        generation=generation,
                        user_id="u",
                        item_ids=["a"],
                        actions=["like"],
                        timestamp=1.0,
                        received_at=1.0,
                    )
                    with contextlib.suppress(BrokerUnavailable):
                        await publisher.publish(event)
                        confirmed_new += generation == 1

            clients = [asyncio.create_task(client()) for _ in range(20)]
            await asyncio.sleep(0.5)  # a backlog of the old run
            result = await cleanup(settings, redis_client, keys)
            await asyncio.sleep(0.3)  # more of the new run
            publishing = False
            await asyncio.gather(*clients)

            queue = await channel.declare_queue(settings.events_queue, passive=True)
            queued = Counter[int]()
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                queued.update(event.generation for event in parse_events(message))
    finally:
        await source.close()

    print(f"cleanup {result}; confirmed in the new run {confirmed_new}; queued by run {dict(queued)}")
    assert result.queue_purged and result.generation == 1
    assert confirmed_new > 0
    assert queued[1] == confirmed_new, "confirmed events of the new run were purged"


async def test_a_cleanup_that_cannot_reach_redis_purges_nothing(
    redis_and_keys: tuple[Redis, GlobalKeys], proxy_for: Callable[[str], TcpProxy]
) -> None:
    """The cleanup fails (the service answers 503): the run goes on, so its confirmed events must still be queued."""
    _redis_client, keys = redis_and_keys
    settings = Settings(redis_prefix=keys.prefix, events_queue=f"{keys.prefix}.events")
    proxy = proxy_for(REDIS_URL)
    unreachable = Redis.from_url(proxy.url_for(REDIS_URL), socket_timeout=0.5, socket_connect_timeout=0.5)
    proxy.pause()
    event = EventMessage(generation=0, user_id="u", item_ids=["a"], actions=["like"], timestamp=1.0, received_at=1.0)
    try:
        async with connected_publisher(settings.events_queue) as (publisher, _, channel):
            for _ in range(5):
                await publisher.publish(event)
            with pytest.raises(REDIS_UNAVAILABLE):
                await cleanup(settings, unreachable, keys)
            queue = await channel.declare_queue(settings.events_queue, passive=True)
            queued = queue.declaration_result.message_count
    finally:
        await unreachable.aclose()
    print(f"queued after the failed cleanup: {queued}")
    assert queued == 5


async def test_a_collector_puts_back_the_generation_redis_lost(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    """Redis restarted without its data reads generation 0; the collector kept stamping the run it knew, and that
    run's number is back in Redis for the pipeline and the replicas (they would take its events for an older run's)."""
    redis_client, keys = redis_and_keys
    await redis_client.set(keys.generation, 3)
    source = GenerationSource(redis_client, keys, poll_interval_s=60)
    await source.start()
    try:
        await redis_client.delete(keys.generation)  # the data loss
        await source.refresh()
        assert source.current() == 3
        assert await redis_client.get(keys.generation) == b"3"
        assert await redis_client.get(keys.collector(source.instance_id)) == b"3"

        await redis_client.incr(keys.generation)  # a later /cleanup still moves it on
        await source.refresh()
        assert source.current() == 4
    finally:
        await source.close()


async def test_after_a_lapse_no_request_is_stamped_with_the_run_a_cleanup_ended(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    """The process could not refresh for longer than half its announcement's TTL (paused, or cut off from Redis)
    while a /cleanup ran. The refresh that follows first announces 0 (so a racing /cleanup waits); that
    announcement used to count as fresh, so requests served meanwhile were stamped with the ended run again."""
    redis_client, keys = redis_and_keys
    source = GenerationSource(redis_client, keys, poll_interval_s=60)  # refreshed by hand only
    await source.start()
    try:
        assert source.current() == 0
        source._announced_at -= ANNOUNCEMENT_TTL_MS / 1000  # the lapse
        await redis_client.incr(keys.generation)  # the /cleanup that went ahead without it
        stamps: Counter[int | None] = Counter()

        async def requests() -> None:
            while True:
                stamps[source.current()] += 1
                await asyncio.sleep(0)

        serving = asyncio.create_task(requests())
        await source.refresh()
        await asyncio.sleep(0)
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    finally:
        await source.close()
    print(f"stamps seen while the refresh ran: {dict(stamps)}")
    assert stamps[0] == 0, "a request was stamped with the run the /cleanup ended"
    assert stamps[1] > 0  # and the new run once it was announced


async def test_a_run_started_after_the_loss_is_not_overwritten_by_a_restore(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    """A collector that saw run 5 is cut off while Redis loses its data and a /cleanup starts run 1: when it is
    back it follows run 1. Restoring whenever the key was lower jumped the deployment to 5 over the new run, and
    that run's accepted events were dropped as an older run's."""
    redis_client, keys = redis_and_keys
    await redis_client.set(keys.generation, 5)
    cut_off = GenerationSource(redis_client, keys, poll_interval_s=60)
    await cut_off.start()
    try:
        await redis_client.delete(keys.generation)  # the loss
        assert await redis_client.incr(keys.generation) == 1  # the /cleanup that started a new run
        await cut_off.refresh()
        assert cut_off.current() == 1
        assert await redis_client.get(keys.generation) == b"1"
    finally:
        await cut_off.close()


async def test_a_catalog_added_after_the_loss_pins_its_run(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    """Items added after the loss belong to the run that is then current (0); a later restore would have left them
    in a run nobody reads."""
    redis_client, keys = redis_and_keys
    await add_items(redis_client, keys, 0, AddItemsRequest(item_ids=["a", "b"]))
    assert await redis_client.get(keys.generation) == b"0"
    assert await GenerationRestorer(redis_client, keys).at_least(5) == 0
    assert await redis_client.llen(keys.for_generation(0).catalog_ids) == 2


async def test_events_stored_after_the_loss_pin_their_run(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    """As a catalog added after the loss: events stored for run 0 while the key is missing make run 0 current for
    good, or a later restore would leave them in a run nobody reads."""
    redis_client, keys = redis_and_keys
    store = EventStore(redis_client, keys)
    event = EventMessage(generation=0, user_id="ann", item_ids=["a"], actions=["like"], timestamp=1.0, received_at=1.0)
    assert await store.store([GroupedEvent(event, "C")], store.new_call_id()) == [STORED]
    assert await redis_client.get(keys.generation) == b"0"
    assert await GenerationRestorer(redis_client, keys).at_least(5) == 0


async def test_a_caller_that_saw_only_run_0_restores_nothing(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    """Run 0 is what a missing key means already: writing it would pin run 0 and stop a collector that saw the
    lost run from putting it back."""
    redis_client, keys = redis_and_keys
    restorer = GenerationRestorer(redis_client, keys)
    assert await restorer.at_least(0) == 0
    assert await redis_client.exists(keys.generation) == 0
    assert await restorer.at_least(3) == 3
