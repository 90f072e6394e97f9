"""The experiment files the A/B tables in BENCHMARKS.md come from stay valid, and a bad one is refused early."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys_core.experiments import Experiment, parse_experiment
from recsys_core.settings import PROJECT_ROOT
from tuning.ab import main as ab_main

EXPERIMENT_FILES = sorted((PROJECT_ROOT / "tuning" / "experiments").glob("*.json"))


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: p.stem)
def test_experiment_files_build_their_strategies(path: Path) -> None:
    experiment = Experiment.from_config(parse_experiment(path.read_text(), str(path)))
    # A/B files have a control and a treatment; a one-group file runs a whole deployment on a variant.
    assert experiment.control.name == "C" and len(experiment.groups) in (1, 2)


@pytest.mark.parametrize(
    "content",
    ['{"name": "x", "groups": [{"name": "C", "strategy": "nope", "share": 1.0}]}', '{"name": "x", "groups": [{}]}'],
    ids=["unknown-strategy", "no-strategy"],
)
def test_a_bad_experiment_file_is_refused_before_any_stack_starts(
    tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A usage error naming the file and what is wrong (exit code 2), not a traceback; no stack is started."""
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(SystemExit) as exited:
        ab_main(["--experiment", str(bad), "--users", "1"])
    assert exited.value.code == 2
    assert f"--experiment {bad}: " in capsys.readouterr().err
