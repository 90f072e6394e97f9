"""The latency histogram labels a request with its route template, even when it is answered before routing."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI, Request
from prometheus_client import CollectorRegistry

from recsys_core.settings import Settings
from recsys_io.http import install_common

ORIGIN = "https://app.example.test"


def _app() -> FastAPI:
    app = FastAPI()
    install_common(app, Settings(_env_file=None, cors_origins=ORIGIN, max_body_bytes=64), "probe")

    # Included with a prefix, as the services include their routers: app.routes holds the router as one entry.
    router = APIRouter(prefix="/events")

    @router.post("/{user_id}")
    async def events(user_id: str, request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    app.include_router(router)
    return app


def _routes(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    """Observations per (method, route, status)."""
    counts: dict[tuple[str, str, str], float] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == "http_request_duration_seconds_count":
                labels = sample.labels
                counts[(labels["method"], labels["route"], labels["status"])] = sample.value
    return counts


async def test_answers_sent_before_routing_carry_the_route_template() -> None:
    app = _app()
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.post("/events/u1", content=b"{}")).status_code == 200
        # Refused by the body limit from Content-Length alone, before the router sees it.
        assert (await client.post("/events/u2", content=b"x" * 100)).status_code == 413
        assert (await client.options("/events/u3", headers=preflight)).status_code == 200
        assert (await client.post("/nowhere/u4", content=b"x" * 100)).status_code == 413
        assert (await client.get("/nowhere")).status_code == 404

    counts = _routes(app.state.metrics_registry)
    assert counts[("POST", "/events/{user_id}", "200")] == 1
    assert counts[("POST", "/events/{user_id}", "413")] == 1
    assert counts[("OPTIONS", "/events/{user_id}", "200")] == 1
    # Paths no route matches share one label: a client cannot add label values.
    assert counts[("POST", "unmatched", "413")] == 1
    assert counts[("GET", "unmatched", "404")] == 1
    assert {route for _, route, _ in counts} == {"/events/{user_id}", "unmatched"}
