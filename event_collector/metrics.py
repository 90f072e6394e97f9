"""Prometheus metrics of the collector's publishing (in the app's own registry, served at /metrics)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from event_collector.publisher import EventPublisher


class PublisherMetrics(Collector):
    """The publisher's counts, read at scrape time: events per message shows what group commit achieves."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "collector_events_published", "Events the broker confirmed", value=self._publisher.events_published
        )
        yield CounterMetricFamily(
            "collector_messages_published",
            "Messages the broker confirmed; one message holds the events that waited for a confirm together",
            value=self._publisher.messages_published,
        )
