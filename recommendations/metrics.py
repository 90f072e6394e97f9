"""Prometheus metrics of the recommendations service (in the app's own registry, served at /metrics)."""

from __future__ import annotations

from collections import Counter

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as MetricCounter


class RecsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.answers = MetricCounter(
            "recs_answers", "/recs answers by experiment group and mode", ["group", "mode"], registry=registry
        )
        self.items = MetricCounter(
            "recs_items", "Recommended items by why they were chosen", ["source"], registry=registry
        )
        self.model_version = Gauge("recs_served_model_version", "Model version this replica serves", registry=registry)
        self.bandit_version = Gauge(
            "recs_served_bandit_version", "Bandit snapshot version this replica serves", registry=registry
        )

    def observe(self, group: str, sources: list[str], fallback: bool, model_version: int, bandit_version: int) -> None:
        self.answers.labels(group, "fallback" if fallback else "normal").inc()
        for source, count in Counter(source.partition(":")[0] for source in sources).items():
            self.items.labels(source).inc(count)
        self.model_version.set(model_version)
        self.bandit_version.set(bandit_version)
