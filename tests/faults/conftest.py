"""Fault-injection fixtures: TCP proxies between one service and the shared Redis or RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.proxy import TcpProxy


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
