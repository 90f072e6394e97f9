"""What every HTTP service shares: clear 4xx messages, a body size limit, CORS, the admin token, /metrics."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from pydantic import BaseModel, TypeAdapter, ValidationError
from redis.exceptions import RedisError
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys_core.schemas import GENRE_PATTERN, ID_CHARACTERS, ID_PATTERN
from recsys_core.settings import Settings

# FastAPI's native OpenTelemetry, off: this deployment exports Prometheus /metrics (below). Left on with no
# provider configured, it still looks up the global providers (environment reads) on every request: ~3% of
# the collector's CPU in a py-spy profile under load.
FASTAPI_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.0)


# The contracts' patterns in words: a client should not have to read a regular expression.
PATTERN_IN_WORDS = {
    ID_PATTERN: f"an id is {ID_CHARACTERS} only, and not only dots",
    GENRE_PATTERN: "a genre is printable text (no control characters), not only spaces",
}


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """One readable sentence per problem, e.g. "body.actions.0: Input should be 'like' or 'dislike'"."""
    parts = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        kind = error.get("type")
        position = next((p for p in loc[1:] if isinstance(p, int)), None)
        if kind == "json_invalid" and position is not None:
            # FastAPI's own parser puts the character position where a field name would be ("body.12").
            loc, message = loc[:1], f"the body is not valid JSON (at character {position})"
        elif kind == "string_pattern_mismatch":
            pattern = (error.get("ctx") or {}).get("pattern")
            if isinstance(pattern, str):
                message = PATTERN_IN_WORDS.get(pattern, message)
        location = ".".join(str(p) for p in loc)
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")} for e in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": describe_validation_errors(exc.errors()), "errors": errors})


ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class JsonBody(Generic[ModelT]):
    """A route's body model, with its field names as they appear quoted in JSON (for ``_repeated_field``)."""

    model: type[ModelT]
    quoted_fields: tuple[bytes, ...]

    @classmethod
    def of(cls, model: type[ModelT]) -> JsonBody[ModelT]:
        return cls(model, tuple(b'"%s"' % name.encode() for name in model.model_fields))


async def parse_json_body(request: Request, body_type: JsonBody[ModelT]) -> ModelT:
    """The request body validated by pydantic's own JSON parser in one pass, for a hot route.

    FastAPI's body handling (parse with ``json``, solve the dependencies, validate the dict) was ~12% of the
    collector's CPU under load. Errors are the same 422 as FastAPI's, located under "body"; a field named twice
    is one too, as a repeated query parameter is.
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    subtype = media_type.rpartition("/")[2]
    if subtype != "json" and not subtype.endswith("+json"):
        message = "the body must be JSON, sent with Content-Type: application/json"
        raise RequestValidationError([{"loc": ("body",), "msg": message, "type": "content_type"}])
    body = await request.body()
    repeated = _repeated_field(body, body_type)
    if repeated is not None:
        message = f"{repeated} is given more than once: give it once"
        raise RequestValidationError([{"loc": ("body", repeated), "msg": message, "type": "duplicate_key"}])
    try:
        return body_type.model.model_validate_json(body)
    except ValidationError as error:
        raise _located(error, ("body",)) from None


def _repeated_field(body: bytes, body_type: JsonBody[Any]) -> str | None:
    """A field that the body's top-level object names twice (JSON parsers, pydantic's too, keep the last one).

    Parsing every body twice would slow the hot route, so the full parse runs only when the bytes allow a
    repeat: a field's quoted name occurs twice, or a backslash could spell a name another way
    ("user\\u005fid"). The byte check costs ~0.6 µs on a typical /interact body.
    """
    if b"\\" not in body:
        for quoted in body_type.quoted_fields:
            if body.count(quoted) > 1:
                break
        else:
            return None
    try:
        # Pairs, not dicts: a dict would already have dropped the repeat.
        top = json.loads(body, object_pairs_hook=list)
    except (ValueError, RecursionError):
        return None  # not JSON: model_validate_json says where
    if not isinstance(top, list) or not all(isinstance(pair, tuple) for pair in top):
        return None  # not an object
    fields = body_type.model.model_fields
    seen: set[str] = set()
    for key, _ in top:
        if key in fields and key in seen:
            return str(key)
        seen.add(key)
    return None


def parse_param(adapter: TypeAdapter[Any], value: object, location: tuple[str, str]) -> Any:
    """A path or query parameter validated by ``adapter``; errors are FastAPI's 422 at ``location``."""
    try:
        return adapter.validate_python(value)
    except ValidationError as error:
        raise _located(error, location) from None


