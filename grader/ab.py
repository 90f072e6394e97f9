"""A/B results: every metric per experiment group, and each treatment's effect against control.

A user belongs to the group named by the ``X-Experiment-Group`` header of their first answer that had one;
users never told their group are reported as ``UNASSIGNED`` and left out of the comparisons.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from grader.aggregate import PER_USER_METRICS, MetricSummary, per_user_values, summarize
from grader.evaluation import CallOutcome
from grader.stats import WelchInterval, welch_interval
from grader.traces import UserTrace

UNASSIGNED = "(none)"


@dataclass(frozen=True, slots=True)
class Effect:
    treatment: str
    control: str
    metric: str
    interval: WelchInterval | None

    def as_dict(self) -> dict[str, object]:
        return {
            "treatment": self.treatment,
            "control": self.control,
            "metric": self.metric,
            **(self.interval.as_dict() if self.interval else {"diff": None, "significant": None}),
        }


@dataclass(frozen=True, slots=True)
class GroupComparison:
    control: str
    groups: dict[str, MetricSummary]
    effects: tuple[Effect, ...]
    users_switching_group: int

    def as_dict(self) -> dict[str, object]:
        return {
            "control": self.control,
            "groups": {name: summary.as_dict() for name, summary in self.groups.items()},
            "effects": [effect.as_dict() for effect in self.effects],
            "users_switching_group": self.users_switching_group,
        }


def outcomes_by_group(traces: Sequence[UserTrace], outcomes: Sequence[CallOutcome]) -> dict[str, list[CallOutcome]]:
    group_of = {trace.arrival: trace.group or UNASSIGNED for trace in traces}
    grouped: dict[str, list[CallOutcome]] = defaultdict(list)
    for outcome in outcomes:
        grouped[group_of.get(outcome.arrival, UNASSIGNED)].append(outcome)
    return dict(grouped)


def compare_groups(
    traces: Sequence[UserTrace],
    outcomes: Sequence[CallOutcome],
    group_order: Sequence[str],
    control: str,
    catalog_size: int,
    k: int,
) -> GroupComparison:
    """Per-group summaries (configured groups first, in config order) and treatment-vs-control effects."""
    grouped = outcomes_by_group(traces, outcomes)
    names = [name for name in group_order if name in grouped]
    names += sorted(name for name in grouped if name not in names)
    summaries = {name: summarize(grouped[name], catalog_size, k) for name in names}
    effects: list[Effect] = []
    if control in grouped:
        control_values = per_user_values(grouped[control])
        for name in names:
            if name in (control, UNASSIGNED):
                continue
            treatment_values = per_user_values(grouped[name])
            effects += [
                Effect(name, control, metric, welch_interval(treatment_values[metric], control_values[metric]))
                for metric in PER_USER_METRICS
            ]
    return GroupComparison(control, summaries, tuple(effects), sum(t.switched_group for t in traces))
