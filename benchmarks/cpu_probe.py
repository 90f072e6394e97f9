"""``python -m benchmarks.cpu_probe {recs,interact,pipeline,bare-recs,bare-interact}``: CPU time per request.

Throughput under wrk moves by ±10% or more from run to run on a shared machine, the bare endpoints included, so
it cannot show a change of a few percent in the request path. This probe builds the service's app (its real
lifespan, the real Redis and RabbitMQ), calls the ASGI app directly from 16 concurrent callers (no HTTP client,
no server) and divides the process's CPU time by the number of requests. What it leaves out (uvicorn's HTTP
parsing) is the same for any version of a route, so two versions compare on what they do differently.

``pipeline`` measures the consumer instead: the queue is filled first (``--requests`` messages of
``--events-per-message`` events each, in the collector's formats), then a real pipeline consumes it, and the
probe divides the pipeline process's CPU time over that drain by the number of messages. Comparing one event per
message with eight shows what the collector's group commit saves the pipeline.

``bare-recs`` and ``bare-interact`` probe the benchmarks' bare endpoints (``benchmarks/bare_app.py``) the same way,
so the CPU ratio behind a throughput ratio can be read off directly.

Everything it creates lives under its own Redis prefix and queue, deleted at the end. Compare two commits by
running it from each checkout (``PYTHONPATH=<checkout> python -m benchmarks.cpu_probe recs``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
import uuid
from typing import Any

import aio_pika
import orjson
from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.types import Message

from devstack.stack import free_port, local_url
from recsys_core.schemas import EventMessage
from recsys_core.settings import Settings

CALLERS = 16
CATALOG_SIZE = 2_000
DRAIN_TIMEOUT_S = 600


async def call(app: FastAPI, method: str, path: str, query: bytes = b"", body: bytes = b"") -> None:
    """One request through the app's whole ASGI stack (middleware included); it must answer 200."""
    headers = [(b"host", b"probe")]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("probe", 80),
        "state": {},
    }
    delivered = False
    statuses: list[int] = []

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect while the app answers
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    if statuses != [200]:
        raise RuntimeError(f"{method} {path} answered {statuses}")


async def _add_catalog(recs: FastAPI) -> None:
    """``CATALOG_SIZE`` items through the recommendations app's /add_items."""
    items = [f"item{i}" for i in range(CATALOG_SIZE)]
    await call(recs, "POST", "/add_items", body=orjson.dumps({"item_ids": items, "genres": [["Drama"]] * CATALOG_SIZE}))


async def probe(service: str, requests: int, prefix: str | None = None) -> float:
    """Microseconds of process CPU per request, measured after a warm-up of as many requests."""
    prefix = prefix or f"cpuprobe-{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_prefix=prefix, events_queue=f"{prefix}.events")
    kind = service.removeprefix("bare-")
    if service.startswith("bare-"):
        # The benchmarks' floor, probed the same way (its queue is the one ``_clean`` deletes).
        from benchmarks.bare_app import bare_items_key
        from benchmarks.bare_app import create_app as create_bare

        app = create_bare(settings, queue_name=settings.events_queue)
    elif service == "interact":
        from event_collector.app import create_app

        app = create_app(settings)
    else:
        from recommendations.app import create_app

        app = create_app(settings)
    rng = random.Random(0)

    async def one(i: int) -> None:
        if kind == "interact":
            event = {"user_id": f"u{i}", "item_ids": [f"item{i % CATALOG_SIZE}"], "actions": ["like"]}
            await call(app, "POST", "/interact", body=orjson.dumps(event))
        else:  # a new user per request, as in the recs benchmark
            await call(app, "GET", f"/recs/u{rng.randrange(10**9)}", query=b"k=10")

    async def caller(first: int, count: int) -> None:
        for i in range(first, first + count):
            await one(i)

    try:
        async with app.router.lifespan_context(app):
            if service == "recs":
                await _add_catalog(app)
            elif service == "bare-recs":  # what the recs benchmark stores for it: a list of 10 ids
                await app.state.redis.set(bare_items_key(prefix), orjson.dumps([f"item{i}" for i in range(10)]))
            await asyncio.sleep(1.5)  # the collector's generation watcher and the recs serving state settle
            per_caller = requests // CALLERS
            cpu = 0.0
            for _ in ("warm-up", "measured"):
                started = time.process_time()
                await asyncio.gather(*(caller(c * per_caller, per_caller) for c in range(CALLERS)))
                cpu = time.process_time() - started
            return 1e6 * cpu / (per_caller * CALLERS)
    finally:
        await _clean(settings)


