"""Redis unreachable from the collector's start: it cannot stamp a run, so it must not claim to be ready."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.integration.helpers import eventually
from tests.support.proxy import TcpProxy
from tests.support.stack import REDIS_URL, ServiceStack

pytestmark = pytest.mark.integration

BODY = {"user_id": "ready-user", "item_ids": ["ready-item"], "actions": ["like"]}


def test_collector_is_not_ready_until_redis_answered_once(
    stack_factory: Callable[..., ServiceStack], proxy_for: Callable[[str], TcpProxy]
) -> None:
    proxy = proxy_for(REDIS_URL)
    proxy.pause()  # down from the start: the collector never learns the run generation
    stack = stack_factory()
    collector = stack.start_service("event_collector", REDIS_URL=proxy.url_for(REDIS_URL)).url
    with httpx.Client(timeout=30) as client:

        def broker_connected_but_not_ready() -> httpx.Response | None:
            # Until the broker connects, RabbitMQ is named too; wait for Redis to be the only reason.
            response = client.get(f"{collector}/ready")
            return response if "RabbitMQ" not in response.text else None

        ready, _ = eventually(broker_connected_but_not_ready, timeout_s=20, interval_s=0.2)
        interact = client.post(f"{collector}/interact", json=BODY)
        print(f"Redis down: /ready {ready.status_code} {ready.text}; /interact {interact.status_code}")
        assert interact.status_code == 503 and "Redis" in interact.json()["detail"], interact.text
        assert interact.headers.get("retry-after") == "1"
        assert ready.status_code == 503, ready.text
        assert "Redis" in ready.json()["detail"]
        assert ready.headers.get("retry-after") == "1"

        proxy.resume()
        eventually(lambda: client.get(f"{collector}/ready").status_code == 200, timeout_s=20, interval_s=0.1)
        assert client.post(f"{collector}/interact", json=BODY).status_code == 200
