"""A/B experiments: groups of strategies with traffic shares, users assigned by a stable hash.

A user's group is ``murmur3(user_id, seed=murmur3(salt))`` mapped onto the cumulative shares, so every replica
agrees without coordination and renaming the experiment reshuffles users.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mmh3
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys_core.strategies.base import Strategy
from recsys_core.strategies.registry import StrategyConfigError, build_strategy

BUCKETS = 10_000
SHARE_TOLERANCE = 1e-6
# A group name travels in the X-Experiment-Group header and in reports: header-safe ASCII without spaces (a
# client strips surrounding spaces, latin-1 cannot encode "Ω", a newline breaks the response).
GROUP_NAME_PATTERN = r"^[A-Za-z0-9._:+-]{1,32}$"
# The grader's label for users it could not place in a group (grader.ab.UNASSIGNED): never a real group.
RESERVED_GROUP_NAMES = frozenset({"(none)"})


class ExperimentConfigError(ValueError):
    """The experiment configuration cannot be used; the message says why."""


class GroupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    strategy: str
    # Strict: YAML's `share: true` must not pass as 1.0 (ints are still fine).
    share: float = Field(gt=0, le=1, strict=True)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _header_safe_name(cls, name: str) -> str:
        if name in RESERVED_GROUP_NAMES or not re.fullmatch(GROUP_NAME_PATTERN, name):
            raise ValueError(
                f"group name {name!r} must be 1-32 characters of A-Z a-z 0-9 . _ : + - (it is sent in the "
                f"X-Experiment-Group header), and not {sorted(RESERVED_GROUP_NAMES)}"
            )
        return name


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    groups: list[GroupConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        total = sum(group.share for group in self.groups)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            shares = ", ".join(f"{g.name}={g.share}" for g in self.groups)
            raise ValueError(f"group shares must add up to 1, got {total:g} ({shares})")
        names = [group.name for group in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"group names must be unique, got {names}")
        return self

    @classmethod
    def single(cls, strategy: str, params: Mapping[str, Any] | None = None) -> ExperimentConfig:
        group = GroupConfig(name="C", strategy=strategy, share=1.0, params=dict(params or {}))
        return cls(name="default", groups=[group])


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    strategy_name: str
    strategy: Strategy
    upper_bucket: int  # users whose bucket is below this (and above the previous group's) belong here


@dataclass(frozen=True, slots=True)
class Experiment:
    config: ExperimentConfig
    groups: tuple[Group, ...]
    salt_seed: int

    @classmethod
    def from_config(cls, config: ExperimentConfig) -> Experiment:
        groups: list[Group] = []
        cumulative = 0.0
        for position, group in enumerate(config.groups):
            cumulative += group.share
            upper = BUCKETS if position == len(config.groups) - 1 else round(cumulative * BUCKETS)
            lower = groups[-1].upper_bucket if groups else 0
            if upper <= lower:
                raise ExperimentConfigError(
                    f"experiment {config.name!r}, group {group.name!r}: a share of {group.share:g} gets none of the "
                    f"{BUCKETS} buckets; give it at least {1 / BUCKETS:g}"
                )
            try:
                strategy = build_strategy(group.strategy, group.params)
            except StrategyConfigError as error:
                raise ExperimentConfigError(f"experiment {config.name!r}, group {group.name!r}: {error}") from error
            groups.append(Group(group.name, group.strategy, strategy, upper))
        return cls(config, tuple(groups), mmh3.hash(config.name, signed=False))

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def control(self) -> Group:
        """The group named "C" when there is one, else the first in the config (the grader's rule too)."""
        return next((group for group in self.groups if group.name == "C"), self.groups[0])

    def bucket(self, user_id: str) -> int:
        return mmh3.hash(user_id, seed=self.salt_seed, signed=False) % BUCKETS

    def assign(self, user_id: str) -> Group:
        bucket = self.bucket(user_id)
        for group in self.groups:
            if bucket < group.upper_bucket:
                return group
        return self.groups[-1]

    def describe(self) -> dict[str, Any]:
        return self.config.model_dump()


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load refusing duplicate mapping keys: a repeated `name` would silently win, and the name is the
    hashing salt (a different name reshuffles every user)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` brings defaults in; it repeats nothing
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_experiment(raw: str | Mapping[str, Any], source: str) -> ExperimentConfig:
    try:
        data = yaml.load(raw, Loader=_UniqueKeyLoader) if isinstance(raw, str) else dict(raw)
        return ExperimentConfig.model_validate(data)
    except (ValidationError, yaml.YAMLError, json.JSONDecodeError, TypeError) as error:
        raise ExperimentConfigError(f"invalid experiment configuration in {source}: {error}") from error


def load_experiment(experiment_file: Path | None, inline: str | None, default_strategy: str) -> Experiment:
    """The experiment from EXPERIMENT_CONFIG (inline YAML/JSON), else EXPERIMENT_FILE, else one default group."""
    if inline:
        config = parse_experiment(inline, "EXPERIMENT_CONFIG")
    elif experiment_file is not None:
        try:
            text = Path(experiment_file).read_text(encoding="utf-8")
        except OSError as error:
            raise ExperimentConfigError(f"cannot read EXPERIMENT_FILE {experiment_file}: {error}") from error
        config = parse_experiment(text, str(experiment_file))
    else:
        config = ExperimentConfig.single(default_strategy)
    return Experiment.from_config(config)


# --- live outcomes per group ---------------------------------------------------------------------------------------
# The claim script counts each group's answers and impressions, the event store its likes and dislikes, in the
# run's counters hash (fields "<counter>:<group>"), and both keep per-user sums (recsys_core.lua's A/B tallies)
# from which the like rate's interval is computed per user. This is what /experiments reports while it runs.
GROUP_COUNTERS = (
    "recs",
    "impressions",
    "likes",
    "dislikes",
    "users",
    "likes_sq",
    "impressions_sq",
    "likes_x_impressions",
)
Z_95 = 1.959964


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    """A group's counts, and the per-user sums (users, Σ likes², Σ impressions², Σ likes × impressions)."""

    name: str
    recs: int = 0
    impressions: int = 0
    likes: int = 0
    dislikes: int = 0
    users: int = 0
    likes_sq: int = 0
    impressions_sq: int = 0
    likes_x_impressions: int = 0

    @property
    def like_rate(self) -> float | None:
        """Likes per impression (None before the group's first impression)."""
        return self.likes / self.impressions if self.impressions else None

    def like_rate_variance(self) -> float | None:
        """Variance of the like rate with users as the unit (the delta method for a ratio of per-user sums): a
        user's impressions are not independent draws. None with fewer than two users or no impression."""
        n, rate = self.users, self.like_rate
        if n < 2 or rate is None:
            return None
        mean_shown = self.impressions / n
        # Σ (likes_u − rate × shown_u)² over users, from the sums; it is ≥ 0 up to rounding.
        residuals = self.likes_sq - 2 * rate * self.likes_x_impressions + rate * rate * self.impressions_sq
        return max(residuals, 0.0) / (n - 1) / (n * mean_shown * mean_shown)


def like_rate_interval(outcome: GroupOutcome, z: float = Z_95) -> tuple[float, float] | None:
    variance, rate = outcome.like_rate_variance(), outcome.like_rate
    if variance is None or rate is None:
        return None
    half = z * math.sqrt(variance)
    return max(0.0, rate - half), min(1.0, rate + half)


def rate_difference(control: GroupOutcome, treatment: GroupOutcome, z: float = Z_95) -> dict[str, float] | None:
    """Treatment minus control like rate, with a per-user 95% interval."""
    variances = (control.like_rate_variance(), treatment.like_rate_variance())
    if control.like_rate is None or treatment.like_rate is None or None in variances:
        return None
    half = z * math.sqrt(sum(v for v in variances if v is not None))
    difference = treatment.like_rate - control.like_rate
    return {"difference": difference, "low": difference - half, "high": difference + half}


def group_outcomes(experiment: Experiment, counters: Mapping[str, int]) -> list[GroupOutcome]:
    """Each group's outcome so far, from the run's counters (missing fields count 0)."""
    return [
        GroupOutcome(group.name, *(int(counters.get(f"{counter}:{group.name}", 0)) for counter in GROUP_COUNTERS))
        for group in experiment.groups
    ]


def live_report(experiment: Experiment, counters: Mapping[str, int]) -> list[dict[str, Any]]:
    """Per group: its counts, its like rate with a 95% interval, and its difference from the control group; the
    intervals take users as the unit, as the grader's do (they answer to the like rate per impression, not to
    the grader's per-user mean precision, which weighs users equally)."""
    outcomes = group_outcomes(experiment, counters)
    control = next(outcome for outcome in outcomes if outcome.name == experiment.control.name)
    report = []
    for outcome in outcomes:
        interval = like_rate_interval(outcome)
        report.append(
            {
                "name": outcome.name,
                "users": outcome.users,
                "recs": outcome.recs,
                "impressions": outcome.impressions,
                "likes": outcome.likes,
                "dislikes": outcome.dislikes,
                "like_rate": outcome.like_rate,
                "like_rate_95": list(interval) if interval else None,
                "vs_control": None if outcome is control else rate_difference(control, outcome),
            }
        )
    return report
