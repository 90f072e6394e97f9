"""ADMIN_TOKEN guards /cleanup, /add_items and the pipeline's /retrain (401 without the right bearer token); /recs and
/interact stay open."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.security.conftest import ADMIN_TOKEN
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

WRONG_CREDENTIALS = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
    {"Authorization": f"Basic {ADMIN_TOKEN}"},
    {"Authorization": ADMIN_TOKEN},
    {"X-Admin-Token": ADMIN_TOKEN},
]
RIGHT = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _guarded_calls(stack: ServiceStack) -> list[tuple[str, str, dict[str, object] | None]]:
    return [
        ("GET", f"{stack.recs_url}/cleanup", None),
        ("POST", f"{stack.recs_url}/cleanup", None),
        ("POST", f"{stack.recs_url}/add_items", {"item_ids": ["admin-item-1", "admin-item-2"]}),
        ("POST", f"{stack.pipeline_url}/retrain", None),
        ("GET", f"{stack.recs_url}/debug/users/admin-user", None),  # a user's history
    ]


def test_admin_routes_need_the_bearer_token(locked_stack: ServiceStack) -> None:
    refused = 0
    with httpx.Client(timeout=30) as client:
        before = client.get(f"{locked_stack.recs_url}/status").json()
        assert client.get(f"{locked_stack.pipeline_url}/status").json()["last_retrain"] is None
        for method, url, body in _guarded_calls(locked_stack):
            for headers in WRONG_CREDENTIALS:
                response = client.request(method, url, json=body, headers=headers)
                assert response.status_code == 401, f"{method} {url} with {headers}: {response.status_code}"
                assert response.headers["www-authenticate"].lower().startswith("bearer")
                detail = response.json()["detail"]
                assert "Authorization: Bearer" in detail
                assert ADMIN_TOKEN not in response.text
                refused += 1
        # None of the refused calls had an effect: no new run, no items added, no retrain.
        status = client.get(f"{locked_stack.recs_url}/status").json()
        assert (status["generation"], status["catalog_size"]) == (before["generation"], before["catalog_size"])
        assert client.get(f"{locked_stack.pipeline_url}/status").json()["last_retrain"] is None
        accepted = 0
        for method, url, body in _guarded_calls(locked_stack):
            response = client.request(method, url, json=body, headers=RIGHT)
            assert response.status_code == 200, f"{method} {url}: {response.status_code} {response.text}"
            accepted += 1
        status = client.get(f"{locked_stack.recs_url}/status").json()
        assert (status["generation"], status["catalog_size"]) == (before["generation"] + 2, 2)
        # The accepted /retrain ran (no likes yet, so it trained nothing, but the pipeline records its outcome).
        assert client.get(f"{locked_stack.pipeline_url}/status").json()["last_retrain"] is not None
    print(f"{refused} calls without the right token -> 401; {accepted} with it -> 200")


def test_public_routes_stay_open_with_a_token_set(locked_stack: ServiceStack) -> None:
    with httpx.Client(timeout=30) as client:
        recs = client.get(f"{locked_stack.recs_url}/recs/open-user")
        interact = client.post(
            f"{locked_stack.collector_url}/interact",
            json={"user_id": "open-user", "item_ids": ["admin-item-1"], "actions": ["like"]},
        )
        others = [client.get(f"{locked_stack.recs_url}{path}") for path in ("/healthcheck", "/status", "/experiments")]
    assert recs.status_code == 200, recs.text
    assert interact.status_code == 200, interact.text
    assert [r.status_code for r in others] == [200, 200, 200]
    print("/recs, /interact, /healthcheck, /status and /experiments answer 200 without a token")


def _secured(openapi: dict[str, Any]) -> list[str]:
    return sorted(
        f"{method.upper()} {path}"
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if operation.get("security")
    )


def test_openapi_declares_the_token_where_it_is_needed(locked_stack: ServiceStack, open_stack: ServiceStack) -> None:
    locked = httpx.get(f"{locked_stack.recs_url}/openapi.json", timeout=30).json()
    secured = _secured(locked)
    assert secured == [
        "GET /cleanup",
        "GET /debug/memory",
        "GET /debug/users/{user_id}",
        "POST /add_items",
        "POST /cleanup",
    ]
    assert locked["components"]["securitySchemes"]["AdminToken"]["scheme"] == "bearer"
    assert "401" in locked["paths"]["/add_items"]["post"]["responses"]
    locked_pipeline = httpx.get(f"{locked_stack.pipeline_url}/openapi.json", timeout=30).json()
    secured_pipeline = _secured(locked_pipeline)
    assert secured_pipeline == ["GET /debug/memory", "POST /retrain"]
    assert locked_pipeline["components"]["securitySchemes"]["AdminToken"]["scheme"] == "bearer"
    assert "401" in locked_pipeline["paths"]["/retrain"]["post"]["responses"]
    for url in (open_stack.recs_url, open_stack.pipeline_url):
        unlocked = httpx.get(f"{url}/openapi.json", timeout=30).json()
        assert not _secured(unlocked), url
    print(f"secured with ADMIN_TOKEN: {secured} (recommendations), {secured_pipeline} (pipeline); none without it")


def test_a_non_ascii_token_works_as_a_client_sends_it() -> None:
    """Headers arrive decoded as Latin-1; the token is compared as the UTF-8 bytes a client puts on the wire."""
    import asyncio

    from fastapi import Depends, FastAPI

    from recsys_core.settings import Settings
    from recsys_io.http import admin_guard

    token = "sé-ключ-4f1c"
    app = FastAPI()

    @app.get("/guarded", dependencies=[Depends(admin_guard(Settings(_env_file=None, admin_token=token)))])
    async def guarded() -> dict[str, str]:
        return {"status": "ok"}

    async def status_for(authorization: bytes) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (await client.get("/guarded", headers={b"Authorization": authorization})).status_code

    assert asyncio.run(status_for(f"Bearer {token}".encode())) == 200
    assert asyncio.run(status_for(f"Bearer {token}x".encode())) == 401
    # "sé" in Latin-1: other bytes than the token's UTF-8.
    assert asyncio.run(status_for(f"Bearer {token[:2]}".encode("latin-1"))) == 401


def _guarded_recs_app(token: str) -> Any:
    """/cleanup, /add_items and /status behind the services' own guard (the status needs none)."""
    from fastapi import Depends, FastAPI

    from recsys_core.settings import Settings
    from recsys_io.http import admin_guard

    app = FastAPI()
    guard = [Depends(admin_guard(Settings(_env_file=None, admin_token=token)))]
    calls: list[str] = []

    @app.get("/cleanup", dependencies=guard)
    async def cleanup() -> dict[str, str]:
        calls.append("cleanup")
        return {"status": "ok"}

    @app.post("/add_items", dependencies=guard)
    async def add_items() -> dict[str, int]:
        calls.append("add_items")
        return {"added": 1}

    @app.get("/status")
    async def status() -> dict[str, int]:
        return {"catalog_size": 0}

    app.state.calls = calls
    return app


