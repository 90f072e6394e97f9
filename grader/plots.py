"""The report's figures, rendered with matplotlib's object API (no pyplot global state) to base64 PNGs."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from grader.ab import Effect
from grader.aggregate import Window
from grader.stats import WelchInterval


def _plain(name: str) -> str:
    """A group name as literal label text: the service names the groups, and matplotlib reads $...$ as maths."""
    return name.replace("$", r"\$")


def _png_base64(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _midpoints(windows: Sequence[Window]) -> list[float]:
    return [(w.first_user + w.last_user) / 2 for w in windows]


def metrics_over_time(
    windows: Sequence[Window],
    group_windows: Mapping[str, Sequence[Window]],
    references: Mapping[str, tuple[float, float]],
) -> str:
    """Precision and NDCG (and mean latency) per window of users, by arrival order.

    ``references`` maps a reference name to its (precision, NDCG), drawn as horizontal lines.
    """
    figure = Figure(figsize=(10, 7))
    quality, latency = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    x = _midpoints(windows)
    quality.plot(x, [w.precision for w in windows], marker="o", label="precision@10")
    quality.plot(x, [w.ndcg for w in windows], marker="s", label="NDCG@10")
    for name, group in group_windows.items():
        quality.plot(
            _midpoints(group), [w.precision for w in group], linestyle="--", label=f"precision@10 {_plain(name)}"
        )
    for (name, (precision, _ndcg)), style in zip(references.items(), (":", "-."), strict=False):
        quality.axhline(precision, color="grey", linestyle=style, label=f"{name} precision@10")
    quality.set_ylabel("mean per call")
    quality.set_title("Quality as users arrive (windows of users in arrival order)")
    quality.legend(fontsize="small", ncol=2)
    quality.grid(alpha=0.3)
    latency.plot(x, [w.latency_mean_ms or 0.0 for w in windows], marker="o", color="tab:red")
    latency.set_ylabel("mean /recs latency, ms")
    latency.set_xlabel("user arrival index (window midpoint)")
    latency.grid(alpha=0.3)
    return _png_base64(figure)


# The histogram's x axis ends at this quantile: a handful of slow calls would otherwise squeeze the body of
# the distribution into the first few bars. Calls beyond it are counted in the last bar, and the title says so.
HISTOGRAM_UPPER_QUANTILE = 99.5


def clip_tail(
    latencies_ms: Sequence[float], quantile: float = HISTOGRAM_UPPER_QUANTILE
) -> tuple[np.ndarray, float, int]:
    """The latencies with those above the ``quantile``-th percentile set to it, that bound, and how many were."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    upper = float(np.percentile(values, quantile))
    return np.minimum(values, upper), upper, int(np.count_nonzero(values > upper))


def latency_histogram(latencies_ms: Sequence[float]) -> str:
    figure = Figure(figsize=(10, 4))
    axes = figure.subplots()
    # Every call: a call the grader gave up on counts at the time it waited.
    title = f"/recs latency ({len(latencies_ms)} calls)"
    if latencies_ms:
        clipped, upper, beyond = clip_tail(latencies_ms)
        axes.hist(clipped, bins=50, range=(0.0, max(upper, 1e-3)), color="tab:blue", alpha=0.8)
        for q, style in ((50, ":"), (95, "--"), (99, "-.")):
            value = float(np.percentile(latencies_ms, q))
            axes.axvline(value, color="black", linestyle=style, linewidth=1, label=f"p{q} {value:.1f} ms")
        axes.legend(loc="upper right")
        if beyond:
            slowest = max(latencies_ms)
            title += f"; the last bar holds the {beyond} calls over {upper:.1f} ms (the slowest {slowest:.1f} ms)"
    axes.set_xlabel("/recs latency, ms")
    axes.set_ylabel("calls")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return _png_base64(figure)


def effects(effects_list: Sequence[Effect]) -> str:
    """One panel per metric: each treatment's difference to control with its 95% interval."""
    metrics = list(dict.fromkeys(effect.metric for effect in effects_list))
    figure = Figure(figsize=(10, 2.2 * max(1, len(metrics))))
    panels = figure.subplots(max(1, len(metrics)), 1, squeeze=False)[:, 0]
    for axes, metric in zip(panels, metrics, strict=False):
        rows = [e for e in effects_list if e.metric == metric and e.interval is not None]
        for y, effect in enumerate(rows):
            intervals: list[tuple[WelchInterval | None, float, str]] = [(effect.interval, y, "o")]
            if effect.adjusted is not None:
                intervals.append((effect.adjusted.interval, y - 0.25, "s"))  # CUPED just below the raw one
            for interval, position, marker in intervals:
                assert interval is not None  # filtered above; narrows the type
                axes.errorbar(
                    interval.diff,
                    position,
                    xerr=[[interval.diff - interval.low], [interval.high - interval.diff]],
                    fmt=marker,
                    color="tab:green" if interval.significant else "tab:grey",
                    capsize=4,
                )
        axes.axvline(0.0, color="black", linewidth=0.8)
        axes.set_yticks(range(len(rows)), [f"{_plain(e.treatment)} − {_plain(e.control)}" for e in rows])
        axes.set_ylim(-0.8, max(0.7, len(rows) - 0.3))
        axes.set_title(
            f"{metric}: difference to control, 95% Welch interval (squares: CUPED-adjusted)", fontsize="medium"
        )
        axes.grid(alpha=0.3, axis="x")
    return _png_base64(figure)
