"""3. Freshness: a like → visible in the bandit state /recs reads; a retrain → the new model served by /recs."""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.base import Context, log, retrain, seeded_movielens_stack, served_model_version, target
from benchmarks.report import ROOT, fmt
from benchmarks.stats import meets, summarize
from recsys_io.redis_client import as_str

NAME = "freshness"
TITLE = "Freshness: like → bandit state, retrain → served model"
P95_TARGET_S = 1.0
POLL_S = 0.005
VISIBLE_TIMEOUT_S = 15.0
BACKGROUND_RECS_PER_S = 20.0
BACKGROUND_EVENTS_PER_S = 10.0


def background(url: str, kind: str, rate: float, seconds: float, items_file: Path) -> subprocess.Popen[bytes]:
    """Light steady load in its own process (open loop), on items the freshness probes never touch."""
    command = [
        sys.executable, "-m", "benchmarks.httpload", "--url", url, "--kind", kind, "--rate", str(rate),
        "--duration", str(seconds), "--items", str(items_file), "--prefix", f"bg-{kind}",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def like_to_visible(client: httpx.Client, recs_url: str, collector_url: str, user: str, item: str) -> dict[str, float]:
    before = client.get(f"{recs_url}/debug/items/{item}").json()["likes"]
    started = time.perf_counter()
    response = client.post(f"{collector_url}/interact", json={"user_id": user, "item_ids": [item], "actions": ["like"]})
    response.raise_for_status()
    confirmed = time.perf_counter()
    while time.perf_counter() - started < VISIBLE_TIMEOUT_S:
        if client.get(f"{recs_url}/debug/items/{item}").json()["likes"] > before:
            return {"visible_s": time.perf_counter() - started, "confirm_s": confirmed - started}
        time.sleep(POLL_S)
    raise TimeoutError(f"a like of {item} was not visible on /debug/items within {VISIBLE_TIMEOUT_S}s")


def retrain_to_served(recs_url: str, pipeline_url: str) -> dict[str, float]:
    started = time.perf_counter()
    outcome = retrain(pipeline_url)
    returned = time.perf_counter()
    version = int(outcome["model_version"])
    while served_model_version(recs_url) < version:
        if time.perf_counter() - returned > 60:
            raise TimeoutError(f"model v{version} was not served within 60 s of its publication")
        time.sleep(POLL_S)
    served = time.perf_counter()
    return {
        "model_version": version,
        "retrain_call_s": returned - started,
        "fit_s": float(outcome["train_seconds"]),
        "published_to_served_s": served - returned,
        "retrain_to_served_s": served - started,
    }


def run(ctx: Context) -> dict[str, Any]:
    n_likes = ctx.count(100, 10)
    n_retrains = ctx.count(3, 1)
    rng = random.Random(3)
    stack, seeded = seeded_movielens_stack("freshness")
    with stack, tempfile.TemporaryDirectory() as tmp, httpx.Client(timeout=10) as client:
        recs_url, collector_url = stack.url("recommendations"), stack.url("event_collector")
        ids = [as_str(entry) for entry in stack.redis.lrange(stack.run_key("catalog:ids"), 0, -1)]
        half = len(ids) // 2
        background_items = Path(tmp) / "background.txt"
        background_items.write_text("\n".join(ids[:half]) + "\n")
        probes = rng.sample(ids[half:], n_likes)
        seconds = 600.0
        loads = [
            background(recs_url, "recs", BACKGROUND_RECS_PER_S, seconds, background_items),
            background(collector_url, "interact", BACKGROUND_EVENTS_PER_S, seconds, background_items),
        ]
        try:
            time.sleep(ctx.pick(5, 1))
            log(f"freshness: {n_likes} likes, one at a time, under background load")
            likes = []
            for i, item in enumerate(probes):
                likes.append(like_to_visible(client, recs_url, collector_url, f"fresh-u{i}", item))
                time.sleep(rng.uniform(0.05, 0.25))
            log(f"freshness: {n_retrains} retrains")
            retrains = [retrain_to_served(recs_url, stack.url("pipeline")) for _ in range(n_retrains)]
        finally:
            for process in loads:
                process.terminate()
                process.wait(10)
    visible = summarize([like["visible_s"] for like in likes])
    confirm = summarize([like["confirm_s"] for like in likes])
    return {
        "settings": {
            "likes": n_likes,
            "poll_interval_s": POLL_S,
            "background_recs_per_s": BACKGROUND_RECS_PER_S,
            "background_events_per_s": BACKGROUND_EVENTS_PER_S,
            **seeded,
        },
        "like_visible_s": visible,
        "interact_confirm_s": confirm,
        "likes": likes,
        "retrains": retrains,
        "targets": [
            target(
                f"like → visible in the bandit /recs reads, p95 ≤ {P95_TARGET_S:.0f} s",
                fmt(visible["p95"], 3, " s"),
                meets(visible["p95"], P95_TARGET_S, higher_is_better=False),
            ),
        ],
    }


def render(result: dict[str, Any]) -> str:
    s = result["settings"]
    v, c = result["like_visible_s"], result["interact_confirm_s"]
    lines = [
        f"(a) {s['likes']} likes, one at a time, each of a different MovieLens item by a new user, sent to "
        f"`POST /interact`; the clock stops when `GET /debug/items/<item>` on the recommendations service (the "
        f"replica's bandit state that /recs ranks with) shows one more like, polled every "
        f"{s['poll_interval_s'] * 1000:.0f} ms. Background load meanwhile (separate processes, open loop): "
        f"{s['background_recs_per_s']:.0f} /recs/s "
        f"and {s['background_events_per_s']:.0f} events/s on the other half of the catalog; the run holds "
        f"{s['seeded_events']:,} MovieLens events.",
        "",
        "| | p50 | p95 | max | mean |",
        "|---|---|---|---|---|",
        f"| like → visible | {fmt(v['p50'], 3, ' s')} | {fmt(v['p95'], 3, ' s')} | {fmt(v['max'], 3, ' s')} | "
        f"{fmt(v['mean'], 3, ' s')} |",
        f"| of which /interact (confirmed) | {fmt(c['p50'], 3, ' s')} | {fmt(c['p95'], 3, ' s')} | "
        f"{fmt(c['max'], 3, ' s')} | {fmt(c['mean'], 3, ' s')} |",
        "",
        "(b) `POST {pipeline}/retrain` (answers once the model is published), then `/recs` + `GET /status` on the "
        "recommendations service until `served_model_version` is the new version. Same run (MovieLens history, so "
        "a retrain fits BPR twice: offline evaluation + the published model). In brackets the part of the call that "
        "was `fit_model`: latest answers, likes matrix, both BPR fits, item neighbours and the offline metrics.",
        "",
        "| model | retrain call (of which fit_model) | published → served | retrain → served |",
        "|---|---|---|---|",
    ]
    for r in result["retrains"]:
        lines.append(
            f"| v{r['model_version']} | {r['retrain_call_s']:.2f} s ({r['fit_s']:.2f} s) | "
            f"{r['published_to_served_s']:.3f} s | {r['retrain_to_served_s']:.2f} s |"
        )
    return "\n".join(lines)
