"""Closed-loop HTTP load: wrk (Debian's) with a Lua script, or benchmarks.httpload in its own process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.report import ROOT, load_average
from benchmarks.stats import ratio

LUA_DIR = Path(__file__).resolve().parent / "lua"
MARKER = "BENCH_JSON "


@dataclass(frozen=True, slots=True)
class Load:
    url: str  # base URL of the service, e.g. http://127.0.0.1:5001
    kind: str  # "recs" or "interact"
    connections: int
    duration_s: float
    pool: int = 100_000
    seed: int = 42
    items_file: Path | None = None
    user_prefix: str = "bench"


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _command(load: Load) -> list[str]:
    duration = f"{max(1, round(load.duration_s))}s"
    if wrk_available():
        args = [str(load.pool), str(load.seed)]
        if load.kind == "interact":
            assert load.items_file is not None, "interact load needs an items file"
            args.append(str(load.items_file))
        args.append(load.user_prefix)
        # One wrk thread: on two cores the server, Redis and RabbitMQ need the rest.
        return [
            "wrk", "-t1", f"-c{load.connections}", f"-d{duration}", "--timeout", "5s",
            "-s", str(LUA_DIR / f"{load.kind}.lua"), load.url, "--", *args,
        ]  # fmt: skip
    command = [
        sys.executable, "-m", "benchmarks.httpload", "--url", load.url, "--kind", load.kind,
        "--connections", str(load.connections), "--duration", str(load.duration_s),
        "--pool", str(load.pool), "--seed", str(load.seed), "--prefix", load.user_prefix,
    ]  # fmt: skip
    if load.items_file is not None:
        command += ["--items", str(load.items_file)]
    return command


def parse_output(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            return dict(json.loads(line[len(MARKER) :]))
    raise RuntimeError(f"the load generator printed no {MARKER.strip()} line:\n{stdout[-2000:]}")


def normalize(raw: dict[str, Any]) -> dict[str, Any]:
    """Requests/s, error count and latencies in ms from the generator's raw JSON."""
    seconds = raw["duration_us"] / 1e6
    errors = raw["errors"]
    latency = raw["latency_us"]
    return {
        "requests": raw["requests"],
        "duration_s": round(seconds, 2),
        "rps": ratio(raw["requests"], seconds),
        "errors": int(sum(errors.values())),
        "error_kinds": errors,
        "latency_ms": {key: latency[key] / 1000 for key in ("mean", "p50", "p90", "p95", "p99", "p999", "max")},
    }


def run(load: Load) -> dict[str, Any]:
    command = _command(load)
    before = load_average()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=load.duration_s + 120)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    result = normalize(parse_output(done.stdout))
    result |= {
        "tool": "wrk" if command[0] == "wrk" else "httpload",
        "connections": load.connections,
        "load_before": before,
        "load_after": load_average(),
    }
    return result
