"""Pure numbers: percentiles, ratios, rates and trends. No I/O, so the unit tests can pin them down."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def summarize(values: Sequence[float]) -> dict[str, float]:
    """count, mean, p50, p95, p99 and max of some samples (an empty sequence gives count 0 only)."""
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "mean": sum(values) / len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def meets(value: float | None, target: float, higher_is_better: bool = True) -> bool | None:
    """Whether a measured value meets its target; None when nothing was measured."""
    if value is None:
        return None
    return value >= target if higher_is_better else value <= target


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (0.0 for fewer than two distinct xs)."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} xs but {len(ys)} ys")
    n = len(xs)
    if n < 2:
        return 0.0
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def rate(samples: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """Average rate of a monotonic counter between two times, from (time, value) samples.

    Uses the first sample at or after ``start`` and the last at or before ``end``; None when fewer than two
    samples fall in the window.
    """
    inside = [(t, v) for t, v in samples if start <= t <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    (t0, v0), (t1, v1) = inside[0], inside[-1]
    return (v1 - v0) / (t1 - t0)


def baseline_slope(xs: Sequence[float], ys: Sequence[float], bin_width: float) -> float:
    """Least-squares slope of the per-bin minima of ys (bins of ``bin_width`` along xs, from the first x).

    The minimum of each bin is the baseline under periodic spikes (a retrain's transient memory every 30 s), so
    the spikes do not tilt the trend, while a steady climb of the baseline does.
    """
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} xs but {len(ys)} ys")
    if bin_width <= 0:
        raise ValueError("bin_width must be positive")
    if not xs:
        return 0.0
    bins: dict[int, tuple[float, float]] = {}
    origin = min(xs)
    for x, y in zip(xs, ys, strict=True):
        index = int((x - origin) // bin_width)
        if index not in bins or y < bins[index][1]:
            bins[index] = (origin + (index + 0.5) * bin_width, y)
    centers = [bins[i][0] for i in sorted(bins)]
    minima = [bins[i][1] for i in sorted(bins)]
    return slope(centers, minima)
