"""The MLflow backfill (retrains made while MLflow was down) stops when the pipeline stops."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.tracking import MlflowTracker, RetrainRecord
from recsys_core.algorithms.factors import FactorModel


def _record(version: int) -> RetrainRecord:
    model = FactorModel(
        version=version,
        user_ids=np.array(["u"], dtype=np.str_),
        user_factors=np.ones((1, 2), dtype=np.float32),
        item_ids=np.array(["a"], dtype=np.str_),
        item_factors=np.ones((1, 2), dtype=np.float32),
        neighbour_indices=np.zeros((1, 0), dtype=np.int32),
        neighbour_sims=np.zeros((1, 0), dtype=np.float32),
    )
    return RetrainRecord(1, version, {}, {"likes": 1.0}, model)


def test_a_backfill_in_progress_ends_after_its_current_run_once_the_tracker_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracker = MlflowTracker("http://127.0.0.1:9", "experiment", "http://mlflow")
    reachable = False
    monkeypatch.setattr(tracker, "_reachable", lambda: reachable)
    for version in range(1, 6):  # MLflow is down: five retrains are kept for later
        assert tracker.log_retrain(_record(version)) is None
    assert tracker.backlog == 5
    logged: list[int] = []

    def log_and_stop_after_the_first(record: RetrainRecord) -> str:
        logged.append(record.model_version)
        tracker.close()  # the pipeline stops while the backfill logs its first run
        return f"run-{record.model_version}"

    monkeypatch.setattr(tracker, "_log", log_and_stop_after_the_first)
    reachable = True
    assert tracker.log_retrain(_record(6)) == "run-6"  # the retrain being logged still gets its run
    print(f"logged {logged}; left {tracker.backlog}")
    assert logged == [1, 6] and tracker.backlog == 4
