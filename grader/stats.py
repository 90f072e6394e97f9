"""Welch's two-sample comparison of means: difference treatment - control with a t confidence interval.

The degrees of freedom follow Welch-Satterthwaite:
    df = (v_t/n_t + v_c/n_c)^2 / ((v_t/n_t)^2/(n_t-1) + (v_c/n_c)^2/(n_c-1))
with v the unbiased sample variances. Samples are per-user values, so users (not calls, which are correlated
within a user) are the independent units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True, slots=True)
class WelchInterval:
    control_mean: float
    treatment_mean: float
    diff: float
    low: float
    high: float
    df: float
    standard_error: float
    n_control: int
    n_treatment: int
    confidence: float

    @property
    def estimable(self) -> bool:
        """False when both samples are constant: no spread to judge the difference against."""
        return self.standard_error > 0

    @property
    def significant(self) -> bool:
        """The interval excludes 0. A zero-variance interval never is: with two identical users per arm the point
        interval would call any difference certain."""
        return self.estimable and (self.low > 0 or self.high < 0)

    @property
    def relative_diff(self) -> float | None:
        return self.diff / self.control_mean if self.control_mean else None

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "significant": self.significant,
            "estimable": self.estimable,
            "relative_diff": self.relative_diff,
        }


# Values closer than this (relative to their size) are one value: per-user means of equal lists differ by float
# rounding, and a standard error of 1e-17 would make a "constant" difference look certain.
CONSTANT_TOLERANCE = 1e-12


def _mean_and_variance(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if max(values) - min(values) <= CONSTANT_TOLERANCE * max(1.0, abs(mean)):
        return mean, 0.0
    return mean, sum((v - mean) ** 2 for v in values) / (n - 1)


def welch_interval(
    treatment: Sequence[float], control: Sequence[float], confidence: float = 0.95
) -> WelchInterval | None:
    """None when either sample has fewer than two values (no variance estimate)."""
    if len(treatment) < 2 or len(control) < 2:
        return None
    mean_t, var_t = _mean_and_variance(treatment)
    mean_c, var_c = _mean_and_variance(control)
    share_t, share_c = var_t / len(treatment), var_c / len(control)
    se = math.sqrt(share_t + share_c)
    diff = mean_t - mean_c
    if se == 0.0:
        # Both samples constant: a point "interval" (df falls back to the pooled value), not estimable, never
        # significant (see ``significant``).
        return WelchInterval(
            mean_c,
            mean_t,
            diff,
            diff,
            diff,
            float(len(treatment) + len(control) - 2),
            0.0,
            len(control),
            len(treatment),
            confidence,
        )
    df = (share_t + share_c) ** 2 / (share_t**2 / (len(treatment) - 1) + share_c**2 / (len(control) - 1))
    half_width = float(scipy_stats.t.ppf(0.5 + confidence / 2, df)) * se
    return WelchInterval(
        mean_c, mean_t, diff, diff - half_width, diff + half_width, df, se, len(control), len(treatment), confidence
    )


@dataclass(frozen=True, slots=True)
class AdjustedInterval:
    """A Welch interval on CUPED-adjusted values, with how much of the variance the covariates explained."""

    interval: WelchInterval
    variance_reduction: float  # 1 - var(adjusted) / var(raw), pooled over both groups

    def as_dict(self) -> dict[str, object]:
        return {**self.interval.as_dict(), "variance_reduction": self.variance_reduction}


def cuped_interval(
    treatment: Sequence[float],
    control: Sequence[float],
    treatment_covariates: Sequence[Sequence[float]],
    control_covariates: Sequence[Sequence[float]],
    confidence: float = 0.95,
) -> AdjustedInterval | None:
    """Welch's interval after regression adjustment on pre-experiment covariates (CUPED, Deng et al. 2013).

    Each value y becomes y - (x - mean x) theta, with theta the least-squares fit of y on x over both groups
    pooled. The covariates must not depend on the treatment (here: what the user would get from the grader's
    reference recommenders), so the difference stays unbiased while the variance shrinks by about R^2.
    """
    if len(treatment) < 2 or len(control) < 2:
        return None
    values = np.asarray([*treatment, *control], dtype=np.float64)
    covariates = np.asarray([*treatment_covariates, *control_covariates], dtype=np.float64).reshape(len(values), -1)
    centred = covariates - covariates.mean(axis=0)
    theta, *_ = np.linalg.lstsq(centred, values - values.mean(), rcond=None)
    adjusted = values - centred @ theta
    interval = welch_interval(adjusted[: len(treatment)].tolist(), adjusted[len(treatment) :].tolist(), confidence)
    assert interval is not None  # both samples have two or more values
    raw_variance = float(values.var())
    reduction = 1.0 - float(adjusted.var()) / raw_variance if raw_variance > 0 else 0.0
    return AdjustedInterval(interval, reduction)
