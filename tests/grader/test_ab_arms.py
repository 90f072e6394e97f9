"""A/B bookkeeping against the fake service: which group is the control, users that switch, arms with no users,
arms whose every call fails (with and without the service's assignment endpoint), header-only runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Unpack

import httpx
import pytest
from rich.console import Console

from grader.config import PauseRange, RunConfig
from grader.deployment import look_up_groups
from grader.grading import GradeResult, grade
from grader.report import print_terminal_report, write_reports
from grader.simulation import Dataset
from grader.traces import UNASSIGNED
from recsys_core.experiments import ExperimentConfigError, parse_experiment
from tests.grader.fake_hardml import FakeOptions, FakeState, create_fake_app

NO_PAUSE = PauseRange(0.0, 0.0)
USERS = 30


def _config() -> RunConfig:
    return RunConfig(
        recs_url="http://recs.test",
        events_url="http://events.test",
        users=USERS,
        concurrency=4,
        seed=7,
        sessions=2,
        calls_per_session=3,
        pause_in_session=NO_PAUSE,
        pause_between_sessions=NO_PAUSE,
        add_items_batch=30,
        show_progress=False,
        abort_after_failures=0,  # whole arms fail on purpose
    )


async def _grade(dataset: Dataset, **options: Unpack[FakeOptions]) -> tuple[GradeResult, FakeState]:
    app, state = create_fake_app(misbehave=False, experiment=True, **options)
    return await grade(_config(), dataset=dataset, transport=httpx.ASGITransport(app=app)), state


def _terminal(result: GradeResult) -> str:
    console = Console(record=True, width=200)
    print_terminal_report(console, result)
    return console.export_text()


def _users_of(result: GradeResult, state: FakeState, group: str) -> int:
    return sum(1 for user in result.users if state.group_of(user.user_id) == group)


async def test_the_control_is_the_group_named_c_even_when_listed_second(dataset: Dataset) -> None:
    result, _state = await _grade(dataset, configured_groups=("T1", "C"))
    assert result.experiment is not None and result.experiment.control == "C"
    comparison = result.comparison
    assert comparison is not None and comparison.control == "C"
    assert list(comparison.groups)[:2] == ["T1", "C"]  # config order
    assert {effect.treatment for effect in comparison.effects} == {"T1"}


@pytest.mark.parametrize(("served", "control"), [(("B", "A"), "A"), (("T1", "C"), "C")])
async def test_a_header_only_run_finds_the_groups_and_the_control(
    dataset: Dataset, served: tuple[str, str], control: str
) -> None:
    """No GET /experiments (404): the groups come from the headers; the control is C, else the first by name."""
    treatment = next(name for name in served if name != control)
    result, _state = await _grade(dataset, served_groups=served, config_endpoint=False, reverse_group=treatment)
    assert result.experiment is None
    comparison = result.comparison
    assert comparison is not None and comparison.control == control
    assert set(comparison.groups) == set(served)
    assert {effect.treatment for effect in comparison.effects} == {treatment}
    precision = next(e for e in comparison.effects if e.metric == "precision").interval
    assert precision is not None and precision.diff < 0  # the treatment shows the catalog backwards


async def test_a_user_who_switches_group_is_counted_and_reported(dataset: Dataset, tmp_path: Path) -> None:
    result, state = await _grade(dataset, switching_user=True)
    switcher = next(trace for trace in result.traces if trace.user_id == state.switcher)
    assert switcher.switched_group and switcher.group == state.group_of(switcher.user_id)  # its first header
    comparison = result.comparison
    assert comparison is not None and comparison.users_switching_group == 1
    summary_path, html_path = write_reports(result, tmp_path)
    assert json.loads(summary_path.read_text())["groups"]["users_switching_group"] == 1
    assert "1 users were served by more than one group" in html_path.read_text().replace("\n", "")
    assert "1 users were served by more than one group" in _terminal(result)


async def test_a_configured_group_without_users_is_listed_with_a_reason(dataset: Dataset, tmp_path: Path) -> None:
    result, _state = await _grade(dataset, configured_groups=("C", "T1", "T2"))
    comparison = result.comparison
    assert comparison is not None
    assert list(comparison.groups) == ["C", "T1", "T2"]
    assert comparison.groups["T2"].users == 0
    assert comparison.group_notes == {"T2": "no users observed"}
    t2_effects = [effect for effect in comparison.effects if effect.treatment == "T2"]
    assert len(t2_effects) == 4 and all(effect.interval is None for effect in t2_effects)
    assert all(effect.reason is not None and effect.reason.startswith("T2 has 0 user(s)") for effect in t2_effects)
    summary = json.loads(write_reports(result, tmp_path)[0].read_text())["groups"]
    assert summary["groups"]["T2"]["users"] == 0 and summary["group_notes"]["T2"] == "no users observed"
    assert "group T2: no users observed" in _terminal(result)


async def test_users_whose_every_call_fails_count_against_their_arm(dataset: Dataset, tmp_path: Path) -> None:
    """T1 answers a header-less 500 to every call: the grader asks the service for those users' group, so T1 is
    there, with precision 0 for each failed call, and clearly worse than C (not silently dropped)."""
    result, state = await _grade(dataset, failing_groups=frozenset({"T1"}), reverse_group="none")
    t1_users = _users_of(result, state, "T1")
    assert 0 < t1_users < USERS
    comparison = result.comparison
    assert comparison is not None
    assert UNASSIGNED not in comparison.groups
    assert comparison.groups["T1"].users == t1_users
    assert comparison.unassigned_users == 0
    assert result.group_lookup.asked == t1_users == len(result.group_lookup.groups)
    assert state.assignment_requests == t1_users
    assert comparison.groups["T1"].errors.non_200 == t1_users * 6
    assert comparison.group_notes["T1"].startswith(f"every /recs call of its {t1_users} users failed")
    effects = {effect.metric: effect for effect in comparison.effects}
    precision = effects["precision"].interval
    assert precision is not None and precision.treatment_mean == 0.0 and precision.n_treatment == t1_users
    assert precision.diff < 0 and precision.significant
    assert effects["diversity"].interval is None and effects["diversity"].reason is not None
    summary = json.loads(write_reports(result, tmp_path)[0].read_text())["groups"]
    assert summary["unassigned_users"] == 0 and summary["groups"]["T1"]["users"] == t1_users


async def test_without_the_assignment_endpoint_a_failed_control_is_reported_not_silently_dropped(
    dataset: Dataset, tmp_path: Path
) -> None:
    result, state = await _grade(dataset, failing_groups=frozenset({"C"}), assignment_endpoint=False)
    c_users = _users_of(result, state, "C")
    comparison = result.comparison
    assert comparison is not None and comparison.control == "C"
    assert comparison.groups["C"].users == 0 and comparison.groups[UNASSIGNED].users == c_users
    assert comparison.effects, "the treatments are still listed, each with the reason it has no interval"
    assert not comparison.control_observed and comparison.unassigned_users == c_users
    assert result.group_lookup.endpoint_missing
    assert state.assignment_requests <= _config().concurrency  # a 404 stops the lookups
    assert all(
        effect.interval is None and effect.reason == "C has 0 user(s) with a " + effect.metric + " value, 2 needed"
        for effect in comparison.effects
    )
    assert any("endpoint (404)" in note for note in comparison.notes)
    summary = json.loads(write_reports(result, tmp_path)[0].read_text())["groups"]
    assert summary["unassigned_users"] == c_users and summary["control_observed"] is False
    terminal = _terminal(result)
    assert "warning: the control C was not observed" in terminal
    assert "endpoint (404)" in terminal


def test_the_graders_unassigned_label_can_never_be_a_group_name() -> None:
    config = {"name": "x", "groups": [{"name": UNASSIGNED, "strategy": "thompson", "share": 1.0}]}
    with pytest.raises(ExperimentConfigError):
        parse_experiment(config, "test")


async def test_group_lookups_are_bounded_and_count_what_failed() -> None:
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        user_id = request.url.path.rsplit("/", 1)[1]
        if user_id == "broken":
            return httpx.Response(500)
        if user_id == "odd":
            return httpx.Response(200, json={"group": UNASSIGNED})  # never a real group
        if user_id == "down":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"user_id": user_id, "group": "T1"})

    users = [f"u{i}" for i in range(12)] + ["broken", "odd", "down"]
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        lookup = await look_up_groups(client, "http://recs.test", users, concurrency=3)
    assert lookup.groups == {f"u{i}": "T1" for i in range(12)}
    assert (lookup.asked, lookup.failed, lookup.endpoint_missing) == (15, 3, False)
    assert peak <= 3
    assert (
        lookup.describe() == "12 of 15 users without a group header placed by /experiments/assignment; 3 lookups failed"
    )