async def probe_pipeline(messages: int, events_per_message: int, prefix: str | None = None) -> float:
    """Microseconds of the pipeline's CPU per consumed message of ``events_per_message`` events."""
    from pipeline.app import create_app as create_pipeline
    from recommendations.app import create_app as create_recs
    from recsys_io.amqp import declare_events_queue, events_message

    prefix = prefix or f"cpuprobe-{uuid.uuid4().hex[:8]}"
    # No retrain during the drain (the schedule's first run is an interval away), MLflow unreachable.
    settings = Settings(
        redis_prefix=prefix,
        events_queue=f"{prefix}.events",
        retrain_interval_s=3_600,
        mlflow_tracking_uri=local_url(free_port()),
    )
    rng = random.Random(0)
    try:
        recs = create_recs(settings)
        async with recs.router.lifespan_context(recs):
            await _add_catalog(recs)
        connection = await aio_pika.connect_robust(settings.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await declare_events_queue(channel, settings.events_queue)
            now = time.time()
            for first in range(0, messages, 500):
                sends = []
                for _ in range(first, min(messages, first + 500)):
                    events = [
                        EventMessage(
                            generation=0,
                            user_id=f"u{rng.randrange(3_000)}",
                            item_ids=[f"item{rng.randrange(CATALOG_SIZE)}"],
                            actions=[rng.choice(["like", "dislike"])],
                            timestamp=now,
                            received_at=now,
                        )
                        for _ in range(events_per_message)
                    ]
                    message = events_message(events)  # the collector's format for this many events
                    sends.append(channel.default_exchange.publish(message, routing_key=settings.events_queue))
                await asyncio.gather(*sends)
        pipeline = create_pipeline(settings)
        async with pipeline.router.lifespan_context(pipeline):
            runtime = await asyncio.wait_for(pipeline.state.node.wait_leading(), DRAIN_TIMEOUT_S)
            started = time.process_time()
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while (status := runtime.describe())["messages_consumed"] < messages:
                if status["messages_rejected"]:
                    raise RuntimeError("the pipeline rejected messages the probe published: see its log")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the pipeline consumed {status['messages_consumed']} of {messages} messages in "
                        f"{DRAIN_TIMEOUT_S} s"
                    )
                await asyncio.sleep(0.01)
            return 1e6 * (time.process_time() - started) / messages
    finally:
        await _clean(settings)


async def _clean(settings: Settings) -> None:
    redis = Redis.from_url(settings.redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{settings.redis_prefix}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()
    connection = await aio_pika.connect_robust(settings.amqp_url)
    async with connection:
        for queue in (settings.events_queue, f"{settings.events_queue}.dead"):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPException):
                await channel.queue_delete(queue)  # may never have been declared (the recs service declares none)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=["recs", "interact", "pipeline", "bare-recs", "bare-interact"])
    parser.add_argument("--requests", type=int, default=3_200, help="requests (pipeline: messages) per measurement")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events-per-message", type=int, default=1, help="pipeline only")
    args = parser.parse_args()
    for _ in range(args.repeat):
        if args.service == "pipeline":
            micros = asyncio.run(probe_pipeline(args.requests, args.events_per_message))
            print(
                f"pipeline: {micros:.0f} µs of CPU per message of {args.events_per_message} event(s) "
                f"({args.requests} messages, {micros / args.events_per_message:.0f} µs per event)"
            )
            continue
        micros = asyncio.run(probe(args.service, args.requests))
        print(f"{args.service}: {micros:.0f} µs of CPU per request ({args.requests} requests, {CALLERS} callers)")


if __name__ == "__main__":
    main()
