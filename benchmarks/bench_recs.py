"""1. /recs throughput and latency against a bare FastAPI + one-Redis-GET endpoint, under the same wrk load."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from benchmarks import loadgen
from benchmarks.bare_app import bare_items_key
from benchmarks.base import Context, log, seeded_movielens_stack, target
from benchmarks.metrics import http_totals
from benchmarks.report import fmt
from benchmarks.stats import meets, ratio

NAME = "recs"
TITLE = "/recs throughput and latency vs a bare FastAPI endpoint"
CONNECTIONS = (16, 64)  # the targets; 1 connection is measured too, for the unloaded latency
USER_POOL = 200_000
RATIO_TARGET = 0.7
P99_TARGET_MS = 20.0
RECS_ROUTE = "/recs/{user_id}"


def run_prefix(name: str, connections: int) -> str:
    """User ids of their own per run: a user served in an earlier run would come back with a shown set, so a shared
    prefix made each later row's workload differ from the first's (more returning users per row)."""
    return f"{name}-c{connections}"


def returning_share(pool: int, before: int, requests: int) -> float:
    """Expected share of ``requests`` uniform draws from ``pool`` ids that hit an id drawn before: in the same run,
    or in ``before`` earlier draws from the same ids."""
    if requests <= 0:
        return 0.0
    unseen = 1 - 1 / pool
    new_users = pool * (unseen**before - unseen ** (before + requests))
    return 1 - new_users / requests


def returning_shares(result: Mapping[str, Any]) -> dict[int, float]:
    """Per connection count, the expected share of /recs requests for a user already asked for. Results without
    ``settings.user_prefix`` used one prefix for all the recs runs (1, 16 then 64 connections), so theirs add up."""
    pool, shared = result["settings"]["user_pool"], result["settings"].get("user_prefix") != "per run"
    shares, before = {}, 0
    for key, run in result["runs"].items():
        name, connections = key.split("@")
        if name == "recs":
            shares[int(connections)] = returning_share(pool, before if shared else 0, int(run["requests"]))
            before += int(run["requests"])
    return shares


def run(ctx: Context) -> dict[str, Any]:
    warmup_s = ctx.pick(10, 2)
    measure_s = ctx.pick(30, 5)
    stack, seeded = seeded_movielens_stack("recs")
    with stack:
        stack.start("bare")
        recs_url, bare_url = stack.url("recommendations"), stack.url("bare")
        sample = httpx.get(f"{recs_url}/recs/bench-check?k=10", timeout=10).json()["item_ids"]
        if len(sample) != 10:
            raise RuntimeError(f"/recs answered {len(sample)} items, not 10")
        stack.redis.set(bare_items_key(stack.prefix), orjson.dumps(sample))
        targets = {"recs": recs_url, "bare": bare_url}
        for name, url in targets.items():
            log(f"recs: warm-up {name} for {warmup_s:.0f}s")
            loadgen.run(loadgen.Load(url, "recs", 16, warmup_s, USER_POOL, seed=1, user_prefix=f"warm-{name}"))
        runs: dict[str, dict[str, Any]] = {}
        for connections in (1, *CONNECTIONS):
            for name, url in targets.items():  # interleaved, so a disturbance hits both sides alike
                log(f"recs: {name} at {connections} connections for {measure_s:.0f}s")
                before = http_totals(recs_url, "GET", RECS_ROUTE) if name == "recs" else None
                load = loadgen.Load(
                    url,
                    "recs",
                    connections,
                    measure_s,
                    USER_POOL,
                    seed=connections,
                    user_prefix=run_prefix(name, connections),
                )
                result = loadgen.run(load)
                if before is not None:
                    after = http_totals(recs_url, "GET", RECS_ROUTE)
                    server_mean = ratio(after[0] - before[0], after[1] - before[1])
                    result["server_mean_ms"] = None if server_mean is None else server_mean * 1000
                runs[f"{name}@{connections}"] = result
    ratios = {c: ratio(runs[f"recs@{c}"]["rps"], runs[f"bare@{c}"]["rps"]) for c in CONNECTIONS}
    p99_16 = runs["recs@16"]["latency_ms"]["p99"]
    return {
        "settings": {
            "warmup_s": warmup_s,
            "measure_s": measure_s,
            "user_pool": USER_POOL,
            "k": 10,
            "recs_workers": 1,
            "tool": runs["recs@16"]["tool"],
            "user_prefix": "per run",  # results before this field: one prefix per endpoint, shared by its runs
            **seeded,
        },
        "runs": runs,
        "ratios": {str(c): r for c, r in ratios.items()},
        "targets": [
            *(
                target(f"throughput recs/bare at {c} connections ≥ {RATIO_TARGET}", fmt(r, 2), meets(r, RATIO_TARGET))
                for c, r in ratios.items()
            ),
            target(
                f"/recs p99 ≤ {P99_TARGET_MS:.0f} ms at 16 connections",
                fmt(p99_16, 1, " ms"),
                meets(p99_16, P99_TARGET_MS, higher_is_better=False),
            ),
        ],
    }


def users_note(result: Mapping[str, Any]) -> str:
    shares = returning_shares(result)
    listed = " / ".join(f"{share:.0%}" for share in shares.values())
    at = " / ".join(str(c) for c in shares)
    returning = (
        f"so {listed} of the /recs requests at {at} connections are for a user asked for before (expected, from "
        "each run's request count), whose shown set /recs then excludes."
    )
    if result["settings"].get("user_prefix") == "per run":
        return (
            "each run (endpoint and connection count) has ids of its own, unused by the warm-up and the other runs; "
            f"within a run a user recurs by chance, {returning}"
        )
    return f"the recs runs shared these ids (one prefix for all three, a different seed each), {returning}"


def render(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"Closed-loop load from {s['tool']} (1 thread), {s['warmup_s']:.0f} s warm-up per endpoint, then "
        f"{s['measure_s']:.0f} s per measurement, recs and bare interleaved. Each request is `GET /recs/<user>?k=10` "
        f"for a user drawn uniformly from {s['user_pool']:,} ids; {users_note(result)} The "
        f"catalog is the full MovieLens catalog ({s['catalog_size']:,} items via `/add_items`) and the run "
        f"holds the {s['seeded_events']:,} ml-latest-small ratings as events, with a BPR model served. "
        "`bare` = `benchmarks/bare_app.py` (FastAPI, one Redis GET, JSON), same uvicorn settings, 1 worker.",
        "",
        "| endpoint | connections | requests/s | p50 ms | p95 ms | p99 ms | max ms | errors | server mean ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, run in result["runs"].items():
        name, connections = key.split("@")
        lat = run["latency_ms"]
        lines.append(
            f"| {name} | {connections} | {fmt(run['rps'], 0)} | {fmt(lat['p50'], 2)} | {fmt(lat['p95'], 2)} | "
            f"{fmt(lat['p99'], 2)} | {fmt(lat['max'], 1)} | {run['errors']} | {fmt(run.get('server_mean_ms'), 2)} |"
        )
    return "\n".join(lines)
