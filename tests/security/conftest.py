"""Two stacks shared by the security tests (started once, on first use, and stopped at the end).

``open_stack`` runs with the defaults (no admin token, no CORS origins); ``locked_stack`` sets ADMIN_TOKEN and
CORS_ORIGINS. Both run the pipeline, the recommendations service and the collector, so every admin-guarded route
(the pipeline's POST /retrain too) is reachable. Tests here only read, add items, retrain or send events under
their own ids, so they can share them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import ServiceStack

ADMIN_TOKEN = "test-admin-token-4f1c9a"
ALLOWED_ORIGIN = "https://app.example.test"
FOREIGN_ORIGIN = "https://evil.example.test"


def _stack(
    tmp_path_factory: pytest.TempPathFactory, mlflow_url: str, names: tuple[str, ...], **env: str
) -> Iterator[ServiceStack]:
    stack = ServiceStack(log_dir=tmp_path_factory.mktemp("security"), mlflow_url=mlflow_url, extra_env=env)
    try:
        stack.start(*names)
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="session")
def open_stack(tmp_path_factory: pytest.TempPathFactory, mlflow_url: str) -> Iterator[ServiceStack]:
    yield from _stack(tmp_path_factory, mlflow_url, ("pipeline", "recommendations", "event_collector"))


@pytest.fixture(scope="session")
def locked_stack(tmp_path_factory: pytest.TempPathFactory, mlflow_url: str) -> Iterator[ServiceStack]:
    yield from _stack(
        tmp_path_factory,
        mlflow_url,
        ("pipeline", "recommendations", "event_collector"),
        ADMIN_TOKEN=ADMIN_TOKEN,
        CORS_ORIGINS=f'["{ALLOWED_ORIGIN}"]',  # the JSON form; the comma-separated one is tested in test_cors
    )
