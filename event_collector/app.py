"""The event collector: ``create_app(settings)`` builds it; the lifespan owns the connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from event_collector.generation import GenerationSource
from event_collector.metrics import PublisherMetrics
from event_collector.publisher import EventPublisher
from event_collector.routers import health, interact
from recsys_core.keys import GlobalKeys
from recsys_core.settings import Settings
from recsys_io.debug_memory import install_debug_memory
from recsys_io.http import FASTAPI_TELEMETRY_OFF, install_common
from recsys_io.redis_client import create_redis


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(settings)
        publisher = EventPublisher(
            settings.amqp_url,
            settings.events_queue,
            settings.amqp_publish_timeout_s,
            max_in_flight=settings.amqp_publish_max_in_flight,
        )
        publisher.start()
        publisher_metrics = PublisherMetrics(publisher)
        app.state.metrics_registry.register(publisher_metrics)
        app.state.settings = settings
        app.state.publisher = publisher
        generations = GenerationSource(
            redis, GlobalKeys(settings.redis_prefix), poll_interval_s=settings.generation_poll_interval_s
        )
        await generations.start()
        app.state.generations = generations
        try:
            yield
        finally:
            await generations.close()
            await publisher.close()
            app.state.metrics_registry.unregister(publisher_metrics)
            await redis.aclose()

    app = FastAPI(title="event_collector", version="1.0", lifespan=lifespan, telemetry=FASTAPI_TELEMETRY_OFF)
    install_common(app, settings, "event_collector")
    app.include_router(health.router)
    app.include_router(interact.router)
    install_debug_memory(app, settings)
    return app
