"""The test side of the shared harness (``devstack``): isolated stacks of real service processes."""

from __future__ import annotations

from devstack.stack import ROOT, ServiceStack, free_port, infrastructure, start_mlflow, stop_process_group

REDIS_URL, AMQP_URL = infrastructure()

__all__ = ["AMQP_URL", "REDIS_URL", "ROOT", "ServiceStack", "free_port", "start_mlflow", "stop_process_group"]
