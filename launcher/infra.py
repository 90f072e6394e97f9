"""Redis and RabbitMQ: is one answering at the configured URL, and if not, how to start one locally."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import redis

from launcher.config import url_host, url_port
from launcher.services import RABBITMQ, REDIS, InfraSpec

# Debian's /usr/sbin/rabbitmq-server wrapper re-executes itself as the "rabbitmq" user (or refuses anyone
# else), which could not write a data folder in this checkout; the real script runs as the caller.
_RABBITMQ_SCRIPT_CANDIDATES = ("/usr/lib/rabbitmq/bin/rabbitmq-server",)


@dataclass(frozen=True, slots=True)
class Probe:
    listening: bool  # something accepted a TCP connection
    healthy: bool  # ...and answered the protocol (PING / AMQP handshake with the URL's credentials)
    detail: str


def tcp_listening(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def probe_redis(url: str, timeout_s: float = 2.0) -> Probe:
    if not tcp_listening(url_host(url), url_port(url, REDIS.default_port), timeout_s):
        return Probe(False, False, "nothing listens there")
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        client.ping()
        return Probe(True, True, "PING answered")
    except redis.RedisError as error:
        return Probe(True, False, f"the port is open but PING failed: {error}")
    finally:
        client.close()


async def _amqp_handshake(url: str, timeout_s: float) -> None:
    connection = await aio_pika.connect(url, timeout=timeout_s)
    await connection.close()


def probe_amqp(url: str, timeout_s: float = 5.0) -> Probe:
    if not tcp_listening(url_host(url), url_port(url, RABBITMQ.default_port), timeout_s):
        return Probe(False, False, "nothing listens there")
    try:
        asyncio.run(asyncio.wait_for(_amqp_handshake(url, timeout_s), timeout_s + 1))
        return Probe(True, True, "AMQP handshake completed")
    except Exception as error:  # aiormq raises many unrelated types (auth, protocol, timeouts)
        return Probe(True, False, f"the port is open but the AMQP handshake failed: {error!r}")


def probe(spec: InfraSpec, url: str) -> Probe:
    if spec is REDIS:
        return probe_redis(url)
    if spec is RABBITMQ:
        return probe_amqp(url)
    raise ValueError(f"no probe for {spec.name}")


@dataclass(frozen=True, slots=True)
class LocalServer:
    """How to run a throwaway local server as a child process."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Small files the server needs before it starts (path -> content).
    files: dict[Path, str] = field(default_factory=dict)


def find_binary(spec: InfraSpec, which: Callable[[str], str | None] = shutil.which) -> str | None:
    if spec is RABBITMQ:
        for candidate in _RABBITMQ_SCRIPT_CANDIDATES:
            if Path(candidate).is_file():
                return candidate
    return which(spec.binary)


def local_redis(binary: str, port: int) -> LocalServer:
    # No persistence: this Redis lives as long as the launcher (use docker compose for a durable one).
    return LocalServer(
        argv=[binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--daemonize", "no"],
    )  # fmt: skip


def local_rabbitmq(binary: str, port: int, state_dir: Path) -> LocalServer:
    base = state_dir / f"rabbitmq-{port}"
    # Its own config files: a system-wide /etc/rabbitmq/rabbitmq.conf may pin listeners to the default port.
    config_file = base / "rabbitmq.conf"
    env_file = base / "rabbitmq-env.conf"
    return LocalServer(
        argv=[binary],
        env={
            "RABBITMQ_CONFIG_FILE": str(config_file),
            "RABBITMQ_CONF_ENV_FILE": str(env_file),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            # Its own node name and Erlang distribution port, so it can run next to a system RabbitMQ.
            "RABBITMQ_NODENAME": f"launcher{port}@localhost",
            "RABBITMQ_DIST_PORT": str(port + 20000),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_LOGS": "-",  # to stdout, so it shows up prefixed like every other child
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            # No plugins: the management plugin's fixed port would clash with a system RabbitMQ.
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        },
        files={
            config_file: f"listeners.tcp.default = 127.0.0.1:{port}\n",
            env_file: "# intentionally empty: this node is configured by the launcher's environment\n",
            base / "enabled_plugins": "[].\n",
        },
    )


def local_server(spec: InfraSpec, binary: str, port: int, state_dir: Path) -> LocalServer:
    if spec is REDIS:
        return local_redis(binary, port)
    if spec is RABBITMQ:
        return local_rabbitmq(binary, port, state_dir)
    raise ValueError(f"no local recipe for {spec.name}")


def install_instructions(spec: InfraSpec, url: str) -> str:
    return (
        f"{spec.label} does not answer at {url} and `{spec.binary}` is not installed, so it cannot be started here.\n"
        f"Install it:   {spec.install_hint}\n"
        f"or point {spec.url_setting.upper()} at a running {spec.label}."
    )
