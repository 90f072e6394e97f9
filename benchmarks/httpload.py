"""A small async HTTP load generator (httpx), run in its own process: wrk's stand-in, and a paced feeder.

``python -m benchmarks.httpload --url URL --kind recs|interact [--connections C | --rate R] --duration S``
prints one ``BENCH_JSON {...}`` line with the same fields as the wrk Lua scripts (latencies in µs).

Closed loop (``--connections``): C workers, each sending its next request when the previous one answered.
Open loop (``--rate``): requests start on a fixed schedule, whatever the answers, up to 256 in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from benchmarks.stats import percentile

MAX_IN_FLIGHT = 256


class Recorder:
    def __init__(self) -> None:
        self.latencies_us: list[float] = []
        self.status_errors = 0
        self.socket_errors = 0
        self.bytes = 0


def make_request(kind: str, rng: random.Random, pool: int, items: Sequence[str], prefix: str) -> tuple[str, str, bytes]:
    user = f"{prefix}-u{rng.randint(1, pool)}"
    if kind == "recs":
        return "GET", f"/recs/{user}?k=10", b""
    action = "dislike" if rng.randint(1, 4) == 1 else "like"
    body = {"user_id": user, "item_ids": [rng.choice(items)], "actions": [action]}
    return "POST", "/interact", json.dumps(body).encode()


async def one(client: httpx.AsyncClient, recorder: Recorder, method: str, path: str, body: bytes) -> None:
    started = time.perf_counter()
    try:
        headers = {"content-type": "application/json"} if body else None
        response = await client.request(method, path, content=body or None, headers=headers)
    except httpx.HTTPError:
        recorder.socket_errors += 1
        return
    recorder.latencies_us.append((time.perf_counter() - started) * 1e6)
    recorder.bytes += len(response.content)
    if response.status_code >= 400:
        recorder.status_errors += 1


async def run(args: argparse.Namespace, items: Sequence[str]) -> dict[str, object]:
    rng = random.Random(args.seed)
    recorder = Recorder()
    limits = httpx.Limits(max_connections=args.connections or MAX_IN_FLIGHT)
    async with httpx.AsyncClient(base_url=args.url, timeout=args.timeout, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + args.duration

        def stop() -> None:  # SIGTERM ends the load early; the summary is still printed
            nonlocal deadline
            deadline = time.perf_counter()

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)
        if args.rate:
            in_flight: set[asyncio.Task[None]] = set()
            interval = 1.0 / args.rate
            next_at = started
            while next_at < deadline and time.perf_counter() < deadline:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval
                if len(in_flight) >= MAX_IN_FLIGHT:
                    recorder.socket_errors += 1  # counted as an error: the server fell too far behind
                    continue
                task = asyncio.create_task(
                    one(client, recorder, *make_request(args.kind, rng, args.pool, items, args.prefix))
                )
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.wait(in_flight)
        else:

            async def worker() -> None:
                while time.perf_counter() < deadline:
                    await one(client, recorder, *make_request(args.kind, rng, args.pool, items, args.prefix))

            await asyncio.gather(*(worker() for _ in range(args.connections)))
        elapsed = time.perf_counter() - started
    lat = recorder.latencies_us or [0.0]
    return {
        "requests": len(recorder.latencies_us) + recorder.socket_errors,
        "duration_us": int(elapsed * 1e6),
        "bytes": recorder.bytes,
        "errors": {
            "connect": recorder.socket_errors,
            "read": 0,
            "write": 0,
            "status": recorder.status_errors,
            "timeout": 0,
        },
        "latency_us": {
            "min": min(lat),
            "mean": sum(lat) / len(lat),
            "stdev": 0.0,
            "max": max(lat),
            **{f"p{q}".replace(".", ""): percentile(lat, q) for q in (50, 90, 95, 99, 99.9)},
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.httpload")
    parser.add_argument("--url", required=True)
    parser.add_argument("--kind", choices=("recs", "interact"), required=True)
    parser.add_argument("--connections", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second (open loop)")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--items", default=None, help="file of item ids, one a line (for --kind interact)")
    parser.add_argument("--prefix", default="bench", help="user id prefix")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    if not args.connections and not args.rate:
        parser.error("give --connections or --rate")
    items = Path(args.items).read_text().split() if args.items else []
    print("BENCH_JSON " + json.dumps(asyncio.run(run(args, items))), flush=True)


if __name__ == "__main__":
    main()
