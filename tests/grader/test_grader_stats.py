"""Welch's interval against a hand-computed case and scipy's own Welch test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from grader.stats import WelchInterval, cuped_interval, welch_interval

CONTROL = [1.0, 2.0, 3.0, 4.0]  # mean 2.5, variance 5/3
TREATMENT = [2.0, 4.0, 6.0]  # mean 4, variance 4


def test_welch_hand_computed() -> None:
    interval = welch_interval(TREATMENT, CONTROL)
    assert interval is not None
    assert interval.diff == 1.5
    # se^2 = 4/3 + (5/3)/4 = 1.75
    assert interval.standard_error == pytest.approx(1.75**0.5)
    # df = 1.75^2 / ((4/3)^2/2 + (5/12)^2/3) = 3.0625 / (409/432) = 1323/409
    assert interval.df == pytest.approx(1323 / 409)
    # t(0.975, 1323/409) = 3.0557127104...; half width = t * sqrt(1.75)
    assert interval.low == pytest.approx(1.5 - 3.055712710425896 * 1.75**0.5)
    assert interval.high == pytest.approx(5.542327954923024)
    assert not interval.significant
    assert (interval.n_control, interval.n_treatment) == (4, 3)


def test_welch_matches_scipy() -> None:
    interval = welch_interval(TREATMENT, CONTROL)
    reference = stats.ttest_ind(TREATMENT, CONTROL, equal_var=False)
    low, high = reference.confidence_interval(0.95)
    assert interval is not None
    assert (interval.low, interval.high, interval.df) == pytest.approx((low, high, reference.df))


def test_significant_when_interval_excludes_zero() -> None:
    interval = welch_interval([10.0, 11.0, 12.0, 13.0], CONTROL)
    assert interval is not None
    assert interval.low > 0 and interval.significant
    lower = welch_interval(CONTROL, [10.0, 11.0, 12.0, 13.0])
    assert lower is not None and lower.high < 0 and lower.significant


def test_degenerate_samples() -> None:
    assert welch_interval([1.0], CONTROL) is None
    constant = welch_interval([2.0, 2.0], [1.0, 1.0, 1.0])
    assert constant is not None
    assert (constant.diff, constant.standard_error) == (1.0, 0.0)
    # No spread in either arm: nothing to judge the difference against, so it is not significant.
    assert not constant.significant
    assert not constant.estimable
    assert constant.as_dict()["significant"] is False and constant.as_dict()["estimable"] is False
    # Equal up to float rounding (per-user means of the same lists) is constant too.
    rounded = welch_interval([0.1 + 0.2, 0.3, 0.3], [0.2, 0.2 + 1e-17, 0.1 * 2])
    assert rounded is not None and not rounded.estimable and not rounded.significant


def test_cuped_removes_what_the_covariate_explains() -> None:
    rng = np.random.default_rng(7)
    n = 2000
    # Users differ a lot (the covariate says how much); the treatment adds 0.1 on top of small noise.
    covariate_t, covariate_c = rng.normal(0, 1, n), rng.normal(0, 1, n)
    treatment = 0.1 + 2.0 * covariate_t + rng.normal(0, 0.1, n)
    control = 2.0 * covariate_c + rng.normal(0, 0.1, n)
    raw = welch_interval(treatment.tolist(), control.tolist())
    adjusted = cuped_interval(
        treatment.tolist(), control.tolist(), covariate_t[:, None].tolist(), covariate_c[:, None].tolist()
    )
    assert raw is not None and adjusted is not None
    assert not raw.significant  # the user-to-user spread hides the effect
    assert adjusted.interval.significant
    assert adjusted.interval.low < 0.1 < adjusted.interval.high
    assert adjusted.variance_reduction > 0.99
    assert adjusted.interval.standard_error < raw.standard_error / 10


def test_cuped_with_a_useless_covariate_changes_little() -> None:
    rng = np.random.default_rng(11)
    treatment, control = rng.normal(1.0, 1.0, 500), rng.normal(0.0, 1.0, 500)
    noise_t, noise_c = rng.normal(0, 1, (500, 2)), rng.normal(0, 1, (500, 2))
    raw = welch_interval(treatment.tolist(), control.tolist())
    adjusted = cuped_interval(treatment.tolist(), control.tolist(), noise_t.tolist(), noise_c.tolist())
    assert raw is not None and adjusted is not None
    assert adjusted.variance_reduction < 0.02
    assert adjusted.interval.diff == pytest.approx(raw.diff, abs=0.05)
    assert cuped_interval([1.0], [1.0, 2.0], [[0.0]], [[0.0], [1.0]]) is None


def test_an_interval_that_touches_zero_is_not_significant() -> None:
    def interval(low: float, high: float) -> WelchInterval:
        return WelchInterval(1.0, 1.5, 0.5, low, high, 10.0, 0.25, 5, 5, 0.95)

    assert not interval(0.0, 1.0).significant and not interval(-1.0, 0.0).significant
    assert interval(1e-9, 1.0).significant and interval(-1.0, -1e-9).significant


def test_cuped_keeps_each_groups_mean_when_the_covariate_is_balanced() -> None:
    # Both groups have the same covariates (mean 11, far from 0): the adjustment moves no group's mean, so the
    # reported means (and relative_diff) stay the raw ones.
    covariates = [[10.0], [11.0], [12.0]]
    adjusted = cuped_interval([1.0, 2.0, 4.0], [0.0, 1.0, 1.5], covariates, covariates)
    assert adjusted is not None
    assert adjusted.interval.treatment_mean == pytest.approx(7 / 3)
    assert adjusted.interval.control_mean == pytest.approx(2.5 / 3)
    assert adjusted.interval.relative_diff == pytest.approx((7 / 3 - 2.5 / 3) / (2.5 / 3))
