"""Real service processes on the shared Redis and RabbitMQ, isolated from everything else on those servers.

Every stack gets its own Redis key prefix, its own queue names and free ports; ``close`` stops the processes
it started and deletes exactly its own keys (SCAN + UNLINK on its prefix) and queues. Nothing here ever
flushes a database. Where Redis and RabbitMQ are comes from the same ``Settings`` the services read
(``REDIS_URL``, ``AMQP_URL``), never from literals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import aio_pika
import httpx
import psutil
import redis

from recsys_core.settings import PROJECT_ROOT, Settings

ROOT = PROJECT_ROOT
LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_S = 60.0

# name -> (module run with ``python -m``, the setting that holds its port)
SERVICE_MODULES: Mapping[str, tuple[str, str]] = {
    "recommendations": ("recommendations", "RECS_PORT"),
    "event_collector": ("event_collector", "COLLECTOR_PORT"),
    "pipeline": ("pipeline", "PIPELINE_PORT"),
    "webapp": ("webapp", "WEBAPP_PORT"),
}


def infrastructure() -> tuple[str, str]:
    """(Redis URL, AMQP URL) as the services would read them."""
    settings = Settings()
    return settings.redis_url, settings.amqp_url


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def local_url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def wait_http(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError as error:
            last_error = error
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s: {last_error}")


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """UNLINK every key under ``prefix:`` (never a FLUSH: the server is shared)."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += int(client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted


async def _delete_queues(amqp_url: str, names: list[str]) -> None:
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)


def delete_queues(amqp_url: str, names: list[str]) -> None:
    """Deletes the queues; a broker that is not there is no error. Not from a running event loop (asyncio.run
    refuses it): call it through ``asyncio.to_thread`` there."""
    with contextlib.suppress(OSError, TimeoutError, aio_pika.exceptions.AMQPException):
        asyncio.run(_delete_queues(amqp_url, names))


async def queue_depth(amqp_url: str, name: str) -> int:
    """Messages ready in a queue (RabbitMQ's count; unacked deliveries are not included)."""
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)


@dataclass
class ServiceProcess:
    name: str
    module: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return local_url(self.port)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process.pid

    def start(self, wait: bool = True, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        if wait:
            try:
                wait_http(f"{self.url}/healthcheck", timeout_s, self.process)
            except (RuntimeError, TimeoutError) as error:
                raise RuntimeError(f"{self.name} failed to start: {error}\n{self.log_tail()}") from error

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def rss_bytes(self) -> int:
        """Resident memory of the process and its children (uvicorn workers, if any)."""
        if self.process is None:
            return 0
        try:
            parent = psutil.Process(self.process.pid)
            return int(sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]))
        except psutil.Error:
            return 0

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ServiceStack:
    """One isolated deployment: its own prefix, queues, ports and log folder; a context manager."""

    log_dir: Path | None = None  # None: a temporary folder, removed on close unless keep_logs
    mlflow_url: str | None = None  # None: a closed port (MLflow is off the request path)
    extra_env: dict[str, str] = field(default_factory=dict)
    tag_prefix: str = "test"
    modules: Mapping[str, tuple[str, str]] = field(default_factory=lambda: dict(SERVICE_MODULES))
    keep_logs: bool = True
    tag: str = ""
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tag = self.tag or f"{self.tag_prefix}-{uuid.uuid4().hex[:10]}"
        self.redis_url, self.amqp_url = infrastructure()
        self.ports = {name: free_port() for name in self.modules}
        self.redis = redis.Redis.from_url(self.redis_url)
        self._own_log_dir = self.log_dir is None
        self.log_dir = self.log_dir or Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)  # a folder given by the caller may not exist yet
        self.mlflow_url = self.mlflow_url or local_url(free_port())

    @property
    def prefix(self) -> str:
        return self.tag

    @property
    def queue(self) -> str:
        return f"{self.tag}.events"

    def own_queues(self) -> list[str]:
        return [self.queue, f"{self.queue}.dead"]

    def env(self, **overrides: str) -> dict[str, str]:
        ports = self.ports
        env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "AMQP_URL": self.amqp_url,
            "REDIS_PREFIX": self.prefix,
            "EVENTS_QUEUE": self.queue,
            "MLFLOW_TRACKING_URI": str(self.mlflow_url),
            "MLFLOW_PUBLIC_URL": str(self.mlflow_url),
            "DEPLOYMENT_NAME": self.tag,
            "HOST": LOOPBACK,
            **{setting: str(ports[name]) for name, (_, setting) in self.modules.items()},
            "RECS_URL": local_url(ports["recommendations"]),
            "COLLECTOR_URL": local_url(ports["event_collector"]),
            "PIPELINE_URL": local_url(ports["pipeline"]),
            "RETRAIN_INTERVAL_S": "3600",  # retrains are forced explicitly
            "LOAD_CATALOG_ON_START": "false",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("ADMIN_TOKEN", None)
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def start(self, *names: str, timeout_s: float = STARTUP_TIMEOUT_S, **env_overrides: str) -> Self:
        for name in names or ("pipeline", "recommendations", "event_collector"):
            self.start_service(name, None, None, timeout_s, **env_overrides)
        return self

    def start_service(
        self,
        name: str,
        port: int | None = None,
        label: str | None = None,
        timeout_s: float = STARTUP_TIMEOUT_S,
        **env: str,
    ) -> ServiceProcess:
        label = label or name
        port = port or self.ports[name]
        module, port_setting = self.modules[name]
        assert self.log_dir is not None
        service = ServiceProcess(
            name, module, port, self.env(**{port_setting: str(port)}, **env), self.log_dir / f"{self.tag}-{label}.log"
        )
        self.services[label] = service
        service.start(timeout_s=timeout_s)
        return service

    def url(self, label: str) -> str:
        return self.services[label].url

    @property
    def recs_url(self) -> str:
        return self.url("recommendations")

    @property
    def collector_url(self) -> str:
        return self.url("event_collector")

    @property
    def pipeline_url(self) -> str:
        return self.url("pipeline")

    def run_key(self, suffix: str) -> str:
        generation = int(self.redis.get(f"{self.prefix}:generation") or 0)
        return f"{self.prefix}:g{generation}:{suffix}"

    def stop(self, label: str) -> None:
        service = self.services.pop(label, None)
        if service is not None:
            service.stop()

    def close(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()
        with contextlib.suppress(redis.RedisError):
            delete_prefix(self.redis, self.prefix)
        delete_queues(self.amqp_url, self.own_queues())
        self.redis.close()
        if self._own_log_dir and not self.keep_logs and self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def start_mlflow(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway MLflow tracking server (sqlite) in ``folder``, in its own process group."""
    port = free_port()
    log = (folder / "mlflow.log").open("ab")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        # MLflow's job runner spawns several ~250 MB workers we do not need; its own group lets us stop them all.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True,
    )
    url = local_url(port)
    wait_http(f"{url}/health", 120, process)
    return process, url


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM the process and its whole group (started with start_new_session), then SIGKILL stragglers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
