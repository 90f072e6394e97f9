"""The floor the real services are compared with: FastAPI doing one dependency call per request, nothing else.

- ``GET /recs/{user_id}``: one Redis GET (of a 10-item list the benchmark stored), answered as JSON.
- ``POST /interact``: the request body published as one persistent message, with publisher confirms, to
  ``BARE_QUEUE`` through aio-pika; 200 once the broker confirmed it.

Served by ``python -m benchmarks.bare_app`` with the recommendations service's uvicorn settings (same host,
worker count, log level, no access log, same Redis client factory), on ``BARE_PORT``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import orjson
import uvicorn
from fastapi import FastAPI, Request

from recsys_core.settings import Settings
from recsys_io.http import FASTAPI_TELEMETRY_OFF
from recsys_io.redis_client import create_redis


def bare_items_key(prefix: str) -> str:
    return f"{prefix}:bare:items"


def create_app(settings: Settings | None = None, queue_name: str | None = None) -> FastAPI:
    settings = settings or Settings()
    queue_name = queue_name or os.environ.get("BARE_QUEUE", f"{settings.redis_prefix}.bare")
    items_key = bare_items_key(settings.redis_prefix)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(settings)
        connection = await aio_pika.connect_robust(settings.amqp_url, timeout=settings.amqp_publish_timeout_s)
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue_name, durable=True)
        app.state.redis = redis
        app.state.channel = channel
        try:
            yield
        finally:
            await connection.close()
            await redis.aclose()

    app = FastAPI(title="bare", lifespan=lifespan, telemetry=FASTAPI_TELEMETRY_OFF)

    @app.get("/healthcheck")
    async def healthcheck() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/recs/{user_id}")
    async def recs(user_id: str, request: Request) -> dict[str, Any]:
        raw = await request.app.state.redis.get(items_key)
        return {"item_ids": orjson.loads(raw) if raw else []}

    @app.post("/interact")
    async def interact(request: Request) -> dict[str, str]:
        message = aio_pika.Message(
            body=await request.body(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await request.app.state.channel.default_exchange.publish(message, routing_key=queue_name)
        return {"status": "accepted"}

    return app


def main() -> None:
    settings = Settings()
    uvicorn.run(
        "benchmarks.bare_app:create_app",
        factory=True,
        host=settings.host,
        port=int(os.environ["BARE_PORT"]),
        workers=settings.recs_workers,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=settings.http_keep_alive_s,
    )


if __name__ == "__main__":
    main()
