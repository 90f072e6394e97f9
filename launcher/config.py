"""Pure wiring for a local run: ports, URLs, argv and environment of each child, computed from Settings.

Nothing here starts a process or opens a socket, so all of it is unit-tested directly.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from launcher.services import MLFLOW, SERVICES, InfraSpec, ServiceSpec
from recsys_core.settings import Settings

# Addresses a server listens on for "every interface": a client must connect to loopback instead.
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# MLflow's own default allow-list (localhost on any port and the private IP ranges); passing
# --allowed-hosts replaces it, so it is repeated here and extended with the configured names.
_MLFLOW_DEFAULT_ALLOWED_HOSTS: tuple[str, ...] = (
    "localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", "[[]::1]:*", "0.0.0.0", "0.0.0.0:*",
    "10.*", "192.168.*", *(f"172.{i}.*" for i in range(16, 32)),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunPaths:
    """Where a local run keeps its files; both folders are gitignored."""

    logs_dir: Path  # one <service>.log per child
    mlflow_dir: Path  # sqlite backend + artifacts
    state_dir: Path  # data of locally started Redis/RabbitMQ

    @classmethod
    def under(cls, root: Path) -> RunPaths:
        return cls(logs_dir=root / ".run" / "logs", mlflow_dir=root / ".mlflow", state_dir=root / ".run")


def connect_host(bind_host: str) -> str:
    """The address a local client uses to reach a server bound to ``bind_host``."""
    return "127.0.0.1" if bind_host in _WILDCARD_HOSTS else bind_host


def local_url(settings: Settings, port: int) -> str:
    host = connect_host(settings.host)
    if ":" in host and not host.startswith("["):  # a bare IPv6 address needs brackets in a URL
        host = f"[{host}]"
    return f"http://{host}:{port}"


def service_port(spec: ServiceSpec, settings: Settings) -> int:
    return int(getattr(settings, spec.port_setting))


def health_url(spec: ServiceSpec, settings: Settings) -> str:
    """Always the process the launcher started (never an explicitly configured URL, which may be a proxy)."""
    return local_url(settings, service_port(spec, settings)) + spec.health_path


def service_url(spec: ServiceSpec, settings: Settings) -> str:
    """How the other services reach ``spec``: an explicitly configured URL wins, else one derived from its port.

    Deriving it means ``RECS_PORT=15001`` alone is enough: RECS_URL follows instead of staying on 5001.
    """
    if spec.url_setting and spec.url_setting in settings.model_fields_set:
        return str(getattr(settings, spec.url_setting)).rstrip("/")
    return local_url(settings, service_port(spec, settings))


def mlflow_public_url(settings: Settings) -> str:
    """The MLflow link shown to humans (the web UI links to it)."""
    if "mlflow_public_url" in settings.model_fields_set:
        return settings.mlflow_public_url.rstrip("/")
    return service_url(MLFLOW, settings)


def url_host(url: str) -> str:
    return urlsplit(url).hostname or ""


def url_port(url: str, default: int) -> int:
    return urlsplit(url).port or default


def redacted(url: str) -> str:
    """The URL as the launcher prints it: a password in it becomes ``***`` (terminals and logs get shared)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


def scrubbed(text: str, url: str) -> str:
    """``text`` (e.g. a client's error message) with the URL's password, wherever it appears, as ``***``."""
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


def is_loopback_url(url: str) -> bool:
    """Only a server on this machine can be started here when it does not answer."""
    return url_host(url) in _LOOPBACK_HOSTS


def infra_url(spec: InfraSpec, settings: Settings) -> str:
    return str(getattr(settings, spec.url_setting))


def mlflow_allowed_hosts(settings: Settings, extra_urls: Iterable[str] = ()) -> str:
    """The --allowed-hosts value: MLflow's defaults plus the hosts of every URL it is reached by."""
    allowed = list(_MLFLOW_DEFAULT_ALLOWED_HOSTS)
    hosts = [settings.host, url_host(settings.mlflow_tracking_uri), url_host(settings.mlflow_public_url)]
    hosts += [url_host(url) for url in extra_urls]
    for host in hosts:
        if host and host not in _WILDCARD_HOSTS:
            for pattern in (host, f"{host}:*"):
                if pattern not in allowed:
                    allowed.append(pattern)
    return ",".join(allowed)


