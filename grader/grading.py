"""One grading run end to end: prepare the deployment, run the load, judge it, compute references and score."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import httpx
from rich.console import Console

from grader.ab import Covariates, GroupComparison, compare_groups
from grader.aggregate import MetricSummary, Window, per_user_table, summarize, windows_by_arrival
from grader.catalog import Catalog, build_catalog
from grader.config import K, RunConfig
from grader.deployment import (
    Experiment,
    GradingAborted,
    GroupLookup,
    check_health,
    cleanup,
    fetch_experiment,
    load_catalog,
    look_up_groups,
)
from grader.evaluation import CallOutcome, evaluate_user
from grader.progress import load_progress
from grader.reference import References, compute_references
from grader.runner import (
    INTERRUPTED,
    ProgressCallback,
    StopRequest,
    make_client,
    run_in_processes,
    run_users,
)
from grader.scoring import Score, hardml_score
from grader.simulation import Dataset, SimulatedUser, sample_users
from grader.traces import UserTrace
from recsys_core import movielens
from recsys_core.settings import Settings


@dataclass(frozen=True)
class GradeResult:
    config: RunConfig
    started_at: float
    load_started_at: float
    finished_at: float
    catalog: Catalog
    users: tuple[SimulatedUser, ...]
    traces: tuple[UserTrace, ...]
    outcomes: tuple[CallOutcome, ...]
    summary: MetricSummary
    score: Score
    references: References
    experiment: Experiment | None
    comparison: GroupComparison | None
    windows: tuple[Window, ...]
    group_lookup: GroupLookup = field(default_factory=GroupLookup)

    @property
    def load_duration_s(self) -> float:
        return self.finished_at - self.load_started_at

    @property
    def aborted(self) -> str | None:
        """Why the load stopped early, or None when every user made every call."""
        return next((trace.aborted for trace in self.traces if trace.aborted), None)


def load_dataset(settings: Settings) -> Dataset:
    try:
        path = movielens.locate(settings)
        return Dataset(movielens.load_movies(path), movielens.load_ratings(path))
    except (OSError, ValueError, RuntimeError, httpx.HTTPError) as exc:
        raise GradingAborted(f"cannot load MovieLens (set MOVIELENS_DIR): {type(exc).__name__}: {exc}") from exc


async def prepare_deployment(
    config: RunConfig, catalog: Catalog, console: Console, transport: httpx.AsyncBaseTransport | None
) -> Experiment | None:
    """Healthchecks, cleanup, the catalog; then what experiment (if any) the service runs."""
    async with make_client(1, config.request_timeout_s, transport) as client:
        await check_health(client, {"recommendations": config.recs_url, "event collector": config.events_url})
        await cleanup(client, config.recs_url, config.admin_token)
        await load_catalog(client, config.recs_url, catalog, config.add_items_batch, config.admin_token)
        console.log(f"catalog loaded: {len(catalog)} items")
        return await fetch_experiment(client, config.recs_url)


async def run_load(
    users: Sequence[SimulatedUser],
    config: RunConfig,
    on_call: ProgressCallback,
    transport: httpx.AsyncBaseTransport | None,
    stop: StopRequest | None = None,
) -> list[UserTrace]:
    if config.processes == 1:
        return await run_users(users, config, config.concurrency, on_call, transport, stop)
    if transport is not None:
        raise ValueError("an injected transport only works with processes=1")
    # The worker processes are waited for in a thread so this event loop stays responsive. When this coroutine is
    # cancelled (a second Ctrl-C: ``asyncio.run`` cancels the main task, then waits for that thread), the thread is
    # told to end the workers instead of letting them finish their calls in flight.
    abort = threading.Event()
    try:
        return await asyncio.to_thread(run_in_processes, users, config, on_call, stop, abort)
    except asyncio.CancelledError:
        abort.set()
        raise


@contextlib.contextmanager
def stop_on_interrupt(stop: StopRequest, console: Console) -> Iterator[None]:
    """While the load runs, a first Ctrl-C asks it to stop (calls in flight finish, the reports are written);
    a second one goes to the handler that was there before (``asyncio.run``'s: it interrupts at once, without
    reports). Outside the main thread, or when Ctrl-C is ignored, this does nothing."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGINT) or signal.default_int_handler  # None: not set from Python
    if previous == signal.SIG_IGN:  # started to ignore Ctrl-C (a background job): keep ignoring it
        yield
        return

    def restore() -> None:
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, previous)

    def on_interrupt() -> None:
        stop.request(INTERRUPTED)
        console.log("[yellow]stopping: calls in flight finish, then the reports are written (Ctrl-C again: quit)")
        restore()

    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no signals here
        yield
        return
    try:
        yield
    finally:
        if stop.reason is None:
            restore()


