"""From judged calls to run-level numbers: metric means, coverage, latency, error counts, time windows."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields

from grader.evaluation import CallOutcome
from grader.metrics import LatencySummary, coverage, latency_summary, mean_or_none


@dataclass(frozen=True, slots=True)
class ErrorCounts:
    """Contract violations. Units: calls for the first four and the last, list entries for the rest."""

    no_response: int = 0  # connection error or timeout on /recs
    non_200: int = 0  # /recs answered with another status
    invalid_body: int = 0  # 200 whose body is not {"item_ids": [str, ...]}
    wrong_length: int = 0
    duplicates: int = 0  # repeated entries inside one list
    unknown_ids: int = 0  # entries that are not catalog items
    reshown: int = 0  # entries already shown to the same user by an earlier call
    interact_failures: int = 0  # /interact calls that did not answer 200

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}

    @classmethod
    def of(cls, outcomes: Iterable[CallOutcome]) -> ErrorCounts:
        counts: dict[str, int] = defaultdict(int)
        for o in outcomes:
            counts["no_response"] += o.no_response
            counts["non_200"] += o.non_200
            counts["invalid_body"] += o.invalid_body
            counts["wrong_length"] += o.wrong_length
            counts["duplicates"] += o.duplicates
            counts["unknown_ids"] += o.unknown_ids
            counts["reshown"] += o.reshown
            counts["interact_failures"] += o.interact_failed
        return cls(**counts)


@dataclass(frozen=True, slots=True)
class MetricSummary:
    users: int
    calls: int
    # calls * k: the positions the system had to fill.
    slots: int
    hits: int
    precision: float
    ndcg: float
    diversity: float | None
    lists_with_diversity: int
    unique_items: int
    coverage: float
    latency: LatencySummary
    errors: ErrorCounts

    def as_dict(self) -> dict[str, object]:
        return {
            "users": self.users,
            "calls": self.calls,
            "slots": self.slots,
            "hits": self.hits,
            "precision": self.precision,
            "ndcg": self.ndcg,
            "diversity": self.diversity,
            "lists_with_diversity": self.lists_with_diversity,
            "unique_items": self.unique_items,
            "coverage": self.coverage,
            "latency_ms": self.latency.as_dict(),
            "errors": self.errors.as_dict(),
        }


def summarize(outcomes: Sequence[CallOutcome], catalog_size: int, k: int) -> MetricSummary:
    diversities = [o.diversity for o in outcomes if o.diversity is not None]
    unique_items = {item for o in outcomes for item in o.new_items}
    return MetricSummary(
        users=len({o.arrival for o in outcomes}),
        calls=len(outcomes),
        slots=len(outcomes) * k,
        hits=sum(o.hits for o in outcomes),
        precision=mean_or_none([o.precision for o in outcomes]) or 0.0,
        ndcg=mean_or_none([o.ndcg for o in outcomes]) or 0.0,
        diversity=mean_or_none(diversities),
        lists_with_diversity=len(diversities),
        unique_items=len(unique_items),
        coverage=coverage(len(unique_items), catalog_size),
        latency=latency_summary([o.latency_ms for o in outcomes if o.latency_ms is not None]),
        errors=ErrorCounts.of(outcomes),
    )


def failure_causes(outcomes: Iterable[CallOutcome]) -> dict[str, int]:
    """Failed /recs calls by cause, most frequent first: the exception of a call that got no response (its type),
    the status of a non-200, or "invalid body"."""
    causes: Counter[str] = Counter()
    for o in outcomes:
        if o.no_response:
            causes[(o.error or "no response").split(":", 1)[0]] += 1
        elif o.non_200:
            causes[f"HTTP {o.status}"] += 1
        elif o.invalid_body:
            causes["invalid body"] += 1
    return dict(causes.most_common())


# The metrics compared between A/B groups, one value per user (the mean over that user's calls or lists).
PER_USER_METRICS = ("precision", "ndcg", "diversity", "latency_ms")


def per_user_table(outcomes: Sequence[CallOutcome]) -> dict[str, dict[int, float]]:
    """metric -> {user arrival: the mean over that user's calls}; a user without any value for a metric is left out."""
    by_user: dict[int, list[CallOutcome]] = defaultdict(list)
    for o in outcomes:
        by_user[o.arrival].append(o)
    table: dict[str, dict[int, float]] = {metric: {} for metric in PER_USER_METRICS}
    for arrival in sorted(by_user):
        calls = by_user[arrival]
        per_metric = {
            "precision": [o.precision for o in calls],
            "ndcg": [o.ndcg for o in calls],
            "diversity": [o.diversity for o in calls if o.diversity is not None],
            "latency_ms": [o.latency_ms for o in calls if o.latency_ms is not None],
        }
        for metric, user_values in per_metric.items():
            mean = mean_or_none(user_values)
            if mean is not None:
                table[metric][arrival] = mean
    return table


@dataclass(frozen=True, slots=True)
class Window:
    first_user: int
    last_user: int
    calls: int
    precision: float
    ndcg: float
    latency_mean_ms: float | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def windows_by_arrival(outcomes: Sequence[CallOutcome], total_users: int, windows: int = 20) -> list[Window]:
    """Metrics in consecutive windows of users by arrival order: does the system learn as users arrive?"""
    if total_users == 0:
        return []
    size = max(1, math.ceil(total_users / windows))
    grouped: dict[int, list[CallOutcome]] = defaultdict(list)
    for o in outcomes:
        grouped[o.arrival // size].append(o)
    result = []
    for window in sorted(grouped):
        calls = grouped[window]
        result.append(
            Window(
                first_user=window * size,
                last_user=min(total_users, (window + 1) * size) - 1,
                calls=len(calls),
                precision=mean_or_none([o.precision for o in calls]) or 0.0,
                ndcg=mean_or_none([o.ndcg for o in calls]) or 0.0,
                latency_mean_ms=mean_or_none([o.latency_ms for o in calls if o.latency_ms is not None]),
            )
        )
    return result
