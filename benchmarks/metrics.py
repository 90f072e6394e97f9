"""Reading a service's own Prometheus ``/metrics``: totals of its request latency histogram."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

# Before commit 2d2c7c6 the services labelled routes of included routers "unknown" (FastAPI's router wrappers
# have no path), so a benchmark that sends one kind of request counts both labels; "/metrics" never counts.
UNLABELLED = "unknown"


def parse_http_totals(text: str, method: str, route: str, status: str = "200") -> tuple[float, float]:
    """(sum of seconds, count) of ``http_request_duration_seconds`` for one method, route and status."""
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "http_request_duration_seconds":
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("method") != method or labels.get("status") != status:
                continue
            if labels.get("route") not in (route, UNLABELLED):
                continue
            if sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
    return total, count


def http_totals(url: str, method: str, route: str) -> tuple[float, float]:
    return parse_http_totals(httpx.get(f"{url}/metrics", timeout=10).text, method, route)


async def http_totals_async(client: httpx.AsyncClient, url: str, method: str, route: str) -> tuple[float, float]:
    return parse_http_totals((await client.get(f"{url}/metrics")).text, method, route)


def counter_totals(url: str, *names: str) -> tuple[float, ...]:
    """The values of unlabelled counters (``names`` without ``_total``) in one read of a service's /metrics, 0 for
    one that is absent."""
    values = dict.fromkeys(names, 0.0)
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        if family.name in values:
            values[family.name] = sum(s.value for s in family.samples if s.name == f"{family.name}_total")
    return tuple(values[name] for name in names)
