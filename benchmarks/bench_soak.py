"""5. Soak: the grader at 50 concurrent users for ~10 minutes; errors and the RSS of every service process."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.base import Context, log, target
from benchmarks.report import RESULTS_DIR, ROOT, fmt
from benchmarks.stack import BenchStack
from benchmarks.stats import baseline_slope, slope

NAME = "soak"
TITLE = "Soak: the grader at 50 concurrent users for 10 minutes"
CONCURRENCY = 50
# A grader user takes ~2 s (4 /recs calls, pauses of 0.1-0.3 s and 1-2 s): 50 at once finish ~25 users/s.
USERS_PER_S = 26.5
SERVICES = ("recommendations", "event_collector", "pipeline")
FLAT_MB_PER_MIN = 1.0
# The baseline of a service's RSS: the minimum of each such bin (a retrain every 30 s makes periodic spikes).
BASELINE_BIN_MIN = 1.0
WARMUP_SHARE = 0.2
# The pipeline keeps the latest TRAINING_MAX_EVENTS events in memory for training. At the 5M default a
# 10-minute soak (~75,000 events) never fills the window, so the pipeline keeps every event and user of the run;
# the soak sets a window it fills within the first few minutes, to measure that the bound holds.
TRAINING_WINDOW_EVENTS = 30_000
QUICK_TRAINING_WINDOW_EVENTS = 2_000
# Likewise the users whose answers the pipeline keeps for twin matching (TWINS_MAX_USERS, 50,000 by default, more
# than a soak's ~16,000 users): a bound the soak fills in its first ~2 minutes.
TWINS_WINDOW_USERS = 3_000
QUICK_TWINS_WINDOW_USERS = 300


def rss_series(samples: list[dict[str, Any]], service: str) -> tuple[list[float], list[float]]:
    minutes = [s["t"] / 60 for s in samples]
    mb = [s["rss_mb"][service] for s in samples]
    return minutes, mb


def memory_summary(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for service in SERVICES:
        minutes, mb = rss_series(samples, service)
        settled = [i for i, m in enumerate(minutes) if m >= minutes[-1] * WARMUP_SHARE]
        out[service] = {
            "start_mb": mb[0],
            "end_mb": mb[-1],
            "max_mb": max(mb),
            "slope_mb_per_min": slope(minutes, mb),
            "slope_after_warmup_mb_per_min": slope([minutes[i] for i in settled], [mb[i] for i in settled]),
            "baseline_slope_after_warmup_mb_per_min": baseline_slope(
                [minutes[i] for i in settled], [mb[i] for i in settled], min(BASELINE_BIN_MIN, minutes[-1] / 8 or 1.0)
            ),
        }
    return out


def plot(samples: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 3.6), dpi=100)
    for service in SERVICES:
        axis.plot(*rss_series(samples, service), label=service, marker=".", linewidth=1)
    axis.set_xlabel("minutes since the grader started")
    axis.set_ylabel("RSS (MB)")
    axis.set_title(f"RSS during the soak (grader, {CONCURRENCY} concurrent users)")
    axis.set_ylim(bottom=0, top=max(max(s["rss_mb"].values()) for s in samples) * 1.25)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def run(ctx: Context) -> dict[str, Any]:
    duration_s = ctx.pick(600, 45)
    users = int(duration_s * USERS_PER_S)
    interval_s = ctx.pick(10, 3)
    window = ctx.pick(TRAINING_WINDOW_EVENTS, QUICK_TRAINING_WINDOW_EVENTS)
    twins_window = ctx.pick(TWINS_WINDOW_USERS, QUICK_TWINS_WINDOW_USERS)
    # The deployment default retrain schedule: a soak includes retrains.
    extra_env = {
        "RETRAIN_INTERVAL_S": "30",
        "TRAINING_MAX_EVENTS": str(window),
        "TWINS_MAX_USERS": str(twins_window),
    }
    with BenchStack("soak", extra_env=extra_env) as stack, tempfile.TemporaryDirectory() as tmp:
        stack.start("pipeline", "recommendations", "event_collector")
        command = [
            sys.executable, "-m", "grader", "run", "--recs", stack.url("recommendations"), "--events",
            stack.url("event_collector"), "--users", str(users), "--concurrency", str(CONCURRENCY),
            "--out", tmp, "--no-progress",
        ]  # fmt: skip
        log(f"soak: grader with {users:,} users at {CONCURRENCY} concurrent (~{duration_s / 60:.0f} min)")
        with (Path(tmp) / "grader.log").open("wb") as grader_log:
            grader = subprocess.Popen(command, cwd=ROOT, env=stack.env(), stdout=grader_log, stderr=subprocess.STDOUT)
        started = time.monotonic()
        samples: list[dict[str, Any]] = []
        try:
            while True:
                samples.append({
                    "t": time.monotonic() - started,
                    "rss_mb": {name: stack.services[name].rss_bytes() / 2**20 for name in SERVICES},
                })  # fmt: skip
                if grader.poll() is not None:
                    break
                time.sleep(interval_s)
        finally:
            if grader.poll() is None:
                grader.terminate()
                grader.wait(30)
        if grader.returncode != 0:
            raise RuntimeError(
                f"the grader exited with {grader.returncode}:\n{(Path(tmp) / 'grader.log').read_text()[-3000:]}"
            )
        summary = json.loads((Path(tmp) / "summary.json").read_text())
        pipeline_status = httpx.get(f"{stack.url('pipeline')}/status", timeout=10).json()
    plot_path = RESULTS_DIR / ("quick/soak_rss.png" if ctx.quick else "soak_rss.png")
    plot(samples, plot_path)
    memory = memory_summary(samples)
    errors = summary["errors"]
    flat = all(abs(m["baseline_slope_after_warmup_mb_per_min"]) <= FLAT_MB_PER_MIN for m in memory.values())
    load_min = summary["load_duration_s"] / 60
    long_enough = load_min >= duration_s / 60
    slopes = ", ".join(f"{k} {v['baseline_slope_after_warmup_mb_per_min']:+.2f}" for k, v in memory.items())
    return {
        "settings": {
            "users": users,
            "concurrency": CONCURRENCY,
            "sample_interval_s": interval_s,
            "retrain_interval_s": 30,
            "training_max_events": window,
            "twins_max_users": twins_window,
            "planned_s": duration_s,
        },
        "pipeline": {
            "events_applied": pipeline_status.get("events_applied"),
            "events_in_training_window": pipeline_status.get("events_in_training_window"),
            "twins": pipeline_status.get("twins"),
        },
        "grader": {
            "load_duration_s": summary["load_duration_s"],
            "errors": errors,
            "metrics": summary["metrics"],
            "score": summary["score"],
            "catalog_size": summary["catalog_size"],
        },
        "memory": memory,
        "samples": samples,
        "plot": str(plot_path.relative_to(ROOT)),
        "targets": [
            target("grader errors = 0", str(errors["total"]), errors["total"] == 0),
            target(f"load lasted ≥ {duration_s / 60:.1f} min", f"{load_min:.1f} min", long_enough),
            target(
                f"memory flat: baseline RSS trend within ±{FLAT_MB_PER_MIN:g} MB/min per service after the first "
                f"{WARMUP_SHARE:.0%} (pipeline training window {window:,} events)",
                f"{slopes} MB/min",
                flat,
            ),
        ],
    }


def _metric(metrics: dict[str, Any], *path: str) -> Any:
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _window_note(result: dict[str, Any]) -> str:
    window = result["settings"].get("training_max_events")
    if window is None:  # results recorded before the soak set a window
        return ""
    pipeline = result.get("pipeline", {})
    return (
        f", `TRAINING_MAX_EVENTS={window}`: at the end the pipeline had applied "
        f"{fmt(pipeline.get('events_applied'), 0)} events and kept the latest "
        f"{fmt(pipeline.get('events_in_training_window'), 0)} in memory for training" + _twins_note(result)
    )


def _twins_note(result: dict[str, Any]) -> str:
    twins_window = result["settings"].get("twins_max_users")
    twins = result.get("pipeline", {}).get("twins") or {}
    if twins_window is None or not twins:  # results recorded before twins
        return ""
    return (
        f"; `TWINS_MAX_USERS={twins_window}`: the twin book held {fmt(twins.get('users_in_book'), 0)} users at the "
        f"end, and {fmt(twins.get('lifts_published'), 0)} twin lifts were published"
    )


def render(result: dict[str, Any]) -> str:
    s, g = result["settings"], result["grader"]
    m = g["metrics"]
    latency = _metric(m, "latency_ms") or {}
    kinds = ", ".join(f"{k} {v}" for k, v in g["errors"].items() if k != "total")
    lines = [
        f"`python -m grader run --users {s['users']:,} --concurrency {s['concurrency']}` against a fresh stack "
        f"(pipeline retraining every {s['retrain_interval_s']} s when events arrived, MLflow unreachable"
        f"{_window_note(result)}); the grader's load phase lasted {g['load_duration_s'] / 60:.1f} min. "
        "RSS of each service process (psutil, "
        f'process and children) every {s["sample_interval_s"]:.0f} s. Slopes are over minutes; "after warm-up" '
        f"leaves out the first {WARMUP_SHARE:.0%} of the run; the baseline slope fits the minimum RSS of each "
        f"{BASELINE_BIN_MIN:g}-minute bin, so the pipeline's transient retrain allocations (every 30 s) do not "
        "tilt it.",
        "",
        f"Grader: errors {g['errors']['total']} ({kinds});"
        f" /recs latency mean {fmt(latency.get('mean_ms'), 1, ' ms')}, p95 {fmt(latency.get('p95_ms'), 1, ' ms')},"
        f" p99 {fmt(latency.get('p99_ms'), 1, ' ms')}; precision@10 {fmt(_metric(m, 'precision'), 4)}, "
        f"NDCG@10 {fmt(_metric(m, 'ndcg'), 4)}.",
        "",
        "| service | RSS start | RSS end | RSS max | least-squares slope, whole run | least-squares slope after "
        "warm-up | baseline slope after warm-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for service, mem in result["memory"].items():
        lines.append(
            f"| {service} | {mem['start_mb']:.0f} MB | {mem['end_mb']:.0f} MB | {mem['max_mb']:.0f} MB | "
            f"{mem['slope_mb_per_min']:+.2f} MB/min | {mem['slope_after_warmup_mb_per_min']:+.2f} MB/min | "
            f"{mem['baseline_slope_after_warmup_mb_per_min']:+.2f} MB/min |"
        )
    lines += ["", f"![RSS of the services over the soak]({result['plot']})"]
    return "\n".join(lines)
