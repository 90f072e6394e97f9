"""The stack as data: which processes make up a deployment, how each starts, where it listens, how to tell
it is ready and what it needs first.

``python -m launcher`` runs these specs as local child processes; ``tests/test_compose.py`` checks
``docker-compose.yml`` against the same specs, so the two ways of running the stack cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

# argv templates are filled in per environment (local launcher or compose): the launcher puts its own
# interpreter for {python} and the .mlflow/ folder for {mlflow_dir}; compose uses "python" and a volume.
PYTHON = "{python}"
HOST = "{host}"
PORT = "{port}"
MLFLOW_DIR = "{mlflow_dir}"
MLFLOW_ALLOWED_HOSTS = "{mlflow_allowed_hosts}"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One long-running HTTP process of the stack."""

    name: str  # also the docker-compose service name
    label: str  # shown next to its URL
    argv: tuple[str, ...]  # a template; see the placeholders above
    port_setting: str  # the Settings field holding its port
    default_port: int
    health_path: str
    # Names of services (or infrastructure) that must be healthy before this one starts.
    depends_on: tuple[str, ...] = ()
    # The Settings field other services use to reach this one (None: nobody calls it).
    url_setting: str | None = None
    # Extra environment of its own, on top of the shared wiring.
    env: tuple[tuple[str, str], ...] = ()
    # Optional services are started only when their module is installed (the debug UI may be absent).
    optional: bool = False
    startup_timeout_s: float = 60.0

    @property
    def module(self) -> str:
        """The Python module the service runs as (``python -m <module>``)."""
        if self.argv[:2] != (PYTHON, "-m") or len(self.argv) < 3:
            raise ValueError(f"{self.name}: argv {self.argv} is not of the form '{PYTHON} -m <module> ...'")
        return self.argv[2]

    @property
    def env_var_for_port(self) -> str:
        return self.port_setting.upper()


@dataclass(frozen=True, slots=True)
class InfraSpec:
    """A server the stack needs but does not own: the launcher reuses a running one, or starts one locally."""

    name: str  # also the docker-compose service name
    label: str
    url_setting: str  # the Settings field holding its URL
    default_port: int
    binary: str  # what to look for on PATH when it has to be started locally
    install_hint: str


REDIS = InfraSpec(
    name="redis",
    label="Redis",
    url_setting="redis_url",
    default_port=6379,
    binary="redis-server",
    install_hint="sudo apt-get install redis-server   (or: docker compose up -d redis)",
)
RABBITMQ = InfraSpec(
    name="rabbitmq",
    label="RabbitMQ",
    url_setting="amqp_url",
    default_port=5672,
    binary="rabbitmq-server",
    install_hint="sudo apt-get install rabbitmq-server   (or: docker compose up -d rabbitmq)",
)
INFRASTRUCTURE: tuple[InfraSpec, ...] = (REDIS, RABBITMQ)

# Unbuffered output so each log line reaches the launcher (and `docker logs`) when it is written.
_PYTHON_ENV = (("PYTHONUNBUFFERED", "1"),)

# fmt: off
MLFLOW = ServiceSpec(
    name="mlflow",
    label="MLflow",
    argv=(
        PYTHON, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{MLFLOW_DIR}/mlflow.db",
        "--artifacts-destination", f"{MLFLOW_DIR}/artifacts",
        "--host", HOST,
        "--port", PORT,
        "--workers", "1",
        # MLflow 3 rejects requests whose Host header is not localhost or a private IP (DNS-rebinding
        # protection); a compose peer calls it as "mlflow:8080", so the allowed names are passed explicitly.
        "--allowed-hosts", MLFLOW_ALLOWED_HOSTS,
    ),
    port_setting="mlflow_port",
    default_port=8080,
    health_path="/health",
    url_setting="mlflow_tracking_uri",
    # MLflow 3's job runner (GenAI scoring, trace archival) forks eight ~250 MB worker processes and slows
    # shutdown to ~10 s; this stack never submits jobs.
    env=(*_PYTHON_ENV, ("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")),
    # The first start creates and migrates the sqlite schema, which takes a while.
    startup_timeout_s=180.0,
)
# fmt: on
PIPELINE = ServiceSpec(
    name="pipeline",
    label="Pipeline",
    argv=(PYTHON, "-m", "pipeline"),
    port_setting="pipeline_port",
    default_port=5002,
    health_path="/healthcheck",
    depends_on=("redis", "rabbitmq", "mlflow"),
    url_setting="pipeline_url",
    env=_PYTHON_ENV,
    startup_timeout_s=120.0,
)
RECOMMENDATIONS = ServiceSpec(
    name="recommendations",
    label="Recommendations API",
    argv=(PYTHON, "-m", "recommendations"),
    port_setting="recs_port",
    default_port=5001,
    health_path="/healthcheck",
    depends_on=("redis",),
    url_setting="recs_url",
    env=_PYTHON_ENV,
)
EVENT_COLLECTOR = ServiceSpec(
    name="event_collector",
    label="Event collector API",
    argv=(PYTHON, "-m", "event_collector"),
    port_setting="collector_port",
    default_port=5000,
    health_path="/healthcheck",
    depends_on=("redis", "rabbitmq"),
    url_setting="collector_url",
    env=_PYTHON_ENV,
)
WEBAPP = ServiceSpec(
    name="webapp",
    label="Debug web UI",
    argv=(PYTHON, "-m", "webapp"),
    port_setting="webapp_port",
    default_port=8000,
    health_path="/healthcheck",
    depends_on=("recommendations", "event_collector", "pipeline"),
    env=_PYTHON_ENV,
    optional=True,
)

# In start order: every service comes after what it depends on; the launcher stops them in reverse.
SERVICES: tuple[ServiceSpec, ...] = (MLFLOW, PIPELINE, RECOMMENDATIONS, EVENT_COLLECTOR, WEBAPP)


def service_by_name(name: str) -> ServiceSpec:
    for spec in SERVICES:
        if spec.name == name:
            return spec
    raise KeyError(f"no service named {name!r}; known: {[spec.name for spec in SERVICES]}")
