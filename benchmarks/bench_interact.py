"""2. /interact (publisher confirms) against a bare FastAPI endpoint that does one confirmed publish."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from benchmarks import data, loadgen
from benchmarks.base import Context, log, target
from benchmarks.metrics import counter_totals
from benchmarks.report import fmt
from benchmarks.stack import AMQP_URL, BenchStack
from benchmarks.stats import meets, ratio

NAME = "interact"
TITLE = "/interact with publisher confirms vs a bare confirmed-publish endpoint"
CONNECTIONS = (16, 64)
USER_POOL = 200_000
RATIO_TARGET = 0.8
DRAIN_TIMEOUT_S = 300.0
PAUSED = "interact-paused"


def pipeline_status(pipeline_url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{pipeline_url}/status", timeout=10).json())


def events_applied(pipeline_url: str) -> int:
    return int(pipeline_status(pipeline_url)["events_applied"])


def published(collector_url: str) -> tuple[float, ...]:
    """(events, messages) the collector has published so far."""
    return counter_totals(collector_url, "collector_events_published", "collector_messages_published")


def unsettled(status: Mapping[str, Any], messages_published: float) -> int:
    """AMQP messages the collector had confirmed that the pipeline (``status``: its /status) has not settled (stored
    and acked, or dead-lettered) yet. Unlike RabbitMQ's queue depth, which counts ready messages only, this includes
    the up to ``PREFETCH_COUNT`` messages delivered to the pipeline but not yet acked: it still works on those.

    Both counters are per process; the benchmark starts the collector and the pipeline on a fresh queue that nothing
    else publishes to, so their difference is the whole backlog."""
    settled = int(status["messages_consumed"]) + int(status["messages_rejected"])
    return int(messages_published) - settled


def backlog(collector_url: str, pipeline_url: str) -> int:
    # The pipeline is read first: a message it settles between the two reads then counts as unsettled, so the
    # figure can only err high and a drain wait only err long, never end while the pipeline still works.
    status = pipeline_status(pipeline_url)
    return unsettled(status, published(collector_url)[1])


def wait_drained(pending: Callable[[], int], timeout_s: float, interval_s: float = 0.5) -> float | None:
    """Seconds until ``pending()`` (the unsettled messages) is 0 (None if it was not within the timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if pending() <= 0:
            return time.monotonic() - started
        time.sleep(interval_s)
    return None


async def _purge(queue: str) -> int:
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        result = await declared.purge()
        return int(result.message_count or 0)


def run(ctx: Context) -> dict[str, Any]:
    warmup_s = ctx.pick(10, 2)
    measure_s = ctx.pick(30, 5)
    with (
        BenchStack("interact", extra_env={"RETRAIN_INTERVAL_S": "3600"}) as stack,
        tempfile.TemporaryDirectory() as tmp,
    ):
        stack.start("recommendations")
        catalog = data.movielens_catalog()
        data.add_items(stack.url("recommendations"), catalog)
        items_file = Path(tmp) / "items.txt"
        items_file.write_text("\n".join(item.item_id for item in catalog) + "\n")
        stack.start("pipeline", "event_collector", "bare")
        collector, pipeline = stack.url("event_collector"), stack.services["pipeline"].pid
        pipeline_url = stack.url("pipeline")

        def pending() -> int:
            return backlog(collector, pipeline_url)

        urls = {"interact": collector, PAUSED: collector, "bare": stack.url("bare")}

        def load(name: str, connections: int, seconds: float, seed: int) -> dict[str, Any]:
            spec = loadgen.Load(urls[name], "interact", connections, seconds, USER_POOL, seed, items_file, name)
            return loadgen.run(spec)

        for name in ("interact", "bare"):
            log(f"interact: warm-up {name} for {warmup_s:.0f}s")
            load(name, 16, warmup_s, seed=1)
        if wait_drained(pending, DRAIN_TIMEOUT_S) is None:
            raise RuntimeError(f"the pipeline did not work off the warm-up's messages in {DRAIN_TIMEOUT_S:.0f} s")
        asyncio.run(_purge(stack.bare_queue))
        runs: dict[str, dict[str, Any]] = {}
        for connections in CONNECTIONS:
            for name in urls:  # interleaved, so a disturbance hits every variant alike
                log(f"interact: {name} at {connections} connections for {measure_s:.0f}s")
                status_before = pipeline_status(pipeline_url)
                published_before = published(collector)
                if name == PAUSED:
                    os.kill(pipeline, signal.SIGSTOP)
                try:
                    result = load(name, connections, measure_s, seed=connections)
                    # Read before SIGCONT: a resumed pipeline settles messages within milliseconds.
                    published_after = published(collector)
                finally:
                    if name == PAUSED:
                        os.kill(pipeline, signal.SIGCONT)
                if name == "bare":
                    result["purged_after_run"] = asyncio.run(_purge(stack.bare_queue))
                else:
                    # For the paused run read just after SIGCONT, so it may include the resumed pipeline's first batch.
                    result["consumed_during_run"] = events_applied(pipeline_url) - int(status_before["events_applied"])
                    events_after, messages_after = published_after
                    events, messages = events_after - published_before[0], messages_after - published_before[1]
                    # Group commit: how many events each message the collector published held, on average.
                    result["events_per_message"] = events / messages if messages else None
                    # Published but unsettled: ready in the queue plus delivered to the pipeline but not yet acked. The
                    # stopped pipeline settled nothing since status_before (it had drained), so that read stands.
                    after_stop = unsettled(status_before, messages_after) if name == PAUSED else None
                    result["backlog_after_run"] = pending() if after_stop is None else after_stop
                    # The next measurement starts only once the pipeline caught up, so its backlog cannot steal CPU.
                    result["drain_s"] = wait_drained(pending, DRAIN_TIMEOUT_S)
                runs[f"{name}@{connections}"] = result
    ratios = {c: ratio(runs[f"interact@{c}"]["rps"], runs[f"bare@{c}"]["rps"]) for c in CONNECTIONS}
    solo = {c: ratio(runs[f"{PAUSED}@{c}"]["rps"], runs[f"bare@{c}"]["rps"]) for c in CONNECTIONS}
    return {
        "settings": {
            "warmup_s": warmup_s,
            "measure_s": measure_s,
            "user_pool": USER_POOL,
            "tool": runs["interact@16"]["tool"],
            "catalog_size": len(catalog),
            # What "drained" meant: every published message settled (results before this field: none ready).
            "drained_when": "settled",
        },
        "runs": runs,
        "ratios": {str(c): r for c, r in ratios.items()},
        "ratios_pipeline_paused": {str(c): r for c, r in solo.items()},
        "targets": [
            *(
                target(
                    f"throughput interact/bare at {c} connections ≥ {RATIO_TARGET} (pipeline consuming)",
                    fmt(r, 2),
                    meets(r, RATIO_TARGET),
                )
                for c, r in ratios.items()
            ),
            *(
                target(
                    f"the same with the pipeline paused (collector alone) at {c} connections",
                    fmt(r, 2),
                    meets(r, RATIO_TARGET),
                )
                for c, r in solo.items()
            ),
        ],
    }


def drain_note(result: Mapping[str, Any]) -> str:
    """What "drained", "backlog after" and "drained in" meant in this result (older results waited for less)."""
    if result["settings"].get("drained_when") != "settled":
        return (
            "This result predates the settled-message drain: after each run the benchmark waited only until the "
            "events queue had no *ready* messages, while the pipeline could still hold up to 512 delivered but "
            'unacknowledged ones (`PREFETCH_COUNT`). So "backlog after" (the ready count) is up to 512 messages '
            'short, "drained in" ends early, and a measurement could start while the pipeline still worked '
            "through the previous one's messages (the paused 64-connection row's \"pipeline consumed\" is likely "
            "such leftovers)."
        )
    timed_out = any(run.get("drain_s") is None for key, run in result["runs"].items() if not key.startswith("bare@"))
    return (
        '"Backlog after" is the messages the collector published that the pipeline had not yet settled (stored '
        'and acked) when the load stopped, those delivered to it but unacked included; "drained in" is how long '
        "it then took to settle them all, and only then did the next measurement start"
        + (f' ("—": not within {DRAIN_TIMEOUT_S:.0f} s, and the next one started anyway). ' if timed_out else ". ")
        + 'The paused rows\' backlog is read while the pipeline is still stopped, their "pipeline consumed" just '
        "after SIGCONT, so it may include the first batch the resumed pipeline applied."
    )


def render(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"Closed-loop load from {s['tool']} (1 thread), {s['warmup_s']:.0f} s warm-up per endpoint, then "
        f"{s['measure_s']:.0f} s per measurement, interleaved. Each request is one like (or, 1 in 4, a dislike) "
        f"of a random MovieLens item by a random user of {s['user_pool']:,}. `interact` is the real collector "
        "(persistent messages, publisher confirms, 200 after the confirm of the message holding the event; "
        "events that arrive while `AMQP_PUBLISH_MAX_IN_FLIGHT` messages await their confirm leave together, "
        '"events per message" says how many on average) with the real pipeline consuming its '
        "queue on the same two cores; `bare` is `benchmarks/bare_app.py`: FastAPI publishing the raw body as "
        "one persistent message on one confirming aio-pika channel to a queue nobody consumes (purged after "
        "each run). `interact-paused` is the collector with the pipeline process stopped (SIGSTOP) for the run, so "
        "its queue fills like the bare one and the collector has the CPU to itself (SIGCONT and a drain after). "
        f"{drain_note(result)}",
        "",
        "| endpoint | connections | requests/s | p50 ms | p95 ms | p99 ms | errors | events per message | "
        "pipeline consumed | backlog after (messages) | drained in |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, run in result["runs"].items():
        name, connections = key.split("@")
        lat = run["latency_ms"]
        consumed = run.get("consumed_during_run")
        lines.append(
            f"| {name} | {connections} | {fmt(run['rps'], 0)} | {fmt(lat['p50'], 2)} | {fmt(lat['p95'], 2)} | "
            f"{fmt(lat['p99'], 2)} | {run['errors']} | "
            f"{fmt(run.get('events_per_message'), 1) if name != 'bare' else ''} | "
            f"{'' if consumed is None else f'{consumed:,}'} | "
            f"{run.get('backlog_after_run', '')} | {fmt(run.get('drain_s'), 1, ' s') if name != 'bare' else ''} |"
        )
    return "\n".join(lines)
