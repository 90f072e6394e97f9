"""Small helpers shared by the integration tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def new_id(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4()}"


def catalog(
    n: int, genres: tuple[str, ...] = ("Drama", "Comedy", "Action", "Horror")
) -> tuple[list[str], list[list[str]]]:
    ids = [new_id("item-") for _ in range(n)]
    return ids, [[genres[i % len(genres)], genres[(i * 7 + 1) % len(genres)]] for i in range(n)]


def add_items(client: httpx.Client, recs_url: str, ids: list[str], genres: list[list[str]]) -> dict[str, int]:
    response = client.post(f"{recs_url}/add_items", json={"item_ids": ids, "genres": genres})
    assert response.status_code == 200, response.text
    return response.json()


def recs(client: httpx.Client, recs_url: str, user_id: str, k: int | None = None) -> httpx.Response:
    params = {"k": k} if k is not None else None
    response = client.get(f"{recs_url}/recs/{user_id}", params=params)
    assert response.status_code == 200, response.text
    return response


def interact(client: httpx.Client, collector_url: str, user_id: str, items: list[str], actions: list[str]) -> None:
    response = client.post(
        f"{collector_url}/interact", json={"user_id": user_id, "item_ids": items, "actions": actions}
    )
    assert response.status_code == 200, response.text


def eventually(check: Callable[[], T | None], timeout_s: float, interval_s: float = 0.05) -> tuple[T, float]:
    """Poll ``check`` until it returns something truthy; (value, seconds it took). Fails after the timeout."""
    started = time.monotonic()
    while True:
        value = check()
        elapsed = time.monotonic() - started
        if value:
            return value, elapsed
        if elapsed > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)
