"""The report's figures render whatever the service names its experiment groups."""

from __future__ import annotations

import base64

from grader.aggregate import Window
from grader.plots import clip_tail, latency_histogram, metrics_over_time


def test_a_group_name_with_dollar_signs_is_drawn_as_text_not_maths() -> None:
    windows = [Window(1, 10, 40, 0.2, 0.25, 5.0), Window(11, 20, 40, 0.3, 0.35, 6.0)]
    # "$\frac$" is a broken maths expression: as a label it made savefig raise after the whole run.
    png = metrics_over_time(windows, {r"T$\frac$": windows}, {"perfect popularity": (0.25, 0.26)})
    assert base64.b64decode(png).startswith(b"\x89PNG")


def test_the_latency_axis_ends_at_the_tail_quantile_and_counts_the_slowest_calls_in_the_last_bar() -> None:
    latencies = [2.0] * 999 + [900.0]
    clipped, upper, beyond = clip_tail(latencies, quantile=99.5)
    assert upper < 10  # one 900 ms call no longer sets the axis
    assert beyond == 1 and clipped.max() == upper and clipped.size == len(latencies)
    assert base64.b64decode(latency_histogram(latencies)).startswith(b"\x89PNG")
    assert base64.b64decode(latency_histogram([])).startswith(b"\x89PNG")
