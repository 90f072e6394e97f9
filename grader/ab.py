"""A/B results: every metric per experiment group, and each treatment's effect against control.

A user belongs to the group named by the ``X-Experiment-Group`` header of their first answer that had one, else
to the group the service's ``GET /experiments/assignment/{user_id}`` gave after the load (a user whose calls all
failed without the header must still count against their arm: dropping them biases the effect towards the failing
arm). Users still without a group are reported as ``UNASSIGNED`` and left out of the effects. Every configured
group is listed, with a reason when it has no users or no answered call.

Precision and NDCG differences are also reported CUPED-adjusted: the covariates are what the grader's two
reference recommenders (perfect popularity and the oracle) score for the same user, which depend only on the
user's ratings, not on the group, so they remove user-to-user variance without biasing the difference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from grader.aggregate import PER_USER_METRICS, MetricSummary, per_user_table, summarize
from grader.evaluation import CallOutcome
from grader.stats import AdjustedInterval, WelchInterval, cuped_interval, welch_interval
from grader.traces import UNASSIGNED, UserTrace


@dataclass(frozen=True, slots=True)
class Effect:
    treatment: str
    control: str
    metric: str
    interval: WelchInterval | None
    adjusted: AdjustedInterval | None = None  # CUPED; only for metrics with reference covariates
    reason: str | None = None  # why there is no interval

    def as_dict(self) -> dict[str, object]:
        return {
            "treatment": self.treatment,
            "control": self.control,
            "metric": self.metric,
            **(self.interval.as_dict() if self.interval else {"diff": None, "significant": None}),
            "cuped": self.adjusted.as_dict() if self.adjusted else None,
            "reason": self.reason,
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
    if interval is None:
        reason = _no_interval_reason(metric, (control, control_values), (treatment, treatment_values))
        return Effect(treatment, control, metric, None, reason=reason)
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


def _no_interval_reason(metric: str, *arms: tuple[str, Mapping[int, float]]) -> str:
    for name, values in arms:
        if len(values) < 2:
            return f"{name} has {len(values)} user(s) with a {metric} value, 2 needed"
    return "no interval"  # not reached: welch_interval only gives none with fewer than two values


@dataclass(frozen=True, slots=True)
class GroupComparison:
    control: str
    groups: dict[str, MetricSummary]
    effects: tuple[Effect, ...]
    users_switching_group: int
    # Users with calls that no header and no lookup placed in a group (listed as UNASSIGNED, in no effect).
    unassigned_users: int = 0
    # Per group: why it has nothing to compare (no users, or no call answered).
    group_notes: dict[str, str] = field(default_factory=dict)
    # Run-level remarks: the control not observed, how users without a header were placed.
    notes: tuple[str, ...] = ()

    @property
    def control_observed(self) -> bool:
        return self.groups.get(self.control) is not None and self.groups[self.control].users > 0

    def as_dict(self) -> dict[str, object]:
        return {
            "control": self.control,
            "control_observed": self.control_observed,
            "groups": {name: summary.as_dict() for name, summary in self.groups.items()},
            "group_notes": dict(self.group_notes),
            "effects": [effect.as_dict() for effect in self.effects],
            "users_switching_group": self.users_switching_group,
            "unassigned_users": self.unassigned_users,
            "notes": list(self.notes),
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
    notes: Sequence[str] = (),
) -> GroupComparison:
    """Per-group summaries (every configured group first, in config order, even without users) and each
    treatment's effects against control; an effect without an interval says why."""
    grouped = outcomes_by_group(traces, outcomes)
    names = list(dict.fromkeys([*group_order, control]))
    names += sorted(name for name in grouped if name not in names)
    summaries = {name: summarize(grouped.get(name, []), catalog_size, k) for name in names}
    group_notes = {
        name: note for name in names if name != UNASSIGNED and (note := _group_note(grouped.get(name, []))) is not None
    }
    all_notes = list(notes)  # an unobserved control is flagged by ``control_observed``
    # Failed calls stay in: a user placed in an arm counts with precision and NDCG 0 for each failed call, as
    # in the run's own means ("failed ones included").
    control_values = per_user_table(grouped.get(control, []))
    effects: list[Effect] = []
    for name in names:
        if name in (control, UNASSIGNED):
            continue
        treatment_values = per_user_table(grouped.get(name, []))
        effects += [
            _effect(name, control, metric, treatment_values[metric], control_values[metric], covariates or {})
            for metric in PER_USER_METRICS
        ]
    unassigned = len({o.arrival for o in grouped.get(UNASSIGNED, [])})
    if unassigned:
        all_notes.append(f"{unassigned} users could not be placed in a group and are left out of the effects")
    return GroupComparison(
        control,
        summaries,
        tuple(effects),
        sum(t.switched_group for t in traces),
        unassigned_users=unassigned,
        group_notes=group_notes,
        notes=tuple(all_notes),
    )


def _group_note(outcomes: Sequence[CallOutcome]) -> str | None:
    if not outcomes:
        return "no users observed"
    if all(o.no_response or o.non_200 or o.invalid_body for o in outcomes):
        users = len({o.arrival for o in outcomes})
        return f"every /recs call of its {users} users failed (counted with precision and NDCG 0)"
    return None
