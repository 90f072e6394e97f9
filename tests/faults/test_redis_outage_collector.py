"""Redis unreachable from the collector's start: it cannot stamp a run, so it must not claim to be ready."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.integration.helpers import eventually
from tests.support.proxy import TcpProxy
from tests.support.stack import REDIS_URL, ServiceStack, free_port

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


def test_a_collector_cut_off_from_redis_during_a_cleanup_stamps_nothing_until_it_announced_again(
    stack_factory: Callable[..., ServiceStack], proxy_for: Callable[[str], TcpProxy]
) -> None:
    """A second collector loses Redis; /cleanup stops waiting for it once its announcement expired. It used to keep
    stamping the run it knew, so events sent after /cleanup returned got a 200 and were dropped by the pipeline
    as an older run's (a chaos run: 10 of 10). Now it answers 503 until it has announced the new run."""
    proxy = proxy_for(REDIS_URL)
    stack = stack_factory().start()
    cut_off = stack.start_service(
        "event_collector", port=free_port(), label="collector-b", REDIS_URL=proxy.url_for(REDIS_URL)
    ).url
    with httpx.Client(timeout=30) as client:
        eventually(lambda: client.get(f"{cut_off}/ready").status_code == 200, timeout_s=20, interval_s=0.1)
        assert client.post(f"{cut_off}/interact", json=BODY).status_code == 200
        proxy.pause()
        cleanup = client.get(f"{stack.recs_url}/cleanup")
        assert cleanup.status_code == 200, cleanup.text
        during = client.post(f"{cut_off}/interact", json=BODY)
        ready_during = client.get(f"{cut_off}/ready")

        proxy.resume()

        def accepted() -> httpx.Response | None:
            response = client.post(f"{cut_off}/interact", json=BODY)
            return response if response.status_code == 200 else None

        after, _ = eventually(accepted, timeout_s=20, interval_s=0.2)
        eventually(lambda: stack.redis.xlen(stack.run_key("events")) >= 1 or None, timeout_s=20)
        pipeline = client.get(f"{stack.pipeline_url}/status").json()
    print(
        f"/cleanup {cleanup.json()}; while cut off: /interact {during.status_code} {during.text}, /ready "
        f"{ready_during.status_code}; after: /interact {after.status_code}; pipeline {pipeline}"
    )
    assert during.status_code == 503 and during.headers.get("retry-after") == "1", during.text
    assert ready_during.status_code == 503
    assert stack.redis.xlen(stack.run_key("events")) == 1  # the event sent after Redis came back, in the new run
    assert pipeline["stale_dropped"] == 0
