"""What every HTTP service shares: clear 4xx messages, a body size limit, CORS, the admin token, /metrics."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys_core.settings import Settings
from recsys_io.redis_client import RedisConnectionError, RedisTimeoutError

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.0)


def describe_validation_errors(errors: list[Any]) -> str:
    """One readable sentence per problem, e.g. "body.actions.0: Input should be 'like' or 'dislike'"."""
    parts = []
    for error in errors:
        location = ".".join(str(p) for p in error.get("loc", ()))
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")} for e in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": describe_validation_errors(exc.errors()), "errors": errors})


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not the client sent Content-Length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(status_code=413, content={"detail": f"request body larger than {self.max_bytes} bytes"})
        await response({"type": "http"}, _no_receive, send)


class _BodyTooLarge(Exception):
    pass


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


async def _dependency_unavailable(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=503, content={"detail": f"Redis is unreachable: {exc}"}, headers={"Retry-After": "1"}
    )


def install_common(app: FastAPI, settings: Settings, service_name: str) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    # A dead dependency is a 503 the client can retry, never a 500 or a hang (timeouts are on the clients).
    app.add_exception_handler(RedisConnectionError, _dependency_unavailable)
    app.add_exception_handler(RedisTimeoutError, _dependency_unavailable)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization"],
        )
    install_metrics(app, service_name)


def install_metrics(app: FastAPI, service_name: str) -> CollectorRegistry:
    """Request latency histograms by route template, in a registry owned by this app (not a global)."""
    registry = CollectorRegistry()
    latency = Histogram(
        "http_request_duration_seconds",
        "HTTP request latency by route",
        ["service", "method", "route", "status"],
        registry=registry,
        buckets=LATENCY_BUCKETS,
    )
    app.state.metrics_registry = registry

    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        latency.labels(service_name, request.method, _route_template(app, request.scope), response.status_code).observe(
            time.perf_counter() - started
        )
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry


def _route_template(app: FastAPI, scope: Scope) -> str:
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", "unknown")
    return "unmatched"


def admin_guard(settings: Settings) -> Callable[[Request], None]:
    """A dependency: when ADMIN_TOKEN is set, the request must carry ``Authorization: Bearer <token>``."""

    def require_admin(request: Request) -> None:
        if not settings.admin_token:
            return
        supplied = request.headers.get("authorization", "")
        expected = f"Bearer {settings.admin_token}"
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise HTTPException(status_code=401, detail="this endpoint needs Authorization: Bearer <ADMIN_TOKEN>")

    return require_admin
