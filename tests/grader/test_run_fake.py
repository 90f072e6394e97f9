"""The whole grading run against the in-process fake service: bookkeeping, error counts, reports."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict, Unpack

import httpx
import psutil
import pytest
from fastapi import FastAPI
from rich.console import Console

from grader.aggregate import failure_causes
from grader.config import K, PauseRange, RunConfig
from grader.deployment import GradingAborted
from grader.grading import GradeResult, grade, stop_on_interrupt
from grader.report import print_terminal_report, write_reports
from grader.runner import INTERRUPTED, StopRequest
from grader.simulation import Dataset
from tests.grader.fake_hardml import EXPERIMENT_NAME, FakeState, ServedFake, create_fake_app

NO_PAUSE = PauseRange(0.0, 0.0)
USERS = 12
SESSIONS, CALLS_PER_SESSION = 2, 3


class RunOverrides(TypedDict, total=False):
    """Any fields of ``RunConfig``."""

    recs_url: str
    events_url: str
    users: int
    concurrency: int
    processes: int
    seed: int
    distinct_raters: bool
    calls_per_session: int
    sessions: int
    pause_in_session: PauseRange
    pause_between_sessions: PauseRange
    add_items_batch: int
    request_timeout_s: float
    abort_after_failures: int
    admin_token: str | None
    out_dir: Path | None
    show_progress: bool


def _config(**overrides: Unpack[RunOverrides]) -> RunConfig:
    values: RunOverrides = {
        "recs_url": "http://recs.test",
        "events_url": "http://events.test",
        "users": USERS,
        "concurrency": 4,
        "seed": 7,
        "sessions": SESSIONS,
        "calls_per_session": CALLS_PER_SESSION,
        "pause_in_session": NO_PAUSE,
        "pause_between_sessions": NO_PAUSE,
        "add_items_batch": 30,
        "show_progress": False,
    }
    values.update(overrides)
    return RunConfig(**values)


def assert_consistent(result: GradeResult, users: int, calls_per_user: int) -> None:
    summary = result.summary
    assert len(result.traces) == users
    assert [t.arrival for t in result.traces] == list(range(users))
    assert all(len(t.calls) == calls_per_user for t in result.traces)
    assert summary.calls == users * calls_per_user
    assert summary.slots == summary.calls * K
    assert 0 <= summary.hits <= summary.slots
    assert summary.precision == pytest.approx(summary.hits / summary.slots)
    assert 0.0 <= summary.ndcg <= 1.0
    assert summary.unique_items <= len(result.catalog)
    # Hits only count first showings of relevant items, so the oracle is an upper bound, user by user.
    assert summary.precision <= result.references.oracle.precision + 1e-12
    assert result.references.oracle.calls == summary.calls
    assert result.references.popularity.calls == summary.calls


async def test_misbehaving_service_errors_are_counted(dataset: Dataset, tmp_path: Path) -> None:
    app, state = create_fake_app(misbehave=True)
    result = await grade(_config(), dataset=dataset, transport=httpx.ASGITransport(app=app))

    assert_consistent(result, USERS, SESSIONS * CALLS_PER_SESSION)
    errors = result.summary.errors
    assert errors.non_200 == 1
    assert errors.no_response == 0
    assert errors.invalid_body == 0
    assert errors.duplicates == USERS
    assert errors.reshown == USERS
    assert errors.unknown_ids == USERS
    assert errors.wrong_length == USERS
    assert errors.interact_failures == 1
    assert errors.total == 1 + 4 * USERS + 1

    # The service received exactly the catalog, once, after one cleanup, under opaque ids.
    assert state.cleanups == 1
    assert state.catalog == [item.item_id for item in result.catalog.items]
    assert not any(item_id.isdigit() for item_id in state.catalog)
    # Feedback: likes only for relevant items, dislikes only for disliked ones, one /interact per reaction.
    users = {user.user_id: user for user in result.users}
    for body in state.interactions:
        user = users[body["user_id"]]
        for item_id, action in zip(body["item_ids"], body["actions"], strict=True):
            assert item_id in (user.relevant if action == "like" else user.disliked)
    sent = sum(call.interact_sent for trace in result.traces for call in trace.calls)
    assert sent == state.interact_requests == len(state.interactions) + 1
    assert result.comparison is None

    summary_path, html_path = write_reports(result, tmp_path / "report")
    summary = json.loads(summary_path.read_text())
    assert summary["errors"]["duplicates"] == USERS
    assert summary["metrics"]["slots"] == result.summary.slots
    assert summary["groups"] is None
    assert 0 <= summary["score"]["total"] <= 50
    assert "data:image/png;base64," in html_path.read_text()


async def test_well_behaved_service_has_no_errors(dataset: Dataset) -> None:
    app, _state = create_fake_app(misbehave=False)
    result = await grade(_config(), dataset=dataset, transport=httpx.ASGITransport(app=app))
    assert_consistent(result, USERS, SESSIONS * CALLS_PER_SESSION)
    assert result.summary.errors.total == 0
    assert result.summary.latency.count == result.summary.calls
    # The fake shows everyone the catalog in load order: together they saw its first calls * k items.
    assert result.summary.unique_items == SESSIONS * CALLS_PER_SESSION * K


async def test_experiment_groups_are_reported(dataset: Dataset, tmp_path: Path) -> None:
    app, _state = create_fake_app(misbehave=False, experiment=True)
    result = await grade(_config(users=30), dataset=dataset, transport=httpx.ASGITransport(app=app))
    comparison = result.comparison
    assert comparison is not None
    assert comparison.control == "C"
    assert set(comparison.groups) == {"C", "T1"}
    assert sum(group.users for group in comparison.groups.values()) == 30
    assert {(e.treatment, e.metric) for e in comparison.effects} == {
        ("T1", "precision"),
        ("T1", "ndcg"),
        ("T1", "diversity"),
        ("T1", "latency_ms"),
    }
    precision = next(e for e in comparison.effects if e.metric == "precision").interval
    assert precision is not None
    # T1 shows the catalog backwards, far from what the raters like: a clear loss.
    assert precision.diff < 0 and precision.significant
    # Precision and NDCG also get a CUPED interval from the reference covariates; diversity and latency do not.
    adjusted = {e.metric: e.adjusted for e in comparison.effects}
    assert adjusted["precision"] is not None and adjusted["ndcg"] is not None
    assert adjusted["diversity"] is None and adjusted["latency_ms"] is None
    assert adjusted["precision"].interval.diff < 0
    # Each arm shows everyone the same lists: their diversity is one value per arm, so its difference has no
    # variance to be judged against, and the report says so instead of calling it certain.
    diversity = next(e for e in comparison.effects if e.metric == "diversity").interval
    assert diversity is not None and not diversity.estimable and not diversity.significant

    _summary_path, html_path = write_reports(result, tmp_path)
    html = html_path.read_text()
    assert "&lt;b&gt;fake-experiment&lt;/b&gt;" in html
    assert EXPERIMENT_NAME not in html
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["experiment"]["name"] == EXPERIMENT_NAME
    assert set(summary["groups"]["groups"]) == {"C", "T1"}
    cuped = {e["metric"]: e["cuped"] for e in summary["groups"]["effects"]}
    assert cuped["precision"]["n_control"] + cuped["precision"]["n_treatment"] == 30
    assert cuped["diversity"] is None
    assert "CUPED 95% interval" in html
    assert "no variance" in html

    # The terminal report shows the CUPED estimate beside its interval (the raw difference can lie outside it).
    console = Console(record=True, width=200)
    print_terminal_report(console, result)
    lines = console.export_text().splitlines()
    header = next(line for line in lines if "treatment" in line)
    cells = [cell.strip() for cell in header.strip("┃│ ").replace("┃", "│").split("│")]
    assert cells[5:7] == ["CUPED", "CUPED interval"], header
    precision_row = next(line for line in lines if "T1" in line and "precision" in line)
    row = [cell.strip() for cell in precision_row.strip("│ ").split("│")]
    assert row[5] == f"{adjusted['precision'].interval.diff:.4f}", precision_row


async def test_same_seed_same_run(dataset: Dataset) -> None:
    results = []
    for _ in range(2):
        app, _state = create_fake_app(misbehave=False)
        results.append(await grade(_config(), dataset=dataset, transport=httpx.ASGITransport(app=app)))
    first, second = results
    assert [u.user_id for u in first.users] == [u.user_id for u in second.users]
    assert first.summary.hits == second.summary.hits
    assert first.summary.ndcg == second.summary.ndcg


async def test_unhealthy_service_aborts(dataset: Dataset) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503 if request.url.host == "events.test" else 200)

    with pytest.raises(GradingAborted, match="event collector"):
        await grade(_config(), dataset=dataset, transport=httpx.MockTransport(handler))


async def test_load_over_two_processes(dataset: Dataset, served_fake: ServedFake) -> None:
    config = _config(recs_url=served_fake.url, events_url=served_fake.url, processes=2, users=8)
    result = await grade(config, dataset=dataset)
    assert_consistent(result, 8, SESSIONS * CALLS_PER_SESSION)
    assert result.summary.errors.total == 0
    assert served_fake.state.recs_requests == result.summary.calls


async def test_unusable_answers_are_classified(dataset: Dataset) -> None:
    """Per user: call 1 gets no response, call 2 a body that is not JSON, call 3 an empty list."""
    calls: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/experiments":
            return httpx.Response(404)
        if not path.startswith("/recs/"):
            return httpx.Response(200, json={})
        user_id = path.removeprefix("/recs/")
        calls[user_id] = calls.get(user_id, 0) + 1
        if calls[user_id] == 1:
            raise httpx.ConnectError("refused", request=request)
        if calls[user_id] == 2:
            return httpx.Response(200, text="not json")
        return httpx.Response(200, json={"item_ids": []})

    config = _config(sessions=1, calls_per_session=3)
    result = await grade(config, dataset=dataset, transport=httpx.MockTransport(handler))
    assert_consistent(result, USERS, 3)
    errors = result.summary.errors
    assert (errors.no_response, errors.invalid_body, errors.wrong_length) == (USERS, USERS, USERS)
    assert errors.total == 3 * USERS
    assert result.summary.hits == 0
    assert result.summary.latency.count == 3 * USERS  # a call with no response counts at the time it waited
    assert failure_causes(result.outcomes) == {"ConnectError": USERS, "invalid body": USERS}
    assert result.score.total == 0.0
    assert result.aborted is None


async def test_a_service_that_hangs_is_slow_not_fast(dataset: Dataset) -> None:
    """A call the client gives up on counts in the latency at the time it waited: a hang must not score better
    than a slow answer."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/recs/"):
            await asyncio.sleep(0.2)  # then the client gives up
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(404 if request.url.path == "/experiments" else 200, json={})

    config = _config(users=4, sessions=1, calls_per_session=2, abort_after_failures=0)
    result = await grade(config, dataset=dataset, transport=httpx.MockTransport(handler))
    assert result.summary.errors.no_response == 8
    assert result.summary.latency.count == 8 and result.summary.latency.mean_ms is not None
    assert result.summary.latency.mean_ms >= 200
    assert failure_causes(result.outcomes) == {"ReadTimeout": 8}


