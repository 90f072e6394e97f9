"""Consumption while the real pipeline retrains on a large history (part of the ``retrain`` benchmark).

A real pipeline process starts on a synthetic history written into its Redis stream beforehand (it rebuilds its
in-memory log from the stream on start). A separate process feeds ``/interact`` at a steady rate (open loop)
through the real collector. Sampled every 0.25 s: events the pipeline applied (``/status``), the queue depth
and the collector's accepted requests and server-side latency (its ``/metrics``). The timeline:

1. steady feed, no training (the "before" window);
2. a burst of messages published straight to the queue, to measure how fast the idle pipeline drains a backlog;
3. ``POST /retrain``; steady feed while it trains (the "during" window);
4. a second burst while it still trains: how fast the training pipeline drains a backlog;
5. the retrain answers; a short "after" window.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from benchmarks import data, loadgen
from benchmarks.base import log
from benchmarks.metrics import http_totals_async
from benchmarks.report import ROOT
from benchmarks.stack import AMQP_URL, BenchStack
from benchmarks.stats import rate
from recsys_core.schemas import EventMessage

SAMPLE_S = 0.25


@dataclass(frozen=True, slots=True)
class Plan:
    history_events: int
    users: int
    items: int
    feed_rate: float
    burst: int
    steady_s: float
    after_s: float
    # The pipeline's TRAINING_MAX_EVENTS: 0 trains on the whole history, as the retrain target asks.
    training_max_events: int = 0


async def _sample(stack: BenchStack, stop: asyncio.Event, samples: list[dict[str, Any]]) -> None:
    pipeline, collector = stack.url("pipeline"), stack.url("event_collector")
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection, httpx.AsyncClient(timeout=30) as client:
        channel = await connection.channel()
        while not stop.is_set():
            at = time.monotonic()
            status = (await client.get(f"{pipeline}/status")).json()
            declared = await channel.declare_queue(stack.queue, passive=True)
            seconds, accepted = await http_totals_async(client, collector, "POST", "/interact")
            samples.append({
                "t": at,
                "applied": status["events_applied"],
                "training": status["training_in_progress"],
                "depth": declared.declaration_result.message_count or 0,
                "accepted": accepted,
                "accepted_seconds": seconds,
            })  # fmt: skip
            await asyncio.sleep(SAMPLE_S)


def _burst_messages(stack: BenchStack, n: int, items: list[str]) -> list[aio_pika.Message]:
    generation = int(stack.redis.get(f"{stack.prefix}:generation") or 0)
    now = time.time()
    messages = []
    for i in range(n):
        event = EventMessage(
            generation=generation,
            user_id=f"burst-u{i % 5000}",
            item_ids=[items[i % len(items)]],
            actions=["like"],
            timestamp=now,
            received_at=now,
        )
        messages.append(aio_pika.Message(body=event.model_dump_json().encode(), message_id=event.message_id))
    return messages


async def _burst(stack: BenchStack, messages: list[aio_pika.Message]) -> float:
    """Publish prepared messages straight to the events queue (no collector, no confirms), 500 at a time, so the
    backlog builds faster than the pipeline drains it; returns when all are out."""
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        for start in range(0, len(messages), 500):
            chunk = messages[start : start + 500]
            await asyncio.gather(*(channel.default_exchange.publish(m, routing_key=stack.queue) for m in chunk))
    return time.monotonic()


async def _drained(samples: list[dict[str, Any]], since: float, retrain: asyncio.Task[Any] | None) -> float:
    """The time of the first sample after ``since`` with an empty queue (or when the retrain ends first)."""
    while True:
        ready = [s for s in samples if s["t"] > since + SAMPLE_S and s["depth"] == 0]
        if ready:
            return float(ready[0]["t"])
        if retrain is not None and retrain.done():
            return time.monotonic()
        await asyncio.sleep(SAMPLE_S / 2)


async def _timeline(stack: BenchStack, plan: Plan, items: list[str]) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(stack, stop, samples))
    marks: dict[str, float] = {"start": time.monotonic()}
    await asyncio.sleep(plan.steady_s)
    messages = _burst_messages(stack, plan.burst, items)
    marks["burst_idle"] = time.monotonic()
    marks["burst_idle_published"] = await _burst(stack, messages)
    marks["burst_idle_drained"] = await _drained(samples, marks["burst_idle"], None)
    await asyncio.sleep(3)
    async with httpx.AsyncClient(timeout=3600) as client:
        marks["retrain_start"] = time.monotonic()
        retrain = asyncio.create_task(client.post(f"{stack.url('pipeline')}/retrain"))
        done, _ = await asyncio.wait({retrain}, timeout=plan.steady_s)
        marks["steady_during_end"] = time.monotonic()
        if not done:
            messages = _burst_messages(stack, plan.burst, items)
            marks["burst_training"] = time.monotonic()
            marks["burst_training_published"] = await _burst(stack, messages)
            marks["burst_training_drained"] = await _drained(samples, marks["burst_training"], retrain)
        response = await retrain
        marks["retrain_end"] = time.monotonic()
    await asyncio.sleep(plan.after_s)
    stop.set()
    await sampler
    return {"samples": samples, "marks": marks, "outcome": response.json()}


def _window(samples: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    inside = [s for s in samples if start <= s["t"] <= end]
    applied = [(s["t"], float(s["applied"])) for s in samples]
    accepted = [(s["t"], float(s["accepted"])) for s in samples]
    latency = None
    if len(inside) >= 2:
        first, last = inside[0], inside[-1]
        requests = last["accepted"] - first["accepted"]
        if requests > 0:
            latency = (last["accepted_seconds"] - first["accepted_seconds"]) / requests * 1000
    return {
        "seconds": end - start,
        "consumed_per_s": rate(applied, start, end),
        "accepted_per_s": rate(accepted, start, end),
        "collector_mean_ms": latency,
        "max_queue_depth": max((s["depth"] for s in inside), default=None),
        "training_samples": sum(1 for s in inside if s["training"]),
        "samples": len(inside),
    }


def _feeder_command(url: str, feed_rate: float, items_file: Path) -> list[str]:
    """A steady feed of /interact: wrk with a 100 ms pause per connection between requests (about 10 requests/s
    per connection), else the httpx generator in open loop. Both print their summary when interrupted."""
    if loadgen.wrk_available():
        connections = max(1, round(feed_rate / 10))
        return [
            "wrk", "-t1", f"-c{connections}", "-d3600s", "--timeout", "5s", "-s", str(loadgen.LUA_DIR / "feed.lua"),
            url, "--", "100000", "5", str(items_file), "live", "100",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "benchmarks.httpload", "--url", url, "--kind", "interact", "--rate", str(feed_rate),
        "--duration", "3600", "--items", str(items_file), "--prefix", "live",
    ]  # fmt: skip


def measure(plan: Plan) -> dict[str, Any]:
    columns = data.synthetic_columns(plan.history_events, plan.users, plan.items, seed=11)
    with (
        BenchStack(
            "retrain-live",
            extra_env={"RETRAIN_INTERVAL_S": "3600", "TRAINING_MAX_EVENTS": str(plan.training_max_events)},
        ) as stack,
        tempfile.TemporaryDirectory() as tmp,
    ):
        stack.start("recommendations")
        catalog = data.synthetic_catalog(plan.items)
        data.add_items(stack.url("recommendations"), catalog, batch=5_000)
        started = time.perf_counter()
        data.inject_stream(stack.redis, stack.prefix, columns)
        inject_s = time.perf_counter() - started
        started = time.perf_counter()
        stack.start("pipeline", timeout_s=1800)  # it rebuilds its memory from the stream before it answers
        load_s = time.perf_counter() - started
        stack.start("event_collector")
        log(
            f"retrain: {plan.history_events:,} events injected in {inject_s:.0f}s, "
            f"pipeline loaded them in {load_s:.0f}s"
        )
        item_ids = [item.item_id for item in catalog]
        items_file = Path(tmp) / "items.txt"
        items_file.write_text("\n".join(item_ids) + "\n")
        feeder = subprocess.Popen(
            _feeder_command(stack.url("event_collector"), plan.feed_rate, items_file),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            time.sleep(3)  # the feed settles
            run = asyncio.run(_timeline(stack, plan, item_ids))
        finally:
            feeder.send_signal(signal.SIGINT if loadgen.wrk_available() else signal.SIGTERM)
            out, _ = feeder.communicate(timeout=60)
    feed = next((json.loads(line[11:]) for line in out.splitlines() if line.startswith("BENCH_JSON ")), None)
    samples, marks = run["samples"], run["marks"]
    windows = {
        "before": _window(samples, marks["start"], marks["burst_idle"]),
        "during": _window(samples, marks["retrain_start"], marks["steady_during_end"]),
        "after": _window(samples, marks["retrain_end"], marks["retrain_end"] + plan.after_s),
        "burst_idle": _window(samples, marks["burst_idle"], marks["burst_idle_drained"]),
    }
    if "burst_training" in marks:
        windows["burst_training"] = _window(samples, marks["burst_training"], marks["burst_training_drained"])
    origin = marks["retrain_start"]
    return {
        "plan": asdict(plan),
        "inject_s": inject_s,
        "pipeline_load_s": load_s,
        "retrain_s": marks["retrain_end"] - marks["retrain_start"],
        "retrain_outcome": run["outcome"],
        "windows": windows,
        "marks_s": {name: round(at - origin, 2) for name, at in marks.items()},
        "timeline": [
            {"t": round(s["t"] - origin, 2), "applied": s["applied"], "depth": s["depth"], "training": s["training"]}
            for s in samples
        ],
        "feeder_tool": "wrk" if loadgen.wrk_available() else "httpload",
        "feeder": None if feed is None else {
            "requests": feed["requests"],
            "errors": sum(feed["errors"].values()),
            "latency_ms_p50": feed["latency_us"]["p50"] / 1000,
            "latency_ms_p99": feed["latency_us"]["p99"] / 1000,
        },
    }  # fmt: skip
