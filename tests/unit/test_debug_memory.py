"""GET /debug/memory: refuses clearly without tracemalloc, and reports sites and growth with it."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import TypedDict, Unpack

import httpx
import pytest
from fastapi import FastAPI

from recsys_core.settings import Settings
from recsys_io.debug_memory import install_debug_memory


class _Overrides(TypedDict, total=False):
    admin_token: str


def _app(**settings: Unpack[_Overrides]) -> FastAPI:
    app = FastAPI()
    install_debug_memory(app, Settings(**settings))
    return app


async def _get(app: FastAPI, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/debug/memory", params={"top": 5}, headers=headers)


@pytest.fixture
def tracing() -> Iterator[None]:
    was_tracing = tracemalloc.is_tracing()
    tracemalloc.start()
    yield
    if not was_tracing:
        tracemalloc.stop()


async def test_without_tracemalloc_the_answer_says_how_to_turn_it_on() -> None:
    if tracemalloc.is_tracing():
        pytest.skip("this test process runs with tracemalloc on")
    response = await _get(_app())
    assert response.status_code == 409
    assert "PYTHONTRACEMALLOC=1" in response.json()["detail"]


async def test_reports_the_largest_sites_and_what_grew_since_the_previous_call(tracing: None) -> None:
    app = _app()
    first = await _get(app)
    assert first.status_code == 200
    assert len(first.json()["largest"]) == 5 and "grew_since_last_call" not in first.json()
    hoard = [bytearray(1000) for _ in range(5000)]  # ~5 MB allocated on one line between the calls
    second = (await _get(app)).json()
    growth = second["grew_since_last_call"][0]
    assert growth["where"].endswith(f"test_debug_memory.py:{hoard_line()}")
    assert growth["grew_bytes"] >= 5_000_000
    del hoard


def hoard_line() -> int:
    import inspect

    source, start = inspect.getsourcelines(test_reports_the_largest_sites_and_what_grew_since_the_previous_call)
    return start + next(i for i, line in enumerate(source) if "hoard = [" in line)


async def test_is_guarded_by_the_admin_token(tracing: None) -> None:
    app = _app(admin_token="s3cret")
    assert (await _get(app)).status_code == 401
    assert (await _get(app, {"Authorization": "Bearer s3cret"})).status_code == 200
