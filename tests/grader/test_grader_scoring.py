"""The HardML score against hand-computed cases."""

from __future__ import annotations

import pytest

from grader.scoring import LATENCY_SCALE, MAX_SCORE, METRIC_SCALES, Scale, hardml_score, linear_points


def test_linear_points_between_floor_and_full_mark() -> None:
    precision = METRIC_SCALES["precision"]
    # (0.085 - 0.02) / (0.15 - 0.02) = 0.5
    assert linear_points(0.085, precision) == pytest.approx(5.0)
    assert linear_points(0.01, precision) == 0.0
    assert linear_points(0.5, precision) == 10.0
    assert linear_points(None, precision) == 0.0
    assert linear_points(0.3, Scale(0.2, 0.4), max_points=4) == pytest.approx(2.0)


def test_latency_scale_rewards_lower_latency() -> None:
    # (800 - 440) / (800 - 80) = 0.5
    assert linear_points(440.0, LATENCY_SCALE) == pytest.approx(5.0)
    assert linear_points(80.0, LATENCY_SCALE) == 10.0
    assert linear_points(20.0, LATENCY_SCALE) == 10.0
    assert linear_points(1000.0, LATENCY_SCALE) == 0.0


def test_no_bonus_below_thirty_quality_points() -> None:
    # 5 points each: precision 0.085, NDCG 0.045, diversity 0.25, coverage 0.45.
    score = hardml_score(0.085, 0.045, 0.25, 0.45, 80.0)
    assert score.quality_points == pytest.approx(20.0)
    assert not score.bonus_eligible
    assert score.latency.points == pytest.approx(10.0)
    assert score.total == pytest.approx(20.0)


def test_bonus_counts_from_thirty_quality_points() -> None:
    # Three full marks, coverage at its floor: exactly 30 points, then 5 bonus points at 440 ms.
    score = hardml_score(0.15, 0.07, 0.4, 0.1, 440.0)
    assert score.quality_points == pytest.approx(30.0)
    assert score.bonus_eligible
    assert score.total == pytest.approx(35.0)


def test_full_marks() -> None:
    score = hardml_score(0.2, 0.1, 0.5, 0.9, 50.0)
    assert score.total == MAX_SCORE == 50.0
    as_dict = score.as_dict()
    components, bonus = as_dict["components"], as_dict["latency_bonus"]
    assert isinstance(components, dict) and isinstance(bonus, dict)
    assert components["coverage"]["points"] == 10.0
    assert bonus["counted_points"] == 10.0


def test_missing_values_score_nothing() -> None:
    score = hardml_score(0.0, 0.0, None, 0.0, None)
    assert score.total == 0.0