def _located(error: ValidationError, prefix: tuple[str, ...]) -> RequestValidationError:
    """pydantic's errors as FastAPI reports them: each location starts with where the value came from."""
    return RequestValidationError([{**e, "loc": (*prefix, *e["loc"])} for e in error.errors(include_url=False)])


def param_openapi(
    name: str, where: str, adapter: TypeAdapter[Any], *, required: bool, description: str = ""
) -> dict[str, Any]:
    """The OpenAPI entry of a parameter that a route reads with ``parse_param``."""
    entry: dict[str, Any] = {"name": name, "in": where, "required": required, "schema": adapter.json_schema()}
    if description:
        entry["description"] = entry["schema"]["description"] = description
    return entry


def json_body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its body with ``parse_json_body`` (FastAPI cannot see it)."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# The 422 of a route whose body FastAPI does not parse (its schema is replaced in ``document_common_errors``).
VALIDATION_ERROR_RESPONSE: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "Validation Error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
    }
}


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not the client sent Content-Length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and b"transfer-encoding" not in headers:
            if int(declared) > self.max_bytes:
                await self._refuse(send)
                return
            # The server frames the body by Content-Length: it cannot grow past it, so nothing to count.
            await self.app(scope, receive, send)
            return
        received = 0
        response_started = refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer here: FastAPI turns any error while it reads the body into its own 400.
                    if not response_started and not refused:
                        refused = True
                        await self._refuse(send)
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if refused:
                return  # the 413 is out; whatever the app answers to the aborted read is dropped
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started and not refused:
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
        status_code=503, content={"detail": f"Redis is unavailable: {exc}"}, headers={"Retry-After": "1"}
    )


# Request headers a browser may send cross-origin: JSON bodies, the admin token and /interact's retry key.
CORS_ALLOWED_HEADERS = ("Content-Type", "Authorization", "Idempotency-Key")
# Response headers browser scripts may read (only CORS-safelisted ones are readable otherwise): the README's
# headers of /recs, and the back-off of a 503.
CORS_EXPOSED_HEADERS = ("X-Experiment-Group", "X-Recommendation-Sources", "X-Fallback", "Retry-After")


def install_common(app: FastAPI, settings: Settings, service_name: str) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    # A dead or refusing dependency (unreachable, READONLY, OOM) is a 503 the client can retry, never a 500 or a
    # hang (timeouts are on the clients).
    app.add_exception_handler(RedisError, _dependency_unavailable)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=list(CORS_ALLOWED_HEADERS),
            expose_headers=list(CORS_EXPOSED_HEADERS),
        )
    install_metrics(app, service_name)
    document_common_errors(app)


# --- OpenAPI: the answers every route can give, described as they are sent ---------------------------------

ERROR_SCHEMA: dict[str, Any] = {
    "title": "ErrorResponse",
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"type": "string", "title": "Detail"}},
}
# What ``_validation_error`` sends: one readable sentence, plus the structured errors.
VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "title": "HTTPValidationError",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "title": "Detail", "description": "one sentence per problem, naming the field"},
        "errors": {
            "type": "array",
            "title": "Errors",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                },
            },
        },
    },
}
# Routes that never touch a dependency, so never answer 503.
NEVER_UNAVAILABLE = frozenset({"/healthcheck", "/experiments", "/experiments/assignment/{user_id}"})
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }


