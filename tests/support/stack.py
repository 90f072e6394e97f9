"""Real service processes for integration tests, isolated from anything else on the shared servers.

Every stack gets its own Redis key prefix, its own queue names and free ports; ``close`` stops the processes
and deletes exactly its own keys (SCAN + UNLINK on its prefix) and queues. Nothing here ever flushes Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
import redis

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
STARTUP_TIMEOUT_S = 60.0

MODULES = {
    "recommendations": ("recommendations", "RECS_PORT"),
    "event_collector": ("event_collector", "COLLECTOR_PORT"),
    "pipeline": ("pipeline", "PIPELINE_PORT"),
    "webapp": ("webapp", "WEBAPP_PORT"),
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError as error:
            last_error = error
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s: {last_error}")


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=2000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += client.unlink(*batch)
    return deleted


async def _delete_queues(amqp_url: str, names: list[str]) -> None:
    connection = await aio_pika.connect(amqp_url, timeout=5)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)


def delete_queues(amqp_url: str, names: list[str]) -> None:
    with contextlib.suppress(Exception):
        asyncio.run(_delete_queues(amqp_url, names))


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> None:
        module, _ = MODULES[self.name]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        if wait:
            try:
                wait_http(f"{self.url}/healthcheck", STARTUP_TIMEOUT_S, self.process)
            except (RuntimeError, TimeoutError) as error:
                raise RuntimeError(f"{self.name} failed to start: {error}\n{self.log_tail()}") from error

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ServiceStack:
    """One isolated deployment: its own prefix, queue, ports and log folder."""

    log_dir: Path
    mlflow_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:10]}")
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ports = {name: free_port() for name in MODULES}
        self.redis = redis.Redis.from_url(REDIS_URL)

    @property
    def prefix(self) -> str:
        return self.tag

    @property
    def queue(self) -> str:
        return f"{self.tag}.events"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            **os.environ,
            "REDIS_URL": REDIS_URL,
            "AMQP_URL": AMQP_URL,
            "REDIS_PREFIX": self.prefix,
            "EVENTS_QUEUE": self.queue,
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "MLFLOW_PUBLIC_URL": self.mlflow_url,
            "DEPLOYMENT_NAME": self.tag,
            "HOST": "127.0.0.1",
            "RECS_PORT": str(self.ports["recommendations"]),
            "COLLECTOR_PORT": str(self.ports["event_collector"]),
            "PIPELINE_PORT": str(self.ports["pipeline"]),
            "WEBAPP_PORT": str(self.ports["webapp"]),
            "RECS_URL": f"http://127.0.0.1:{self.ports['recommendations']}",
            "COLLECTOR_URL": f"http://127.0.0.1:{self.ports['event_collector']}",
            "PIPELINE_URL": f"http://127.0.0.1:{self.ports['pipeline']}",
            "RETRAIN_INTERVAL_S": "3600",  # tests force retrains explicitly
            "LOAD_CATALOG_ON_START": "false",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def start(self, *names: str, **env_overrides: str) -> ServiceStack:
        for name in names or ("pipeline", "recommendations", "event_collector"):
            self.start_service(name, **env_overrides)
        return self

    def start_service(self, name: str, port: int | None = None, label: str | None = None, **env: str) -> ServiceProcess:
        label = label or name
        port = port or self.ports[name]
        _, port_setting = MODULES[name]
        service = ServiceProcess(
            name, port, self.env(**{port_setting: str(port)}, **env), self.log_dir / f"{self.tag}-{label}.log"
        )
        service.start()
        self.services[label] = service
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

    def close(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()
        delete_prefix(self.redis, self.prefix)
        delete_queues(AMQP_URL, [self.queue, f"{self.queue}.dead"])
        self.redis.close()


def start_mlflow(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
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
            "127.0.0.1",
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
    url = f"http://127.0.0.1:{port}"
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
