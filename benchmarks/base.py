"""What every benchmark module shares: the run context, target records, progress lines, seeded stacks."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from benchmarks import data
from benchmarks.stack import BenchStack


@dataclass(frozen=True, slots=True)
class Context:
    quick: bool

    def pick(self, full: float, quick: float) -> float:
        return quick if self.quick else full

    def count(self, full: int, quick: int) -> int:
        return quick if self.quick else full


class Benchmark(Protocol):
    NAME: str
    TITLE: str
    run: Callable[[Context], dict[str, Any]]
    render: Callable[[dict[str, Any]], str]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def target(what: str, measured: str, met: bool | None) -> dict[str, Any]:
    return {"what": what, "measured": measured, "met": met}


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False


def served_model_version(recs_url: str) -> int:
    """The model version the recommendations replica serves (it refreshes on a /recs call)."""
    with httpx.Client(base_url=recs_url, timeout=30) as client:
        client.get("/recs/bench-probe?k=1")
        return int(client.get("/status").json()["served_model_version"] or 0)


def retrain(pipeline_url: str) -> dict[str, Any]:
    response = httpx.post(f"{pipeline_url}/retrain", timeout=900)
    response.raise_for_status()
    return dict(response.json())


def seeded_movielens_stack(label: str, extra_env: dict[str, str] | None = None) -> tuple[BenchStack, dict[str, Any]]:
    """pipeline + recommendations + event_collector with the full MovieLens catalog (via /add_items), the
    ml-latest-small ratings as the run's event history (likes >= 4), and a BPR model served, so /recs does
    the work of a warm deployment (bandit evidence, co-likes, model) rather than of an empty one."""
    stack = BenchStack(label, extra_env={"RETRAIN_INTERVAL_S": "3600", **(extra_env or {})})
    try:
        stack.start("recommendations")
        catalog = data.movielens_catalog()
        size = data.add_items(stack.url("recommendations"), catalog)
        columns = data.movielens_columns()
        events = data.inject_stream(stack.redis, stack.prefix, columns)
        stack.start("pipeline", "event_collector")
        outcome = retrain(stack.url("pipeline"))
        version = int(outcome["model_version"])
        if not wait_until(lambda: served_model_version(stack.url("recommendations")) >= version, 30, 0.2):
            raise RuntimeError("the recommendations service did not pick up the first model")
        log(f"{label}: catalog {size} items, {events} seeded events, model v{version} served")
        return stack, {"catalog_size": size, "seeded_events": events, "model_version": version}
    except BaseException:
        stack.close()
        raise
