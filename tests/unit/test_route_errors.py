"""Routes of the recommendations service when a dependency fails: a 503 that says why, never a 500.

POST /add_items when the run keeps changing under the batch; GET /recs with neither Redis nor a fallback, whose
503 still names the user's experiment group (an A/B analysis counts the failure against that group).
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from recommendations.deps import get_keys, get_redis
from recommendations.routers import catalog as catalog_router
from recommendations.routers import recs as recs_router
from recommendations.service import RecommendationsUnavailable
from recsys_core.experiments import load_experiment
from recsys_core.keys import GlobalKeys
from recsys_io.catalog import StaleGenerationError


async def test_a_batch_the_run_keeps_overtaking_is_a_503(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []

    async def always_stale(*_: object) -> None:
        attempts.append(1)
        raise StaleGenerationError(0)

    async def generation_zero(*_: object) -> int:
        return 0

    monkeypatch.setattr(catalog_router, "add_items", always_stale)
    monkeypatch.setattr(catalog_router, "read_generation", generation_zero)
    app = FastAPI()
    app.include_router(catalog_router.router)
    app.dependency_overrides[get_redis] = lambda: None
    app.dependency_overrides[get_keys] = lambda: GlobalKeys("unused")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/add_items", json={"item_ids": ["a"]})

    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "the run changed 4 times" in response.json()["detail"]
    assert len(attempts) == catalog_router.STALE_RETRIES


async def test_a_recs_503_names_the_users_experiment_group() -> None:
    experiment = load_experiment(None, None, "blend")

    class Unavailable:
        def __init__(self) -> None:
            self.experiment = experiment

        async def recommend(self, user_id: str, k: int) -> None:
            raise RecommendationsUnavailable("Redis is unreachable and this replica has no catalog cached yet")

    app = FastAPI()
    app.include_router(recs_router.router)
    app.state.service = Unavailable()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/recs/user-1")

    assert response.status_code == 503 and "no catalog cached" in response.json()["detail"]
    assert response.headers["x-experiment-group"] == experiment.assign("user-1").name
