"""CORS: no Access-Control-Allow-Origin for anyone by default; with CORS_ORIGINS, only for those origins."""

from __future__ import annotations

import httpx
import pytest

from recsys_core.settings import Settings
from tests.security.conftest import ALLOWED_ORIGIN, FOREIGN_ORIGIN
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

ACAO = "access-control-allow-origin"


def _requests(stack: ServiceStack, origin: str) -> list[tuple[str, httpx.Response]]:
    """A simple GET and a POST, and the browser's preflight for a JSON POST, on both services."""
    headers = {"Origin": origin}
    preflight = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    body = {"user_id": "cors-user", "item_ids": ["cors-item"], "actions": ["like"]}
    with httpx.Client(timeout=30) as client:
        return [
            ("GET /recs", client.get(f"{stack.recs_url}/recs/cors-user", headers=headers)),
            ("POST /interact", client.post(f"{stack.collector_url}/interact", json=body, headers=headers)),
            ("OPTIONS /recs", client.options(f"{stack.recs_url}/recs/cors-user", headers=preflight)),
            ("OPTIONS /interact", client.options(f"{stack.collector_url}/interact", headers=preflight)),
        ]


def test_no_cors_headers_by_default(open_stack: ServiceStack) -> None:
    answers = _requests(open_stack, FOREIGN_ORIGIN)
    for name, response in answers:
        assert ACAO not in response.headers, f"{name}: {response.headers}"
        assert not any(h.startswith("access-control-") for h in response.headers), name
    assert [r.status_code for _, r in answers[:2]] == [200, 200]  # the requests themselves are served
    print(f"default settings: {len(answers)} cross-origin requests, no Access-Control-* header on any")


def test_only_configured_origins_are_allowed(locked_stack: ServiceStack) -> None:
    allowed = _requests(locked_stack, ALLOWED_ORIGIN)
    for name, response in allowed:
        assert response.status_code == 200, f"{name}: {response.status_code} {response.text}"
        assert response.headers.get(ACAO) == ALLOWED_ORIGIN, f"{name}: {response.headers}"
    for name, response in allowed[2:]:
        assert "POST" in response.headers["access-control-allow-methods"], name
    foreign = _requests(locked_stack, FOREIGN_ORIGIN)
    for name, response in foreign:
        assert ACAO not in response.headers, f"{name}: {response.headers}"
    assert [r.status_code for _, r in foreign[2:]] == [400, 400]  # preflights of a foreign origin are refused
    print(
        f"CORS_ORIGINS={ALLOWED_ORIGIN}: {len(allowed)} requests from it carry Access-Control-Allow-Origin; "
        f"{len(foreign)} from {FOREIGN_ORIGIN} carry none"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://a.example", ["https://a.example"]),
        ("https://a.example, https://b.example", ["https://a.example", "https://b.example"]),
        ('["https://a.example", "https://b.example"]', ["https://a.example", "https://b.example"]),
        ("", []),
    ],
)
def test_cors_origins_setting_forms(monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]) -> None:
    """CORS_ORIGINS as settings.py documents it: comma-separated or a JSON list."""
    monkeypatch.setenv("CORS_ORIGINS", value)
    assert Settings(_env_file=None).cors_origins == expected


def test_browsers_may_send_the_retry_key_and_read_the_documented_headers(locked_stack: ServiceStack) -> None:
    """A preflight for /interact with Idempotency-Key passes, and /recs' own headers are exposed to scripts."""
    preflight = {
        "Origin": ALLOWED_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, idempotency-key",
    }
    with httpx.Client(timeout=30) as client:
        allowed = client.options(f"{locked_stack.collector_url}/interact", headers=preflight)
        recs = client.get(f"{locked_stack.recs_url}/recs/cors-expose-user", headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.status_code == 200, allowed.text
    assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
    assert recs.status_code == 200, recs.text
    exposed = {h.strip().lower() for h in recs.headers.get("access-control-expose-headers", "").split(",")}
    # Every header the README documents for /recs, and the back-off of a 503 (which also carries the group).
    expected = {"x-experiment-group", "x-recommendation-sources", "x-fallback", "retry-after"}
    assert expected <= exposed, recs.headers
    assert {"x-experiment-group", "x-recommendation-sources"} <= set(recs.headers)
    print(f"preflight with Idempotency-Key: {allowed.status_code}; exposed: {sorted(exposed)}")
