"""Shared fixtures: a session MLflow server, isolated stacks of real service processes, and TCP proxies that put
a fault (a refusal, a cut, a stall) between a service and a server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.proxy import TcpProxy
from tests.support.stack import ROOT, ServiceStack, start_mlflow, stop_process_group

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (sqlite backend) for the whole session."""
    folder = tmp_path_factory.mktemp("mlflow")
    process, url = start_mlflow(folder)
    yield url
    stop_process_group(process)


@pytest.fixture
def stack_factory(tmp_path: Path, mlflow_url: str) -> Iterator[Callable[..., ServiceStack]]:
    """Build stacks with custom settings; every one is stopped and its keys/queues deleted afterwards."""
    stacks: list[ServiceStack] = []

    def build(**extra_env: str) -> ServiceStack:
        stack = ServiceStack(log_dir=tmp_path, mlflow_url=mlflow_url, extra_env=extra_env)
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        stack.close()


@pytest.fixture
def stack(stack_factory: Callable[..., ServiceStack]) -> ServiceStack:
    """pipeline + recommendations + event_collector on real Redis/RabbitMQ/MLflow, isolated by prefix."""
    return stack_factory().start()


@pytest.fixture
def proxy_for() -> Iterator[Callable[[str], TcpProxy]]:
    """``proxy_for(url)`` starts a proxy in front of the server ``url`` names; all are closed afterwards."""
    proxies: list[TcpProxy] = []

    def build(url: str) -> TcpProxy:
        proxy = TcpProxy.for_url(url).start()
        proxies.append(proxy)
        return proxy

    yield build
    for proxy in proxies:
        proxy.close()
