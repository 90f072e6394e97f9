"""The benchmarks' side of the shared harness (``devstack``): a stack that also runs the bare endpoints.

MLflow is off the request path, so a benchmark stack points it at a closed port (the pipeline logs "MLflow
unreachable" once and goes on). Service logs are removed on close unless BENCH_KEEP_LOGS is set.
"""

from __future__ import annotations

import os

from devstack.stack import SERVICE_MODULES, ServiceStack, infrastructure
from devstack.stack import queue_depth as _queue_depth

REDIS_URL, AMQP_URL = infrastructure()
MODULES = {**SERVICE_MODULES, "bare": ("benchmarks.bare_app", "BARE_PORT")}


class BenchStack(ServiceStack):
    """One isolated deployment for one benchmark; use as a context manager so it is always cleaned up."""

    def __init__(self, label: str, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(
            extra_env=extra_env or {},
            tag_prefix="bench",
            modules=MODULES,
            keep_logs=bool(os.environ.get("BENCH_KEEP_LOGS")),
        )
        self.label = label

    @property
    def bare_queue(self) -> str:
        return f"{self.tag}.bare"

    def own_queues(self) -> list[str]:
        return [*super().own_queues(), self.bare_queue]

    def env(self, **overrides: str) -> dict[str, str]:
        return super().env(BARE_QUEUE=self.bare_queue, **overrides)


async def queue_depth(name: str) -> int:
    return await _queue_depth(AMQP_URL, name)
