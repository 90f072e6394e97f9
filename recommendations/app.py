"""The recommendations service: ``create_app(settings)`` builds it; the lifespan owns the connections."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from recommendations.group_header import ExperimentGroupHeader
from recommendations.metrics import RecsMetrics
from recommendations.routers import admin, catalog, health, maintenance, recs
from recommendations.service import RecommendationService
from recsys_core.experiments import load_experiment
from recsys_core.settings import Settings
from recsys_io.debug_memory import install_debug_memory
from recsys_io.http import FASTAPI_TELEMETRY_OFF, admin_guard, install_common
from recsys_io.redis_client import create_redis

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # A broken experiment config is refused here, at start-up, with the reason.
    experiment = load_experiment(settings.experiment_file, settings.experiment_config, settings.default_strategy)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(settings)
        service = RecommendationService(settings, redis, experiment, RecsMetrics(app.state.metrics_registry))
        app.state.settings = settings
        app.state.redis = redis
        app.state.service = service
        closing = asyncio.Event()
        flusher = asyncio.create_task(service.run_fallback_flusher(closing))
        log.info(
            "recommendations ready: experiment %r, groups %s", experiment.name, [g.name for g in experiment.groups]
        )
        try:
            yield
        finally:
            closing.set()
            await flusher  # after its write in progress, if any: each Redis call has a timeout
            await service.flush_fallback_writes()
            await redis.aclose()

    app = FastAPI(title="recommendations", version="1.0", lifespan=lifespan, telemetry=FASTAPI_TELEMETRY_OFF)
    install_common(app, settings, "recommendations")
    # Outermost of the app's middleware: even a failure of the others still names the user's group on /recs.
    app.add_middleware(ExperimentGroupHeader, experiment=experiment)
    admin_only = [Depends(admin_guard(settings))]
    app.include_router(health.router)
    app.include_router(recs.router)
    app.include_router(catalog.router, dependencies=admin_only)
    app.include_router(maintenance.router, dependencies=admin_only)
    app.include_router(admin.router)
    app.include_router(admin.user_router, dependencies=admin_only)
    install_debug_memory(app, settings)
    return app
