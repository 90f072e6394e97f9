"""With ADMIN_TOKEN set the web UI asks for it (it shows users' histories and calls the backends with it)."""

from __future__ import annotations

import base64
from collections.abc import Mapping

import httpx
import pytest

from recsys_core.settings import Settings
from webapp.app import create_app

TOKEN = "s3cret-ü"


# str names with str values, or bytes with bytes (a token's UTF-8 travels as bytes): the forms httpx takes
Headers = Mapping[str, str] | Mapping[bytes, bytes]


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def _get(token: str | None, path: str, headers: Headers | None = None) -> httpx.Response:
    app = create_app(Settings(_env_file=None, admin_token=token))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webapp.test") as client:
        return await client.get(path, headers=headers)


@pytest.mark.parametrize("path", ["/", "/api/users/alice", "/static/app.js"])
async def test_without_the_token_the_ui_answers_a_basic_challenge(path: str) -> None:
    response = await _get(TOKEN, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic realm=")
    assert "ADMIN_TOKEN" in response.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        _basic("anyone", "wrong"),
        _basic(TOKEN, ""),  # the token as the user name is not the password
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic not-base64!"},
        {b"Authorization": TOKEN.encode()},  # no scheme
    ],
)
async def test_a_wrong_secret_is_refused(headers: Headers) -> None:
    assert (await _get(TOKEN, "/", headers)).status_code == 401


async def test_the_token_as_basic_password_or_bearer_opens_it() -> None:
    assert (await _get(TOKEN, "/", _basic("anyone", TOKEN))).status_code == 200
    bearer = {b"Authorization": b"Bearer " + TOKEN.encode()}  # a header carries bytes: the token's UTF-8
    assert (await _get(TOKEN, "/", bearer)).status_code == 200


async def test_health_and_metrics_stay_open_and_no_token_means_no_gate() -> None:
    assert (await _get(TOKEN, "/healthcheck")).status_code == 200
    assert (await _get(TOKEN, "/metrics")).status_code == 200
    assert (await _get(None, "/")).status_code == 200
