"""The shapes the webapp reads from the other services, validated so a changed contract is a clear 502.

Every model ignores unknown fields and defaults the optional ones: backends may add fields without
breaking the UI.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Upstream(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RecsBody(Upstream):
    item_ids: list[str]


class CatalogEntry(Upstream):
    item_id: str
    title: str | None = None
    genres: list[str] = Field(default_factory=list)


class HistoryRecord(Upstream):
    item_id: str
    action: str
    ts: float | None = None


class SourceRecord(Upstream):
    source: str
    group: str | None = None


class UserDebug(Upstream):
    group: str | None = None
    history: list[HistoryRecord] = Field(default_factory=list)
    sources: dict[str, SourceRecord] = Field(default_factory=dict)
    shown_count: int = 0
    titles: dict[str, str] = Field(default_factory=dict)
    twin: str | None = None


class RecsStatus(Upstream):
    catalog_size: int
    events_stored: int = 0
    bandit_arms: int = 0
    bandit_version: int | None = None
    model_version: int | None = None
    model: dict[str, Any] | None = None
    # The pipeline writes its status as a Redis hash: every value is a string.
    pipeline: dict[str, str] = Field(default_factory=dict)
    pipeline_alive: bool = False
    experiment: str | None = None
    counters: dict[str, int] = Field(default_factory=dict)


class ExperimentGroup(Upstream):
    name: str
    strategy: str
    share: float
    params: dict[str, Any] = Field(default_factory=dict)


class RateDifference(Upstream):
    difference: float
    low: float
    high: float


class GroupLive(Upstream):
    """What a group has shown and been answered in the current run (the recommendations service's /experiments)."""

    name: str
    users: int = 0
    impressions: int = 0
    likes: int = 0
    like_rate: float | None = None
    like_rate_95: tuple[float, float] | None = None
    vs_control: RateDifference | None = None


class Experiment(Upstream):
    name: str
    groups: list[ExperimentGroup] = Field(default_factory=list)
    live: list[GroupLive] = Field(default_factory=list)


class TwinsStatus(Upstream):
    users_in_book: int | None = None
    users_linked: int | None = None
    lifts_published: int | None = None


class PipelineStatus(Upstream):
    role: str | None = None
    events_applied: int | None = None
    events_in_training_window: int | None = None
    events_since_train: int | None = None
    consumer_connected: bool | None = None
    training_in_progress: bool | None = None
    twins: TwinsStatus | None = None


class InteractAnswer(Upstream):
    status: str = "accepted"
    message_id: str | None = None
    events: int | None = None