def render_argv(spec: ServiceSpec, **values: str) -> list[str]:
    """Fill the placeholders of ``spec.argv``; a missing value raises KeyError naming it."""
    return [part.format_map(values) for part in spec.argv]


def local_argv(spec: ServiceSpec, settings: Settings, python: str, paths: RunPaths) -> list[str]:
    return render_argv(
        spec,
        python=python,
        host=settings.host,
        port=str(service_port(spec, settings)),
        mlflow_dir=str(paths.mlflow_dir),
        mlflow_allowed_hosts=mlflow_allowed_hosts(settings, [service_url(MLFLOW, settings)]),
    )


def stack_env(settings: Settings, services: Iterable[ServiceSpec] = SERVICES) -> dict[str, str]:
    """The wiring every child gets, as environment variables Settings reads back.

    The launcher resolved these values (from the environment, .env and its own defaults); exporting them
    makes each child see exactly the same deployment even if it would resolve something differently.
    """
    env = {
        "REDIS_URL": settings.redis_url,
        "AMQP_URL": settings.amqp_url,
        "REDIS_PREFIX": settings.redis_prefix,
        "EVENTS_QUEUE": settings.events_queue,
        "DEPLOYMENT_NAME": settings.deployment_name,
        "HOST": settings.host,
    }
    for spec in services:
        env[spec.env_var_for_port] = str(service_port(spec, settings))
        if spec.url_setting:
            env[spec.url_setting.upper()] = service_url(spec, settings)
    env["MLFLOW_PUBLIC_URL"] = mlflow_public_url(settings)
    if settings.movielens_dir is not None:
        env["MOVIELENS_DIR"] = str(settings.movielens_dir)
    return env


def child_env(
    spec: ServiceSpec, settings: Settings, inherited: Mapping[str, str], services: Iterable[ServiceSpec] = SERVICES
) -> dict[str, str]:
    """``inherited`` (PATH, locale, any other exported setting) + the stack wiring + the service's own env."""
    return {**inherited, **stack_env(settings, services), **dict(spec.env)}


def module_has_main(module: str) -> bool:
    """Whether ``python -m module`` can run, found without importing the package."""
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        return False
    return any((Path(location) / "__main__.py").is_file() for location in found.submodule_search_locations)


@dataclass(frozen=True, slots=True)
class Plan:
    to_start: tuple[ServiceSpec, ...]
    skipped: tuple[ServiceSpec, ...]  # optional services whose module is not there
    missing: tuple[ServiceSpec, ...]  # required services whose module is not there: the run cannot start


def plan_services(services: Iterable[ServiceSpec], has_main: Mapping[str, bool] | None = None) -> Plan:
    """Split the specs by whether their module exists (``has_main`` overrides the lookup, for tests)."""
    to_start: list[ServiceSpec] = []
    skipped: list[ServiceSpec] = []
    missing: list[ServiceSpec] = []
    for spec in services:
        present = has_main[spec.module] if has_main is not None else module_has_main(spec.module)
        if present:
            to_start.append(spec)
        elif spec.optional:
            skipped.append(spec)
        else:
            missing.append(spec)
    return Plan(tuple(to_start), tuple(skipped), tuple(missing))


def url_block(settings: Settings, started: Iterable[ServiceSpec]) -> str:
    """The "where is everything" block printed once the stack is up."""
    rows: list[tuple[str, str]] = []
    for spec in started:
        url = mlflow_public_url(settings) if spec is MLFLOW else service_url(spec, settings)
        rows.append((spec.label, url))
    width = max((len(label) for label, _ in rows), default=0)
    lines = [f"  {label.ljust(width)}  {url}" for label, url in rows]
    rule = "=" * max((len(line) for line in lines), default=40)
    return "\n".join([rule, "  The stack is up:", *lines, rule])