NON_ASCII_TOKEN = "sé-ключ-4f1c"


def test_the_grader_launcher_and_web_ui_send_a_non_ascii_token() -> None:
    """The services accept a non-ASCII token (above); their clients sent it as a str header, which httpx encodes as
    ASCII: the web UI did not start, the grader could not clean up and make run could not load the catalog."""
    import asyncio

    from fastapi.testclient import TestClient

    from grader.deployment import cleanup
    from launcher.catalog import post_batch
    from recsys_core.settings import Settings
    from webapp.backends import create_http_client

    app = _guarded_recs_app(NON_ASCII_TOKEN)

    async def grader_cleanup() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            await cleanup(client, "http://recs", NON_ASCII_TOKEN)

    asyncio.run(grader_cleanup())

    with TestClient(app) as client:
        post_batch(client, "http://recs", {"item_ids": ["a"], "genres": [["Drama"]]}, NON_ASCII_TOKEN)

    async def web_ui_call() -> int:
        ui_client = create_http_client(Settings(_env_file=None, admin_token=NON_ASCII_TOKEN))
        async with (
            ui_client,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), headers=ui_client.headers) as client,
        ):
            return (await client.get("http://recs/cleanup")).status_code

    assert asyncio.run(web_ui_call()) == 200
    assert app.state.calls == ["cleanup", "add_items", "cleanup"]
