"""The pipeline's small HTTP face: health, status, a forced retrain and /metrics.

The work itself (consumption, snapshots, training) runs in the ``PipelineRuntime`` of the ``PipelineNode`` the
lifespan starts, while this process holds the pipeline lease; otherwise it is a standby (``pipeline/leadership.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request

from pipeline.node import PipelineNode
from pipeline.runtime import PipelineRuntime
from recsys_core.experiments import load_experiment
from recsys_core.settings import Settings
from recsys_io.debug_memory import install_debug_memory
from recsys_io.http import FASTAPI_TELEMETRY_OFF, admin_guard, install_common
from recsys_io.redis_client import create_redis


async def get_node(request: Request) -> PipelineNode:
    return request.app.state.node


async def get_runtime(node: Annotated[PipelineNode, Depends(get_node)]) -> PipelineRuntime:
    """The leading runtime; 409 on a standby, which has no run state to act on."""
    if node.runtime is None:
        leader = await node.lease.holder()
        raise HTTPException(status_code=409, detail=f"this pipeline is a standby; the lease is held by {leader}")
    return node.runtime


NodeDep = Annotated[PipelineNode, Depends(get_node)]
RuntimeDep = Annotated[PipelineRuntime, Depends(get_runtime)]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    experiment = load_experiment(settings.experiment_file, settings.experiment_config, settings.default_strategy)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(settings)
        node = PipelineNode(settings, redis, experiment, app.state.metrics_registry)
        app.state.node = node
        await node.start()
        try:
            yield
        finally:
            await node.stop()
            await redis.aclose()

    app = FastAPI(title="pipeline", version="1.0", lifespan=lifespan, telemetry=FASTAPI_TELEMETRY_OFF)
    install_common(app, settings, "pipeline")
    install_debug_memory(app, settings)

    @app.get("/healthcheck", tags=["health"])
    async def healthcheck() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["health"])
    async def ready(node: NodeDep) -> dict[str, str]:
        """200 while this process leads and consumes; 503 on a standby or while RabbitMQ is unreachable."""
        if node.runtime is None:
            raise HTTPException(status_code=503, detail="standby: another pipeline holds the lease")
        if not node.runtime.consumer_connected:
            raise HTTPException(status_code=503, detail="not consuming: RabbitMQ is unreachable")
        return {"status": "ready"}

    @app.get("/status", tags=["status"])
    async def status(node: NodeDep) -> dict[str, Any]:
        """``role`` is ``leader`` (with the run's counters) or ``standby`` (with the lease holder)."""
        return node.describe()

    @app.post(
        "/retrain",
        tags=["training"],
        dependencies=[Depends(admin_guard(settings))],
        responses={409: {"description": "This pipeline process is a standby: another one leads and trains"}},
    )
    async def retrain(runtime: RuntimeDep) -> dict[str, Any]:
        """Retrain now (even without new events) and publish; answers when the model is served."""
        return asdict(await runtime.retrain(force=True))

    return app
