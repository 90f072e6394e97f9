"""A/B results: every metric per experiment group, and each treatment's effect against control.

A user belongs to the group named by the ``X-Experiment-Group`` header of their first answer that had one;
users never told their group are reported as ``UNASSIGNED`` and left out of the comparisons.

Precision and NDCG differences are also reported CUPED-adjusted: the covariates are what the grader's two
reference recommenders (perfect popularity and the oracle) score for the same user, which depend only on the
user's ratings, not on the group, so they remove user-to-user variance without biasing the difference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from grader.aggregate import PER_USER_METRICS, MetricSummary, per_user_table, summarize
from grader.evaluation import CallOutcome
from grader.stats import AdjustedInterval, WelchInterval, cuped_interval, welch_interval
from grader.traces import UserTrace

UNASSIGNED = "(none)"


@dataclass(frozen=True, slots=True)
class Effect:
    treatment: str
    control: str
    metric: str
    interval: WelchInterval | None
    adjusted: AdjustedInterval | None = None  # CUPED; only for metrics with reference covariates

    def as_dict(self) -> dict[str, object]:
        return {
            "treatment": self.treatment,
            "control": self.control,
            "metric": self.metric,
            **(self.interval.as_dict() if self.interval else {"diff": None, "significant": None}),
            "cuped": self.adjusted.as_dict() if self.adjusted else None,
        }


# metric -> {user arrival: covariate vector}; computed before or without the system under test.
Covariates = Mapping[str, Mapping[int, Sequence[float]]]


def _effect(
    treatment: str,
    control: str,
    metric: str,
    treatment_values: Mapping[int, float],
    control_values: Mapping[int, float],
    covariates: Covariates,
) -> Effect:
    interval = welch_interval(list(treatment_values.values()), list(control_values.values()))
    by_user = covariates.get(metric)
    adjusted = None
    if by_user and all(a in by_user for a in (*treatment_values, *control_values)):
        adjusted = cuped_interval(
            list(treatment_values.values()),
            list(control_values.values()),
            [by_user[a] for a in treatment_values],
            [by_user[a] for a in control_values],
        )
    return Effect(treatment, control, metric, interval, adjusted)


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
    covariates: Covariates | None = None,
) -> GroupComparison:
    """Per-group summaries (configured groups first, in config order) and treatment-vs-control effects."""
    grouped = outcomes_by_group(traces, outcomes)
    names = [name for name in group_order if name in grouped]
    names += sorted(name for name in grouped if name not in names)
    summaries = {name: summarize(grouped[name], catalog_size, k) for name in names}
    effects: list[Effect] = []
    if control in grouped:
        control_values = per_user_table(grouped[control])
        for name in names:
            if name in (control, UNASSIGNED):
                continue
            treatment_values = per_user_table(grouped[name])
            effects += [
                _effect(name, control, metric, treatment_values[metric], control_values[metric], covariates or {})
                for metric in PER_USER_METRICS
            ]
    return GroupComparison(control, summaries, tuple(effects), sum(t.switched_group for t in traces))
