"""Fixtures of the grader tests: the tiny dataset and the fake service served over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from grader.simulation import Dataset
from tests.grader.fake_hardml import ServedFake, create_fake_app, tiny_dataset


@pytest.fixture
def dataset() -> Dataset:
    return tiny_dataset()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served_fake() -> Iterator[ServedFake]:
    """The well-behaved fake served over real HTTP by uvicorn in a thread (for multi-process runs)."""
    app, state = create_fake_app(misbehave=False)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the fake service did not start")
        time.sleep(0.02)
    yield ServedFake(f"http://127.0.0.1:{port}", state)
    server.should_exit = True
    thread.join(timeout=10)
