"""4. Retrain time (``pipeline.training.fit_model``) and consumption while the real pipeline trains."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import psutil

from benchmarks import data, live_training
from benchmarks.base import Context, log, target
from benchmarks.httpload import MAX_IN_FLIGHT
from benchmarks.report import fmt
from benchmarks.stats import meets
from pipeline.runtime import OFFLINE_EVALUATION_MAX_EVENTS
from pipeline.state import TrainingColumns
from pipeline.training import fit_model
from recsys_core.algorithms.factors import BPRParams
from recsys_core.settings import Settings

NAME = "retrain"
TITLE = "Retrain time, and consumption while the pipeline trains"
SMALL_TARGET_S = 5.0
BIG_TARGET_S = 300.0


def params() -> BPRParams:
    """The pipeline's BPR settings (``Settings`` defaults, the ones every service starts with)."""
    s = Settings()
    return BPRParams(
        s.bpr_factors, s.bpr_iterations, s.bpr_learning_rate, s.bpr_regularization, s.bpr_threads, s.random_seed
    )


class PeakRss:
    """Samples this process's RSS in a thread; ``peak_mb`` after ``stop``."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval_s,), daemon=True)
        self._thread.start()

    def _sample(self, interval_s: float) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            self._stop.wait(interval_s)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def timed_fit(columns: TrainingColumns, catalog_ids: list[str], evaluate: bool) -> dict[str, Any]:
    settings = Settings()
    started = time.perf_counter()
    output = fit_model(columns, catalog_ids, params(), settings.holdout_fraction, evaluate)
    seconds = time.perf_counter() - started
    assert output is not None, "no likes to train on"
    return {
        "seconds": seconds,
        "evaluate": evaluate,
        "users": output.n_users,
        "items": output.n_items,
        "likes": output.n_likes,
        "events": output.n_events,
        "offline_ndcg_at_10": None if output.offline is None else output.offline.ndcg_at_10,
    }


def movielens_fits(repeats: int) -> dict[str, Any]:
    columns = data.movielens_columns()
    catalog_ids = [item.item_id for item in data.movielens_catalog()]
    with_evaluation = [timed_fit(columns, catalog_ids, evaluate=True) for _ in range(repeats)]
    fit_only = timed_fit(columns, catalog_ids, evaluate=False)
    return {"with_evaluation": with_evaluation, "fit_only": fit_only}


def synthetic_fit(n_events: int, n_users: int, n_items: int) -> dict[str, Any]:
    started = time.perf_counter()
    columns = data.synthetic_columns(n_events, n_users, n_items)
    generated_s = time.perf_counter() - started
    catalog_ids = columns.item_ids
    evaluate = n_events <= OFFLINE_EVALUATION_MAX_EVENTS  # what the pipeline would do with this many events
    peak = PeakRss()
    result = timed_fit(columns, catalog_ids, evaluate)
    result |= {"generate_s": generated_s, "peak_rss_mb": peak.stop(), "n_users_drawn": n_users}
    return result


def run(ctx: Context) -> dict[str, Any]:
    log("retrain: ml-latest-small through fit_model")
    small = movielens_fits(ctx.count(3, 1))
    big_shape = (ctx.count(10_000_000, 300_000), ctx.count(200_000, 20_000), ctx.count(20_000, 2_000))
    log(f"retrain: synthetic {big_shape[0]:,} events x {big_shape[1]:,} users x {big_shape[2]:,} items")
    big = synthetic_fit(*big_shape)
    plan = live_training.Plan(
        # The same shape as the synthetic fit above, through the real pipeline (~1.5 GB of Redis stream).
        history_events=big_shape[0],
        users=big_shape[1],
        items=big_shape[2],
        feed_rate=ctx.pick(200, 50),
        burst=ctx.count(20_000, 2_000),
        steady_s=ctx.pick(20, 5),
        after_s=ctx.pick(10, 3),
    )
    log(f"retrain: the real pipeline with a {plan.history_events:,}-event history, fed while it trains")
    live = live_training.measure(plan)
    small_worst = max(fit["seconds"] for fit in small["with_evaluation"])
    windows = live["windows"]
    before, during = windows["before"]["consumed_per_s"], windows["during"]["consumed_per_s"]
    arrived = windows["during"]["accepted_per_s"]
    keeps_up = None if during is None or arrived is None else during >= 0.9 * arrived
    return {
        "settings": {"bpr": asdict(params())},
        "movielens": small,
        "synthetic": big,
        "live": live,
        "targets": [
            target(f"ml-latest-small retrain (fit_model as the pipeline runs it) ≤ {SMALL_TARGET_S:.0f} s",
                   fmt(small_worst, 2, " s (worst of runs)"), meets(small_worst, SMALL_TARGET_S, False)),
            target(f"{big['events']:,}-event retrain ≤ {BIG_TARGET_S / 60:.0f} min",
                   fmt(big["seconds"], 1, " s"), meets(big["seconds"], BIG_TARGET_S, False)),
            target(f"retrain in the real pipeline on its {live['plan']['history_events']:,}-event history "
                   f"≤ {BIG_TARGET_S / 60:.0f} min", fmt(live["retrain_s"], 1, " s"),
                   meets(live["retrain_s"], BIG_TARGET_S, False)),
            target("consumption goes on while the pipeline trains: it consumes ≥ 90% of what the collector accepts",
                   f"{fmt(during, 0)} consumed vs {fmt(arrived, 0)} accepted events/s (before training: "
                   f"{fmt(before, 0)} consumed)", keeps_up),
        ],
    }  # fmt: skip


def render(result: dict[str, Any]) -> str:
    small, big, live = result["movielens"], result["synthetic"], result["live"]
    bpr = result["settings"]["bpr"]
    evaluated = small["with_evaluation"]
    lines = [
        f"BPR settings as the pipeline runs them: {bpr['factors']} factors, {bpr['iterations']} iterations, "
        f"{bpr['threads']} thread (`BPR_THREADS`). Times are wall-clock seconds of "
        "`pipeline.training.fit_model` (latest answer per user-item pair, likes matrix, BPR fit, item "
        "neighbours; with the offline evaluation a second BPR fit on 90% of the likes first).",
        "",
        "| data | events | users | items | likes | evaluation | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for fit in [*evaluated, small["fit_only"]]:
        lines.append(
            f"| ml-latest-small (rating ≥ 4 = like) | {fit['events']:,} | {fit['users']:,} | {fit['items']:,} | "
            f"{fit['likes']:,} | {'yes' if fit['evaluate'] else 'no'} | {fit['seconds']:.2f} |"
        )
    lines += [
        f"| synthetic, popularity-skewed | {big['events']:,} | {big['users']:,} (of {big['n_users_drawn']:,}) | "
        f"{big['items']:,} | {big['likes']:,} | {'yes' if big['evaluate'] else 'no (as the pipeline, > 2M events)'}"
        f" | {big['seconds']:.1f} |",
        "",
        f"The synthetic fit ran in the benchmark process (peak RSS {big['peak_rss_mb']:,.0f} MB; generating the "
        f"events took {big['generate_s']:.1f} s, not counted).",
        "",
    ]
    lines += render_live(live)
    return "\n".join(lines)


def _evaluation_note(history_events: int) -> str:
    if history_events <= OFFLINE_EVALUATION_MAX_EVENTS:
        return f"with the offline evaluation since the history has ≤ {OFFLINE_EVALUATION_MAX_EVENTS:,} events"
    return f"without the offline evaluation, which the pipeline skips above {OFFLINE_EVALUATION_MAX_EVENTS:,} events"


def feeder_note(live: Mapping[str, Any]) -> str:
    """How the steady feed was generated: ``live_training._feeder_command`` falls back to httpload without wrk."""
    rate, tool = live["plan"]["feed_rate"], live.get("feeder_tool")
    if tool == "wrk":
        return f"wrk: {max(1, round(rate / 10))} connections, each pausing 100 ms between requests"
    if tool == "httpload":
        return (
            f"`benchmarks.httpload` in open loop: a request started every {1000 / rate:.0f} ms, up to "
            f"{MAX_IN_FLIGHT} in flight"
        )
    return "the result does not record whether wrk or `benchmarks.httpload` generated it"


def render_live(live: dict[str, Any]) -> list[str]:
    plan, windows, outcome = live["plan"], live["windows"], live["retrain_outcome"]
    lines = [
        f"**Consumption while training.** A real pipeline process started on a {plan['history_events']:,}-event "
        f"synthetic history ({plan['users']:,} users × {plan['items']:,} items) written into its Redis stream "
        f"beforehand (writing took {live['inject_s']:.0f} s; the pipeline rebuilt its in-memory log from the stream "
        f"in {live['pipeline_load_s']:.0f} s). A separate process fed `/interact` through the real collector at a "
        f"steady ~{plan['feed_rate']:.0f} events/s throughout ({feeder_note(live)}). "
        f"`POST /retrain` ran for {live['retrain_s']:.1f} s "
        f"(of which `fit_model` {fmt(outcome.get('train_seconds'), 1, ' s')}: likes matrix, BPR fit and item "
        f"neighbours, {_evaluation_note(plan['history_events'])}). Bursts of {plan['burst']:,} messages were published "
        "straight to the queue once before and once during the retrain, to see how fast the pipeline drains a "
        "backlog. Sampled every 0.25 s:",
        "",
        "| window | seconds | consumed events/s | accepted by the collector /s | collector mean latency | "
        "max queue depth |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "before": "steady feed, no training",
        "during": "steady feed, training",
        "after": "steady feed, after training",
        "burst_idle": "backlog drain, no training",
        "burst_training": "backlog drain, training",
    }
    for key, label in names.items():
        w = windows.get(key)
        if w is None:
            continue
        lines.append(
            f"| {label} | {w['seconds']:.1f} | {fmt(w['consumed_per_s'], 0)} | {fmt(w['accepted_per_s'], 0)} | "
            f"{fmt(w['collector_mean_ms'], 1, ' ms')} | {w['max_queue_depth']} |"
        )
    feeder = live.get("feeder")
    if feeder:
        lines += [
            "",
            f"The feeder sent {feeder['requests']:,} events with {feeder['errors']} errors; its /interact latency "
            f"over the whole run: p50 {feeder['latency_ms_p50']:.1f} ms, p99 {feeder['latency_ms_p99']:.1f} ms.",
        ]
    return lines