async def test_a_run_of_failures_stops_the_load_early_and_says_why(dataset: Dataset, tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/recs/"):
            return httpx.Response(500, json={"detail": "broken"})
        return httpx.Response(404 if request.url.path == "/experiments" else 200, json={})

    config = _config(users=40, concurrency=4, sessions=1, calls_per_session=3, abort_after_failures=10)
    result = await grade(config, dataset=dataset, transport=httpx.MockTransport(handler))
    print(result.aborted, result.summary.calls)
    assert result.aborted is not None and "the last 10 /recs calls got no 200 (the last: HTTP 500)" in result.aborted
    assert result.summary.calls < 40 * 3 / 2, "the load stopped long before every user made every call"
    assert len(result.traces) == 40  # every user is accounted for, the ones never started with no calls
    summary_path, html_path = write_reports(result, tmp_path)
    assert json.loads(summary_path.read_text())["aborted"] == result.aborted
    assert "Aborted:" in html_path.read_text()


@pytest.fixture
def ctrl_c_not_ignored() -> Iterator[None]:
    """Python's own Ctrl-C handler for the test: a suite started as a background job inherits SIGINT ignored, and
    the grader (rightly) keeps ignoring an ignored Ctrl-C."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


class _InterruptingTransport(httpx.ASGITransport):
    """Sends this process a SIGINT (a Ctrl-C) once the fake has answered ``after`` /recs calls."""

    def __init__(self, app: FastAPI, state: FakeState, after: int) -> None:
        super().__init__(app=app)
        self.state, self.after, self.sent = state, after, False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path.startswith("/recs/") and self.state.recs_requests >= self.after and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return response


@pytest.mark.usefixtures("ctrl_c_not_ignored")
async def test_ctrl_c_stops_the_load_and_the_reports_cover_what_was_measured(dataset: Dataset, tmp_path: Path) -> None:
    app, state = create_fake_app(misbehave=False)
    users, calls_per_user = 40, SESSIONS * CALLS_PER_SESSION
    handler_before = signal.getsignal(signal.SIGINT)
    # Pauses make the workers yield to the loop (the in-process fake never does), so the signal is handled.
    config = _config(users=users, pause_in_session=PauseRange(0.001, 0.002))
    result = await grade(config, dataset=dataset, transport=_InterruptingTransport(app, state, 10))

    assert result.aborted == INTERRUPTED
    print(f"calls made: {result.summary.calls} of {users * calls_per_user}")
    assert 10 <= result.summary.calls < users * calls_per_user / 2
    assert result.summary.calls == state.recs_requests  # every call made is judged
    assert len(result.traces) == users
    # The references are computed for the same users and calls, so the shares of them stay meaningful.
    assert result.references.popularity.calls == result.references.oracle.calls == result.summary.calls
    summary_path, html_path = write_reports(result, tmp_path)
    assert json.loads(summary_path.read_text())["aborted"] == INTERRUPTED
    assert "Aborted:" in html_path.read_text()
    # The grader's handler is gone once the load stopped: a later Ctrl-C goes where it went before.
    assert signal.getsignal(signal.SIGINT) == handler_before


@pytest.mark.usefixtures("ctrl_c_not_ignored")
async def test_ctrl_c_reaches_the_load_of_every_process(dataset: Dataset, served_fake: ServedFake) -> None:
    state = served_fake.state
    config = _config(
        recs_url=served_fake.url,
        events_url=served_fake.url,
        processes=2,
        users=200,
        pause_in_session=PauseRange(0.02, 0.05),
    )

    def interrupt_once_the_load_runs() -> None:
        deadline = time.monotonic() + 60
        while state.recs_requests < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_once_the_load_runs, daemon=True)
    interrupter.start()
    result = await grade(config, dataset=dataset)
    interrupter.join()

    assert result.aborted == INTERRUPTED
    print(f"calls made: {result.summary.calls} of {200 * SESSIONS * CALLS_PER_SESSION}")
    assert result.summary.calls < 200 * SESSIONS * CALLS_PER_SESSION / 2
    assert result.summary.calls == state.recs_requests
    assert len(result.traces) == 200


async def test_a_cancelled_load_ends_its_processes_without_waiting_for_calls_in_flight(
    dataset: Dataset, served_fake: ServedFake
) -> None:
    """A second Ctrl-C makes ``asyncio.run`` cancel the grading and wait for the thread that waits for the worker
    processes: the workers are ended, not left to finish calls that hang (here until the test releases them)."""
    state = served_fake.state
    state.hang_after = 10
    config = _config(recs_url=served_fake.url, events_url=served_fake.url, processes=2, users=40)
    config = dataclasses.replace(config, request_timeout_s=300.0)
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    grading = asyncio.create_task(grade(config, dataset=dataset))
    try:
        while state.recs_requests <= state.hang_after:  # the load runs and its calls now hang
            assert not grading.done()
            await asyncio.sleep(0.02)
        started = {child.pid for child in psutil.Process().children(recursive=True)} - before
        assert len(started) >= 3  # the manager and two workers (and the resource tracker, once per process)
        grading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await grading

        def alive() -> list[tuple[int, list[str]]]:
            running = []
            for pid in started:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process = psutil.Process(pid)
                    argv = process.cmdline()
                    # multiprocessing's resource tracker lives as long as this process, whatever the load does.
                    if process.status() != psutil.STATUS_ZOMBIE and "multiprocessing.resource_tracker" not in str(argv):
                        running.append((pid, argv))
            return running

        # Polled, not joined: joining the thread (as asyncio.run does after the cancel) would block this loop
        # for as long as the workers wait on their hanging calls.
        deadline = time.monotonic() + 30
        while alive() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls other processes, not an event
            await asyncio.sleep(0.1)
        print(f"processes started by the load: {len(started)}, alive after the cancel: {len(alive())}")
        assert alive() == []
    finally:
        state.release.set()


async def test_a_second_ctrl_c_goes_to_the_handler_from_before() -> None:
    """The first Ctrl-C only asks the load to stop; the second reaches the handler that was installed before
    (``asyncio.run``'s, which interrupts at once), and leaving the block restores it."""
    received: list[int] = []
    before = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        stop = StopRequest()
        with stop_on_interrupt(stop, Console(quiet=True)):
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.1)
            assert stop.reason == INTERRUPTED and received == []
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.1)
            assert received == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, before)


async def test_an_ignored_ctrl_c_stays_ignored() -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stop = StopRequest()
        with stop_on_interrupt(stop, Console(quiet=True)):
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.1)
        assert stop.reason is None
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
