"""Pure functions from backend answers to the webapp's API shapes (no I/O, so they are easy to test)."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from webapp.backends import RecsAnswer
from webapp.explain import describe, split_source
from webapp.schemas import (
    ExperimentInfo,
    GroupInfo,
    HistoryEntry,
    ModelInfo,
    PipelineInfo,
    RecItem,
    RecsPage,
    StatusPage,
    TrainingInfo,
    UserPage,
)
from webapp.upstream import CatalogEntry, Experiment, PipelineStatus, RecsStatus, UserDebug

# Fields of the model metadata / pipeline status that are bookkeeping, not training metrics.
MODEL_BOOKKEEPING = frozenset({"version", "published_at", "generation"})
TRAINING_BOOKKEEPING = frozenset(
    {"model_version", "last_trained_at", "retrain_seconds", "generation", "mlflow_run_id", "mlflow_run_url"}
)


def anchor_ids(answer: RecsAnswer) -> list[str]:
    """The items some recommendations derive from ("neighbour:<id>"), whose titles the "why" text needs."""
    return [anchor for _, anchor in map(split_source, answer.sources) if anchor is not None]


def recs_page(
    user_id: str, answer: RecsAnswer, catalog: dict[str, CatalogEntry], warnings: list[str] | None = None
) -> RecsPage:
    items = []
    for position, item_id in enumerate(answer.item_ids):
        # An older backend may send fewer sources than items: the rest are "unknown", never misaligned.
        source, anchor = split_source(answer.sources[position] if position < len(answer.sources) else "")
        entry = catalog.get(item_id)
        anchor_entry = catalog.get(anchor) if anchor is not None else None
        items.append(
            RecItem(
                item_id=item_id,
                title=entry.title if entry else None,
                genres=entry.genres if entry else [],
                source=source,
                why=describe(source, anchor_entry.title if anchor_entry else None),
                because_item_id=anchor,
            )
        )
    return RecsPage(user_id=user_id, group=answer.group, fallback=answer.fallback, items=items, warnings=warnings or [])


def user_page(user_id: str, debug: UserDebug) -> UserPage:
    history = [
        HistoryEntry(item_id=record.item_id, title=debug.titles.get(record.item_id), action=record.action, ts=record.ts)
        for record in debug.history
    ]
    return UserPage(user_id=user_id, group=debug.group, shown_count=debug.shown_count, history=history, twin=debug.twin)


def status_page(
    status: RecsStatus,
    experiment: Experiment | None,
    pipeline: PipelineStatus | None,
    now: float,
    mlflow_url: str | None,
    warnings: list[str] | None = None,
) -> StatusPage:
    return StatusPage(
        generated_at=now,
        catalog_size=status.catalog_size,
        events_stored=status.events_stored,
        bandit_arms=status.bandit_arms,
        bandit_version=status.bandit_version,
        model=_model_info(status, now),
        training=_training_info(status.pipeline, now),
        pipeline=_pipeline_info(status.pipeline_alive, pipeline),
        experiment=_experiment_info(status.experiment, experiment),
        counters=status.counters,
        mlflow_url=safe_http_url(mlflow_url),
        warnings=warnings or [],
    )


def safe_http_url(value: str | None) -> str | None:
    """The URL if it is an absolute http(s) link, else None: a "javascript:" value must never become an href."""
    if not value:
        return None
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _numbers(values: dict[str, Any], skip: frozenset[str]) -> dict[str, float]:
    parsed = {key: _number(value) for key, value in values.items() if key not in skip}
    return {key: value for key, value in sorted(parsed.items()) if value is not None}


def _age(now: float, then: float | None) -> float | None:
    return max(0.0, now - then) if then is not None else None


def _model_info(status: RecsStatus, now: float) -> ModelInfo | None:
    if not status.model_version:  # versions start at 1 (INCR): /status reports 0 before the first model
        return None
    meta = status.model or {}
    published_at = _number(meta.get("published_at"))
    return ModelInfo(
        version=status.model_version,
        published_at=published_at,
        age_seconds=_age(now, published_at),
        metrics=_numbers(meta, MODEL_BOOKKEEPING),
    )


def _training_info(hash_: dict[str, str], now: float) -> TrainingInfo | None:
    if not hash_:
        return None
    last = _number(hash_.get("last_trained_at"))
    return TrainingInfo(
        last_trained_at=last,
        seconds_ago=_age(now, last),
        retrain_seconds=_number(hash_.get("retrain_seconds")),
        mlflow_run_id=hash_.get("mlflow_run_id") or None,
        mlflow_run_url=safe_http_url(hash_.get("mlflow_run_url")),
        metrics=_numbers(hash_, TRAINING_BOOKKEEPING),
    )


def _pipeline_info(alive: bool, pipeline: PipelineStatus | None) -> PipelineInfo:
    if pipeline is None:
        return PipelineInfo(alive=alive, reachable=False)
    twins = pipeline.twins
    return PipelineInfo(
        alive=alive,
        reachable=True,
        **pipeline.model_dump(exclude={"twins"}),
        twins_users=None if twins is None else twins.users_in_book,
        twins_linked=None if twins is None else twins.users_linked,
        twins_published=None if twins is None else twins.lifts_published,
    )


def _experiment_info(name: str | None, experiment: Experiment | None) -> ExperimentInfo:
    if experiment is None:
        return ExperimentInfo(name=name, groups=[])
    live = {group.name: group.model_dump(exclude={"name"}) for group in experiment.live}
    groups = [GroupInfo(**group.model_dump(), **live.get(group.name, {})) for group in experiment.groups]
    return ExperimentInfo(name=experiment.name, groups=groups)
