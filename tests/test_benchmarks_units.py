"""The pure parts of the benchmarks: statistics, target verdicts, wrk output parsing and the BENCHMARKS.md
section replacement. No speed is asserted here (speed goals are measured by ``make bench``, not tested)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest

from benchmarks import (
    bench_freshness,
    bench_interact,
    bench_recs,
    bench_retrain,
    cli,
    loadgen,
    report,
    twin_lift_scale,
)
from benchmarks.base import Context
from benchmarks.loadgen import normalize, parse_output
from benchmarks.report import END_MARKER, START_MARKER, replace_section
from benchmarks.stats import baseline_slope, meets, percentile, rate, ratio, slope, summarize


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 99.9, 100])
def test_percentile_matches_numpy_linear(q: float) -> None:
    values = [float(v) for v in np.random.default_rng(1).exponential(5.0, size=537)]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_small_cases() -> None:
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([4.0, 1.0, 3.0, 2.0], 100) == 4.0  # order of the input does not matter
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize() -> None:
    summary = summarize([float(v) for v in range(1, 101)])
    assert summary["count"] == 100
    assert summary["mean"] == pytest.approx(50.5)
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["p95"] == pytest.approx(95.05)
    assert summary["max"] == 100.0
    assert summarize([]) == {"count": 0}


def test_ratio_and_verdicts() -> None:
    assert ratio(700.0, 1000.0) == pytest.approx(0.7)
    assert ratio(1.0, 0.0) is None
    assert ratio(None, 3.0) is None
    assert meets(0.7, 0.7) is True
    assert meets(0.69, 0.7) is False
    assert meets(19.9, 20.0, higher_is_better=False) is True
    assert meets(20.1, 20.0, higher_is_better=False) is False
    assert meets(None, 1.0) is None


def test_slope_is_least_squares() -> None:
    minutes = [0.0, 1.0, 2.0, 3.0, 4.0]
    assert slope(minutes, [100.0, 102.0, 104.0, 106.0, 108.0]) == pytest.approx(2.0)
    noisy = [100.0, 101.0, 99.0, 101.0, 99.0]
    assert slope(minutes, noisy) == pytest.approx(-0.2)
    assert slope(minutes, noisy) == pytest.approx(float(np.polyfit(minutes, noisy, 1)[0]))
    assert slope([1.0], [5.0]) == 0.0
    with pytest.raises(ValueError):
        slope([1.0, 2.0], [1.0])


def test_baseline_slope_ignores_periodic_spikes_but_not_a_climb() -> None:
    seconds = [10.0 * i for i in range(60)]  # ten minutes, a sample every 10 s
    minutes = [t / 60 for t in seconds]
    spiky = [450.0 if i % 3 == 0 else 150.0 for i in range(60)]  # a retrain every 30 s
    assert baseline_slope(minutes, spiky, 1.0) == pytest.approx(0.0)
    climbing = [100.0 + 5.0 * m + (300.0 if i % 3 == 0 else 0.0) for i, m in enumerate(minutes)]
    assert baseline_slope(minutes, climbing, 1.0) == pytest.approx(5.0, abs=0.01)
    assert baseline_slope([], [], 1.0) == 0.0
    with pytest.raises(ValueError):
        baseline_slope([1.0], [1.0], 0.0)


def test_rate_uses_the_samples_inside_the_window() -> None:
    samples = [(0.0, 0.0), (1.0, 100.0), (2.0, 200.0), (3.0, 250.0), (4.0, 300.0)]
    assert rate(samples, 0.0, 2.0) == pytest.approx(100.0)
    assert rate(samples, 2.0, 4.0) == pytest.approx(50.0)
    assert rate(samples, 0.5, 1.5) is None  # a single sample is no rate


def test_wrk_output_is_parsed_and_normalized() -> None:
    stdout = (
        "Running 30s test @ http://127.0.0.1:1\n"
        'BENCH_JSON {"requests":3000,"duration_us":30000000,"bytes":1,'
        '"errors":{"connect":0,"read":1,"write":0,"status":2,"timeout":0},'
        '"latency_us":{"min":100,"mean":2500.0,"stdev":1.0,"max":90000,"p50":2000,"p90":4000,'
        '"p95":5000,"p99":12000,"p999":50000}}\n'
    )
    result = normalize(parse_output(stdout))
    assert result["rps"] == pytest.approx(100.0)
    assert result["errors"] == 3
    assert result["latency_ms"]["p99"] == pytest.approx(12.0)
    assert result["latency_ms"]["p50"] == pytest.approx(2.0)
    with pytest.raises(RuntimeError):
        parse_output("no summary here\n")


def test_replace_section_keeps_hand_written_text() -> None:
    head, tail = "# Benchmarks\n\nintro by hand\n\n", "\n\n## Notes\nby hand\n"
    updated = replace_section(f"{head}{START_MARKER}\nold numbers\n{END_MARKER}{tail}", "new numbers")
    assert updated == f"{head}{START_MARKER}\nnew numbers\n{END_MARKER}{tail}"
    assert replace_section(updated, "new numbers") == updated  # idempotent


def test_replace_section_appends_markers_when_absent() -> None:
    updated = replace_section("# Benchmarks\n", "numbers")
    assert updated == f"# Benchmarks\n\n{START_MARKER}\nnumbers\n{END_MARKER}\n"
    assert replace_section("", "numbers") == f"{START_MARKER}\nnumbers\n{END_MARKER}\n"


@pytest.mark.parametrize(
    "text",
    [
        f"a\n{START_MARKER}\nb\n",  # no end
        f"a\n{END_MARKER}\nb\n",  # no start
        f"{END_MARKER}\nx\n{START_MARKER}\n",  # reversed
        f"{START_MARKER}\n{END_MARKER}\n{START_MARKER}\n{END_MARKER}\n",  # two sections
    ],
)
def test_replace_section_refuses_broken_markers(text: str) -> None:
    with pytest.raises(ValueError):
        replace_section(text, "numbers")


def test_the_twin_lift_scale_table_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert twin_lift_scale.main(["--users", "300", "--caps", "0", "50", "--queries", "3"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].startswith("| users in the book |") and rows[2].startswith("| 300 |")
    assert len(rows[2].split("|")) == 6  # users, build, and one lift time per cap


def test_unsettled_counts_the_delivered_but_unacked_messages() -> None:
    # The reviewer's interact-paused@16 case: 19,327 messages published, the queue showing 18,815 ready; the other
    # 512 (PREFETCH_COUNT) sit delivered but unacked in the pipeline, which is still working.
    status = {"messages_consumed": 0, "messages_rejected": 0}
    assert bench_interact.unsettled(status, 19_327.0) == 19_327
    assert (
        bench_interact.unsettled({"messages_consumed": 19_300, "messages_rejected": 27}, 19_327.0) == 0
    )  # dead-lettered: settled


def test_wait_drained_waits_for_the_pipeline_not_for_an_empty_queue() -> None:
    # Nothing ready in the queue, but 512 messages still unacked in the pipeline: not drained.
    assert bench_interact.wait_drained(lambda: 512, timeout_s=0.05, interval_s=0.01) is None
    pending = iter([512, 100, 0])
    waited = bench_interact.wait_drained(lambda: next(pending), timeout_s=5, interval_s=0.01)
    assert waited is not None and next(pending, "used up") == "used up"


def test_interact_render_says_what_drained_meant() -> None:
    run = {"rps": 1.0, "latency_ms": {"p50": 1.0, "p95": 1.0, "p99": 1.0}, "errors": 0}
    consumer = {**run, "events_per_message": 1.0, "consumed_during_run": 5, "backlog_after_run": 512, "drain_s": 1.0}
    settings = {"tool": "wrk", "warmup_s": 1, "measure_s": 1, "user_pool": 10}
    runs = {"interact@16": consumer, "bare@16": run}
    result = {"settings": settings, "runs": runs}
    old = bench_interact.render(result)
    assert "had drained the events queue" not in old and "*ready* messages" in old
    new = bench_interact.render({**result, "settings": {**settings, "drained_when": "settled"}})
    assert "not yet settled" in new and "*ready* messages" not in new and "not within" not in new
    timed_out = {**runs, "interact@16": {**consumer, "drain_s": None}}
    assert "not within 300 s" in bench_interact.render(
        {**result, "settings": {**settings, "drained_when": "settled"}, "runs": timed_out}
    )


class _FakeRedis:
    def set(self, key: str, value: bytes) -> None:
        pass


class _FakeStack:
    prefix = "fake"
    redis = _FakeRedis()

    def __enter__(self) -> _FakeStack:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def start(self, *names: str) -> None:
        pass

    def url(self, name: str) -> str:
        return f"http://{name}"


def test_every_recs_run_draws_users_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[loadgen.Load] = []

    def fake_run(load: loadgen.Load) -> dict[str, Any]:
        loads.append(load)
        return {"rps": 100.0, "requests": 3000, "tool": "wrk", "latency_ms": {"p99": 5.0}}

    class Sample:
        @staticmethod
        def json() -> dict[str, Any]:
            return {"item_ids": [str(i) for i in range(10)]}

    monkeypatch.setattr(bench_recs, "seeded_movielens_stack", lambda label: (_FakeStack(), {}))
    monkeypatch.setattr(httpx, "get", lambda *args, **kwargs: Sample())  # bench_recs calls httpx.get
    monkeypatch.setattr(bench_recs, "http_totals", lambda *args: (0.0, 0.0))
    monkeypatch.setattr(loadgen, "run", fake_run)  # bench_recs calls loadgen.run
    result = bench_recs.run(Context(quick=True))
    prefixes = [load.user_prefix for load in loads]
    assert len(prefixes) == 2 + 2 * 3  # two warm-ups, then recs and bare at 1, 16 and 64 connections
    assert len(set(prefixes)) == len(prefixes)  # no run meets another's (or a warm-up's) users
    assert result["settings"]["user_prefix"] == "per run"


def test_returning_users_expected_share() -> None:
    assert bench_recs.returning_share(200_000, 0, 1) == pytest.approx(0.0, abs=1e-9)
    # n draws from N ids: 1 - N(1 - (1 - 1/N)^n)/n of them repeat one drawn before (~n/2N while n << N).
    assert bench_recs.returning_share(200_000, 0, 25_000) == pytest.approx(0.0604, abs=1e-3)
    draws = np.random.default_rng(3).integers(0, 1_000, size=(200, 500))
    simulated = float(np.mean([1 - len(set(row)) / row.size for row in draws]))
    assert bench_recs.returning_share(1_000, 0, 500) == pytest.approx(simulated, abs=0.01)
    runs = {f"{name}@{c}": {"requests": n} for c, n in ((1, 16_000), (16, 25_000)) for name in ("recs", "bare")}
    shared = {"settings": {"user_pool": 200_000}, "runs": runs}  # an older result: one prefix for all recs runs
    assert bench_recs.returning_shares(shared)[16] == pytest.approx(bench_recs.returning_share(200_000, 16_000, 25_000))
    assert bench_recs.returning_shares(shared)[16] > 0.13
    own = {**shared, "settings": {"user_pool": 200_000, "user_prefix": "per run"}}
    assert bench_recs.returning_shares(own) == {
        1: bench_recs.returning_share(200_000, 0, 16_000),
        16: pytest.approx(0.0604, abs=1e-3),
    }
    assert "nearly every request is a new user" not in bench_recs.users_note(shared)


def _live(feeder_tool: str | None) -> dict[str, Any]:
    window = {"seconds": 1.0, "consumed_per_s": 1.0, "accepted_per_s": 1.0, "collector_mean_ms": 1.0}
    live: dict[str, Any] = {
        "plan": {"history_events": 1_000, "users": 10, "items": 10, "feed_rate": 200.0, "burst": 100},
        "windows": {"before": {**window, "max_queue_depth": 0}},
        "retrain_outcome": {"train_seconds": 1.0},
        "inject_s": 1.0,
        "pipeline_load_s": 1.0,
        "retrain_s": 2.0,
    }
    return live if feeder_tool is None else {**live, "feeder_tool": feeder_tool}


def test_the_feed_is_described_by_the_tool_that_generated_it() -> None:
    wrk = "\n".join(bench_retrain.render_live(_live("wrk")))
    assert "wrk: 20 connections, each pausing 100 ms" in wrk
    httpload = "\n".join(bench_retrain.render_live(_live("httpload")))
    assert "wrk" not in httpload and "`benchmarks.httpload` in open loop: a request started every 5 ms" in httpload
    unknown = "\n".join(bench_retrain.render_live(_live(None)))
    assert "pausing" not in unknown and "does not record" in unknown


def test_fit_model_times_are_labelled_as_fit_model() -> None:
    # The pipeline's train_seconds is all of fit_model (likes, matrix, BPR, neighbours, evaluation), not the BPR fit.
    live = "\n".join(bench_retrain.render_live(_live("wrk")))
    assert "BPR fit 1.0 s" not in live and "of which `fit_model` 1.0 s" in live
    summary = {"p50": 0.1, "p95": 0.2, "max": 0.3, "mean": 0.1}
    settings = {"likes": 1, "poll_interval_s": 0.005, "background_recs_per_s": 1, "background_events_per_s": 1}
    retrain = {"model_version": 2, "retrain_call_s": 3.0, "fit_s": 2.0, "published_to_served_s": 0.1}
    freshness = bench_freshness.render(
        {
            "settings": {**settings, "seeded_events": 10},
            "like_visible_s": summary,
            "interact_confirm_s": summary,
            "retrains": [{**retrain, "retrain_to_served_s": 3.1}],
        }
    )
    assert "(fit)" not in freshness and "retrain call (of which fit_model)" in freshness


def test_untracked_python_files_count_as_uncommitted() -> None:
    assert report.is_dirty("") is False
    assert report.is_dirty(" M recommendations/service.py\n") is True
    assert report.is_dirty("?? notes.txt\n?? scratch/plot.png\n") is False
    assert report.is_dirty("?? notes.txt\n?? recommendations/helper.py\n") is True
    assert report.is_dirty('?? "recommendations/odd name.py"\n') is True


def test_source_state_sees_an_untracked_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True)

    git("init", "-q")
    (tmp_path / "app.py").write_text("import helper\n")
    git("add", "app.py")
    git("commit", "-q", "-m", "app")
    monkeypatch.setattr(report, "ROOT", tmp_path)
    (tmp_path / "notes.txt").write_text("not code\n")
    assert not report.source_state().endswith("(uncommitted changes)")
    (tmp_path / "helper.py").write_text("VALUE = 1\n")  # imported by app.py, committed nowhere
    assert report.source_state().endswith("(uncommitted changes)")


def test_one_invocation_records_one_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    commits = iter(["a" * 40, "b" * 40])  # a commit lands between the two benchmarks

    def fake_git(*args: str) -> str:
        return next(commits) if args[0] == "rev-parse" else ""

    def fake_module(name: str) -> Any:
        return SimpleNamespace(NAME=name, TITLE=name, run=lambda ctx: {"targets": []}, render=lambda result: "")

    written: dict[str, dict[str, Any]] = {}

    def fake_write(name: str, result: dict[str, Any]) -> Path:
        written[name] = result
        return report.ROOT / name

    monkeypatch.setattr(report, "_git", fake_git)
    monkeypatch.setattr(report, "write_result", fake_write)
    monkeypatch.setattr(cli, "BENCHMARKS", {"one": fake_module("one"), "two": fake_module("two")})
    assert cli.main(["--quick"]) == 0
    assert [r["machine"]["git_commit"] for r in written.values()] == ["a" * 40, "a" * 40]
