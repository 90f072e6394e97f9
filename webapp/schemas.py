"""The webapp's own JSON API: what the page's script reads and sends."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from recsys_core.schemas import Action, ItemId, UserId


class RecItem(BaseModel):
    item_id: str
    title: str | None
    genres: list[str]
    source: str
    why: str
    # For "neighbour": the liked item this one is similar to.
    because_item_id: str | None = None


class RecsPage(BaseModel):
    user_id: str
    group: str | None
    fallback: bool
    items: list[RecItem]
    warnings: list[str] = Field(default_factory=list)


class HistoryEntry(BaseModel):
    item_id: str
    title: str | None
    action: str
    ts: float | None


class UserPage(BaseModel):
    user_id: str
    group: str | None
    shown_count: int
    history: list[HistoryEntry]
    # The earlier user this one answers like (the pipeline's twin link), if any.
    twin: str | None = None


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    item_id: ItemId
    action: Action


class FeedbackResponse(BaseModel):
    status: str
    collector_status: int
    message_id: str | None
    user_id: str
    item_id: str
    action: Action


class ModelInfo(BaseModel):
    version: int
    published_at: float | None
    age_seconds: float | None
    metrics: dict[str, float]


class TrainingInfo(BaseModel):
    last_trained_at: float | None
    seconds_ago: float | None
    retrain_seconds: float | None
    mlflow_run_id: str | None
    # Only http(s) links get here: the page puts this value in an href.
    mlflow_run_url: str | None
    metrics: dict[str, float]


class PipelineInfo(BaseModel):
    alive: bool
    reachable: bool
    role: str | None = None  # "leader" or "standby" (pipeline/leadership.py)
    events_applied: int | None = None
    events_in_training_window: int | None = None
    events_since_train: int | None = None
    consumer_connected: bool | None = None
    training_in_progress: bool | None = None
    # Twin matching: users whose answers the pipeline keeps (and how many of them are linked to a twin), and
    # lifts it has published.
    twins_users: int | None = None
    twins_linked: int | None = None
    twins_published: int | None = None


class GroupInfo(BaseModel):
    name: str
    strategy: str
    share: float
    params: dict[str, Any]
    # Live in the current run: likes per impression (95%, users as the unit) and the difference from the control.
    users: int = 0
    impressions: int = 0
    likes: int = 0
    like_rate: float | None = None
    like_rate_95: tuple[float, float] | None = None
    vs_control: dict[str, float] | None = None  # difference, low, high


class ExperimentInfo(BaseModel):
    name: str | None
    groups: list[GroupInfo]


class StatusPage(BaseModel):
    generated_at: float
    catalog_size: int
    events_stored: int
    bandit_arms: int
    bandit_version: int | None
    model: ModelInfo | None
    training: TrainingInfo | None
    pipeline: PipelineInfo
    experiment: ExperimentInfo
    counters: dict[str, int]
    mlflow_url: str | None
    warnings: list[str] = Field(default_factory=list)


class ErrorBody(BaseModel):
    detail: str
    service: str | None = None
    upstream_status: int | None = None
