"""The experiment files the A/B tables in BENCHMARKS.md come from stay valid, and a bad one is refused early."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys_core.experiments import Experiment, ExperimentConfigError, parse_experiment
from recsys_core.settings import PROJECT_ROOT
from tuning.ab import main as ab_main

EXPERIMENT_FILES = sorted((PROJECT_ROOT / "tuning" / "experiments").glob("*.json"))


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: p.stem)
def test_experiment_files_build_their_strategies(path: Path) -> None:
    experiment = Experiment.from_config(parse_experiment(path.read_text(), str(path)))
    # A/B files have a control and a treatment; a one-group file runs a whole deployment on a variant.
    assert experiment.control.name == "C" and len(experiment.groups) in (1, 2)


def test_a_bad_experiment_file_is_refused_before_any_stack_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "groups": [{"name": "C", "strategy": "nope", "share": 1.0}]}')
    with pytest.raises(ExperimentConfigError, match="nope"):
        ab_main(["--experiment", str(bad), "--users", "1"])
