"""The grader against the real stack (services on real Redis and RabbitMQ), via the ``stack`` fixture."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from grader.config import K, PauseRange, RunConfig
from grader.grading import grade
from grader.report import write_reports
from grader.simulation import Dataset
from recsys_core import movielens
from recsys_core.settings import Settings
from tests.grader.fake_hardml import tiny_dataset

USERS = 20
NO_PAUSE = PauseRange(0.0, 0.0)


def _dataset() -> Dataset | None:
    """None (grade() loads MovieLens) where this machine has it; else the grader tests' tiny dataset.

    A clone outside the workspace has no ../shared/data and CI may have no network for the download; the
    contract this test checks holds on any catalog.
    """
    try:
        path = movielens.locate(Settings(), download=False)
    except FileNotFoundError:
        print("MovieLens not on this machine: grading with the tiny test dataset")
        return tiny_dataset()
    print(f"grading with MovieLens from {path}")
    return None


# Two groups, so the run also checks the A/B side: every user in one group, none switching.
TWO_GROUPS = {
    "name": "grader-int",
    "groups": [{"name": "C", "strategy": "blend", "share": 0.5}, {"name": "T1", "strategy": "thompson", "share": 0.5}],
}


# The stack guards /cleanup and /add_items with a token, so the run also checks that the grader sends it.
ADMIN_TOKEN = "grader-int-token-7d2e"


@pytest.mark.integration
async def test_grader_against_real_stack(stack_factory: Callable[..., Any], tmp_path: Path) -> None:
    stack = stack_factory(EXPERIMENT_CONFIG=json.dumps(TWO_GROUPS), ADMIN_TOKEN=ADMIN_TOKEN).start()
    config = RunConfig(
        recs_url=stack.recs_url.rstrip("/"),
        events_url=stack.collector_url.rstrip("/"),
        users=USERS,
        concurrency=5,
        seed=11,
        pause_in_session=NO_PAUSE,
        pause_between_sessions=NO_PAUSE,
        admin_token=ADMIN_TOKEN,
        show_progress=False,
    )
    result = await grade(config, dataset=_dataset())
    summary = result.summary

    assert len(result.traces) == USERS
    assert summary.calls == USERS * config.calls_per_user
    assert summary.slots == summary.calls * K
    assert 0 <= summary.hits <= summary.slots
    assert summary.precision == pytest.approx(summary.hits / summary.slots)
    assert summary.precision <= result.references.oracle.precision + 1e-12
    assert summary.latency.count == summary.calls
    # A correct service breaks no rule of the contract.
    assert summary.errors.total == 0, summary.errors.as_dict()
    assert summary.unique_items >= K
    comparison = result.comparison
    assert comparison is not None and set(comparison.groups) == {"C", "T1"}
    assert sum(group.users for group in comparison.groups.values()) == USERS
    assert comparison.users_switching_group == 0

    summary_path, html_path = write_reports(result, tmp_path)
    written = json.loads(summary_path.read_text())
    assert written["metrics"]["calls"] == summary.calls
    assert written["catalog_size"] == len(result.catalog)
    assert html_path.stat().st_size > 0
