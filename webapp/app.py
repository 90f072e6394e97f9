"""The debug web UI: ``create_app(settings)`` builds it; the lifespan owns the HTTP client to the backends."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from recsys_core.settings import Settings
from recsys_io.http import FASTAPI_TELEMETRY_OFF, install_common
from webapp.access import AdminTokenGate
from webapp.backends import BackendError, Backends, create_http_client
from webapp.routers import api, health, pages

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent


async def _backend_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BackendError)
    headers = {"Retry-After": "1"} if exc.status_code == 503 else None
    return JSONResponse(status_code=exc.status_code, content=exc.as_json(), headers=headers)


def _templates() -> Jinja2Templates:
    # Autoescape on for every template (not only by file extension): every value rendered is text.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return Jinja2Templates(env=env)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with create_http_client(settings) as client:
            app.state.backends = Backends(client, settings)
            log.info(
                "webapp ready: recs %s, collector %s, pipeline %s",
                settings.recs_url,
                settings.collector_url,
                settings.pipeline_url,
            )
            yield

    app = FastAPI(title="webapp", version="1.0", lifespan=lifespan, telemetry=FASTAPI_TELEMETRY_OFF)
    app.state.settings = settings
    app.state.templates = _templates()
    install_common(app, settings, "webapp")
    app.add_exception_handler(BackendError, _backend_error)
    app.include_router(health.router)
    app.include_router(pages.router)
    app.include_router(api.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    if settings.admin_token:
        # Outermost: nothing of the UI (it shows users' histories, and calls the backends with the token) without it.
        app.add_middleware(AdminTokenGate, token=settings.admin_token)
    return app
