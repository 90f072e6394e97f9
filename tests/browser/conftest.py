"""Fixtures for the webapp tests: one real stack (with the webapp) per test module, a seeded catalog."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.stack import ServiceStack

CATALOG_SIZE = 60
GENRES = ("Drama", "Comedy", "Action", "Horror", "Sci-Fi")
# Markup that would run script if any layer inserted titles as HTML.
MALICIOUS_TITLE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>Evil & "quoted"'


@dataclass(frozen=True)
class Catalog:
    ids: list[str]
    titles: dict[str, str]
    genres: dict[str, list[str]]
    malicious_id: str


@pytest.fixture(scope="module")
def webapp_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, mlflow_url: str
) -> Iterator[ServiceStack]:
    """pipeline + recommendations + event_collector + webapp, shared by one module's tests (start-up is slow);
    a module's ``STACK_ENV`` dict adds settings."""
    stack = ServiceStack(
        log_dir=tmp_path_factory.mktemp("webapp-stack"),
        mlflow_url=mlflow_url,
        extra_env=getattr(request.module, "STACK_ENV", {}),
    )
    try:
        stack.start()
        stack.start_service("webapp")
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def catalog(webapp_stack: ServiceStack) -> Catalog:
    """A clean run with ~60 titled items, one of them with a malicious title."""
    ids = [f"item-{uuid.uuid4()}" for _ in range(CATALOG_SIZE)]
    titles = {item_id: f"Movie {n:02d} ({1990 + n})" for n, item_id in enumerate(ids)}
    titles[ids[7]] = MALICIOUS_TITLE
    genres = {item_id: [GENRES[n % len(GENRES)], GENRES[(n + 1) % len(GENRES)]] for n, item_id in enumerate(ids)}
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{webapp_stack.recs_url}/cleanup").status_code == 200
        body = {"item_ids": ids, "genres": [genres[i] for i in ids], "titles": [titles[i] for i in ids]}
        response = client.post(f"{webapp_stack.recs_url}/add_items", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["catalog_size"] == CATALOG_SIZE
    return Catalog(ids=ids, titles=titles, genres=genres, malicious_id=ids[7])