def document_common_errors(app: FastAPI) -> None:
    """Make /openapi.json tell the truth about the errors the shared handlers send.

    FastAPI documents 422 as its default body (``detail`` is a list); ours is a sentence plus ``errors``. It
    knows nothing of the middleware and handlers installed here: 413 (body too large) on every route with a
    body, 400 (bytes that are not UTF-8 text, FastAPI's own answer) on those whose body FastAPI parses (a
    ``parse_json_body`` route answers such bytes with its 422), 503 (a dependency is unreachable) on routes
    that use one, 401 on routes behind the admin token.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        parsed_by_fastapi = {
            (route.path_format, method.lower())
            for route in iter_route_contexts(app.routes)
            if isinstance(route.original_route, APIRoute) and route.original_route.body_field is not None
            for method in route.methods or ()
        }
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorResponse"] = ERROR_SCHEMA
        components["HTTPValidationError"] = VALIDATION_ERROR_SCHEMA
        operation_ids: set[str] = set()
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                if method not in HTTP_METHODS:
                    continue
                # A route with several methods gets one id from FastAPI; an operation id must be unique.
                if operation.get("operationId") in operation_ids:
                    base = operation["operationId"].rpartition("_")[0]
                    operation["operationId"] = f"{base}_{method}"
                operation_ids.add(operation.get("operationId", ""))
                responses = operation.setdefault("responses", {})
                if "requestBody" in operation:
                    if (path, method) in parsed_by_fastapi:
                        responses.setdefault("400", _error_response("The body could not be decoded (not UTF-8)"))
                    elif "422" in responses:
                        description = "Validation Error, or a body that is not UTF-8 JSON"
                        responses["422"] = {**responses["422"], "description": description}
                    responses.setdefault("413", _error_response("The request body is larger than MAX_BODY_BYTES"))
                if path not in NEVER_UNAVAILABLE:
                    unavailable = responses.setdefault("503", _error_response("A dependency is unreachable"))
                    unavailable.setdefault("content", _error_response("")["content"])
                if operation.get("security"):
                    responses.setdefault("401", _error_response("Missing or wrong Authorization: Bearer token"))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class RequestMetrics:
    """Pure ASGI middleware: latency by route template (Starlette's ``@app.middleware`` costs ~0.3 ms a request).

    The router records the matched route in the (shared) scope, so the template is read after the call.
    """

    def __init__(self, app: ASGIApp, service_name: str, histogram: Histogram) -> None:
        self.app = app
        self.service_name = service_name
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or _route_template(scope)
            self.histogram.labels(self.service_name, scope["method"], route, status).observe(
                time.perf_counter() - started
            )


def _route_template(scope: Scope) -> str:
    """The template of the route a request's path belongs to, for an answer sent before routing.

    A 413 decided from Content-Length or a CORS preflight never reaches the router, so the scope names no
    route; the same path would otherwise count under "unmatched" beside its template. A path no route
    matches stays "unmatched", so clients cannot grow the label set.
    """
    app = scope.get("app")
    # Through included routers too (app.routes holds them as one entry each), with their prefixes.
    for route in iter_route_contexts(getattr(getattr(app, "router", None), "routes", ())):
        match, _ = route.matches(scope)
        if match is not Match.NONE:  # PARTIAL: the path matches but not the method (a preflight's OPTIONS)
            return route.path_format or "unmatched"
    return "unmatched"


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
    app.add_middleware(RequestMetrics, service_name=service_name, histogram=latency)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry


# Declared on the routes only when ADMIN_TOKEN is set (see ``admin_guard``); a missing header is our 401.
_ADMIN_BEARER = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="the deployment's ADMIN_TOKEN")
AdminCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_ADMIN_BEARER)]


def admin_guard(settings: Settings) -> Callable[..., Awaitable[None]]:
    """A dependency: when ADMIN_TOKEN is set, the request must carry ``Authorization: Bearer <token>``.

    Only then is the route declared as secured in the OpenAPI document (an HTTP bearer scheme), so the spec
    says what the deployment does.
    """
    token = settings.admin_token
    if not token:

        async def open_to_all() -> None:
            return None

        return open_to_all

    async def require_admin(credentials: AdminCredentials) -> None:
        supplied = credentials.credentials if credentials is not None else ""
        # HTTP headers arrive decoded as Latin-1: their bytes, compared with the token's UTF-8 bytes, so that a
        # non-ASCII token works as a client sends it.
        if not hmac.compare_digest(supplied.encode("latin-1", errors="replace"), token.encode()):
            raise HTTPException(
                status_code=401,
                detail="this endpoint needs Authorization: Bearer <ADMIN_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_admin