async def place_users_without_a_group(
    traces: Sequence[UserTrace],
    experiment: Experiment | None,
    config: RunConfig,
    transport: httpx.AsyncBaseTransport | None,
) -> tuple[list[UserTrace], GroupLookup]:
    """Users who made calls but never got a group header (every call timed out, was refused or failed without
    it) get their group from the service's assignment endpoint, so their failures count against their arm.
    Only asked when an experiment is known (its config or some header)."""
    silent = [trace for trace in traces if trace.calls and trace.group is None]
    if not silent or (experiment is None and not any(trace.group for trace in traces)):
        return list(traces), GroupLookup()
    async with make_client(config.concurrency, config.request_timeout_s, transport) as client:
        lookup = await look_up_groups(client, config.recs_url, [t.user_id for t in silent], config.concurrency)
    placed = [
        dataclasses.replace(trace, looked_up_group=lookup.groups[trace.user_id])
        if trace.group is None and trace.user_id in lookup.groups
        else trace
        for trace in traces
    ]
    return placed, lookup


def reference_covariates(references: References) -> Covariates:
    """Per user: what perfect popularity and the oracle score for them (CUPED covariates of the A/B effects)."""
    popular = per_user_table(references.popularity_outcomes)
    oracle = per_user_table(references.oracle_outcomes)
    return {
        metric: {arrival: (value, oracle[metric].get(arrival, 0.0)) for arrival, value in popular[metric].items()}
        for metric in ("precision", "ndcg")
    }


def _comparison(
    experiment: Experiment | None,
    traces: Sequence[UserTrace],
    outcomes: Sequence[CallOutcome],
    catalog_size: int,
    references: References,
    lookup: GroupLookup,
) -> GroupComparison | None:
    """Per-group results when an experiment with at least two groups runs (per the config or the headers)."""
    seen_groups = sorted({trace.group for trace in traces if trace.group})
    if experiment is not None and len(experiment.groups) >= 2:
        order = [group.name for group in experiment.groups]
        control = experiment.control
    elif len(seen_groups) >= 2:
        order = seen_groups
        control = "C" if "C" in seen_groups else seen_groups[0]
    else:
        return None
    lookup_note = lookup.describe()
    notes = [lookup_note] if lookup_note else []
    covariates = reference_covariates(references)
    return compare_groups(traces, outcomes, order, control, catalog_size, K, covariates, notes)


async def grade(
    config: RunConfig,
    dataset: Dataset | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    console: Console | None = None,
) -> GradeResult:
    """Raises ``grader.deployment.GradingAborted`` when the deployment cannot be prepared."""
    console = console or Console(quiet=not config.show_progress)
    started_at = time.time()
    dataset = dataset or load_dataset(Settings())
    catalog = build_catalog(dataset.movies, config.seed)
    users = sample_users(dataset.ratings, catalog, config.users, config.seed, config.distinct_raters)

    experiment = await prepare_deployment(config, catalog, console, transport)
    if experiment is not None:
        console.log(f"experiment {experiment.name!r}: groups {[g.name for g in experiment.groups]}")

    load_started_at = time.time()
    stop = StopRequest()
    with (
        load_progress(console, len(users) * config.calls_per_user, config.show_progress) as on_call,
        stop_on_interrupt(stop, console),
    ):
        traces = await run_load(users, config, on_call, transport, stop)
    finished_at = time.time()
    traces, lookup = await place_users_without_a_group(traces, experiment, config, transport)
    if lookup.asked:
        console.log(lookup.describe())

    user_by_arrival = {user.arrival: user for user in users}
    outcomes = [o for trace in traces for o in evaluate_user(user_by_arrival[trace.arrival], trace, catalog, K)]
    summary = summarize(outcomes, len(catalog), K)
    # A load that stopped early is compared with references over the same users and calls.
    calls_made = {trace.arrival: len(trace.calls) for trace in traces} if any(t.aborted for t in traces) else None
    references = compute_references(users, catalog, config.calls_per_user, K, calls_made)
    return GradeResult(
        config=config,
        started_at=started_at,
        load_started_at=load_started_at,
        finished_at=finished_at,
        catalog=catalog,
        users=tuple(users),
        traces=tuple(traces),
        outcomes=tuple(outcomes),
        summary=summary,
        score=hardml_score(
            summary.precision, summary.ndcg, summary.diversity, summary.coverage, summary.latency.mean_ms
        ),
        references=references,
        experiment=experiment,
        comparison=_comparison(experiment, traces, outcomes, len(catalog), references, lookup),
        windows=tuple(windows_by_arrival(outcomes, len(users))),
        group_lookup=lookup,
    )
