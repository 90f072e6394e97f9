"""The launcher: its pure parts (specs, wiring, ids, batching) and its process handling on dummy children.

Nothing here starts the real stack; the process tests run small ``python`` HTTP servers and sleepers.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
from mlflow.server.security_utils import is_allowed_host_header

from launcher import catalog, config, infra
from launcher.app import check_ports_free, ensure_infrastructure
from launcher.processes import (
    LivenessPolicy,
    Output,
    RestartPolicy,
    StartupError,
    StopRequested,
    Supervisor,
    http_ok,
    install_stop_handlers,
    supervise,
)
from launcher.services import (
    INFRASTRUCTURE,
    MLFLOW,
    RABBITMQ,
    RECOMMENDATIONS,
    REDIS,
    SERVICES,
    WEBAPP,
    ServiceSpec,
    service_by_name,
)
from recsys_core.movielens import Movie
from recsys_core.schemas import ID_PATTERN, AddItemsRequest
from recsys_core.settings import PROJECT_ROOT, Settings

# ---------------------------------------------------------------------------------------------------------
# helpers


def make_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    """Settings from exactly ``env``: the caller's environment and any .env file are ignored."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_server_argv(port: int, directory: Path) -> list[str]:
    """A dummy service: answers 200 on / once it is listening."""
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(directory)]


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(predicate: object, timeout_s: float = 10.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


# ---------------------------------------------------------------------------------------------------------
# the service specs


def test_service_names_are_unique_and_distinct_from_infrastructure() -> None:
    names = [spec.name for spec in SERVICES] + [spec.name for spec in INFRASTRUCTURE]
    assert len(names) == len(set(names))


def test_every_dependency_starts_earlier_or_is_infrastructure() -> None:
    started: set[str] = {spec.name for spec in INFRASTRUCTURE}
    for spec in SERVICES:
        unknown = set(spec.depends_on) - started
        assert not unknown, f"{spec.name} depends on {unknown}, which are not started before it"
        started.add(spec.name)


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_spec_default_port_is_the_settings_default(spec: ServiceSpec) -> None:
    assert Settings.model_fields[spec.port_setting].default == spec.default_port


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_spec_refers_to_real_settings_and_a_module(spec: ServiceSpec) -> None:
    if spec.url_setting is not None:
        assert spec.url_setting in Settings.model_fields
    assert spec.health_path.startswith("/")
    assert re.fullmatch(r"[a-z_][a-z0-9_.]*", spec.module)


def test_the_expected_services_and_ports() -> None:
    ports = {spec.name: spec.default_port for spec in SERVICES}
    assert ports == {"mlflow": 8080, "pipeline": 5002, "recommendations": 5001, "event_collector": 5000,
                     "webapp": 8000}  # fmt: skip
    assert service_by_name("recommendations") is RECOMMENDATIONS
    assert [spec.name for spec in SERVICES if spec.optional] == ["webapp"]
    with pytest.raises(KeyError):
        service_by_name("nope")


def test_infrastructure_specs_name_their_settings() -> None:
    assert [(spec.name, spec.url_setting) for spec in INFRASTRUCTURE] == [
        ("redis", "redis_url"),
        ("rabbitmq", "amqp_url"),
    ]


# ---------------------------------------------------------------------------------------------------------
# wiring: URLs, env, argv


def test_connect_host_maps_wildcards_to_loopback() -> None:
    assert config.connect_host("0.0.0.0") == "127.0.0.1"
    assert config.connect_host("::") == "127.0.0.1"
    assert config.connect_host("10.1.2.3") == "10.1.2.3"


def test_urls_follow_the_ports_when_not_set_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(monkeypatch, RECS_PORT="15001", MLFLOW_PORT="18080", HOST="0.0.0.0")
    env = config.stack_env(settings)
    assert env["RECS_PORT"] == "15001"
    assert env["RECS_URL"] == "http://127.0.0.1:15001"
    assert env["COLLECTOR_URL"] == "http://127.0.0.1:5000"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:18080"
    assert env["MLFLOW_PUBLIC_URL"] == "http://127.0.0.1:18080"
    # The bind address is passed on unchanged: only clients are redirected to loopback.
    assert env["HOST"] == "0.0.0.0"
    assert config.health_url(RECOMMENDATIONS, settings) == "http://127.0.0.1:15001/healthcheck"
    assert config.health_url(MLFLOW, settings) == "http://127.0.0.1:18080/health"


def test_an_explicit_url_wins_over_the_derived_one(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(
        monkeypatch, RECS_PORT="15001", RECS_URL="http://recs.internal:80/", MLFLOW_PUBLIC_URL="http://ml.example"
    )
    env = config.stack_env(settings)
    assert env["RECS_URL"] == "http://recs.internal:80"
    assert env["MLFLOW_PUBLIC_URL"] == "http://ml.example"
    # The healthcheck still goes to the process the launcher starts.
    assert config.health_url(RECOMMENDATIONS, settings) == "http://127.0.0.1:15001/healthcheck"


def test_stack_env_carries_the_deployment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(
        monkeypatch,
        REDIS_URL="redis://127.0.0.1:6390/3",
        AMQP_URL="amqp://u:p@127.0.0.1:5673/",
        REDIS_PREFIX="launchertest-1",
        EVENTS_QUEUE="launchertest-1",
        MOVIELENS_DIR="/data/ml",
    )
    env = config.stack_env(settings)
    assert env["REDIS_URL"] == "redis://127.0.0.1:6390/3"
    assert env["AMQP_URL"] == "amqp://u:p@127.0.0.1:5673/"
    assert env["REDIS_PREFIX"] == "launchertest-1"
    assert env["EVENTS_QUEUE"] == "launchertest-1"
    assert env["MOVIELENS_DIR"] == "/data/ml"
    # Every variable is one Settings reads back (a typo would silently be ignored by the services).
    assert {key.lower() for key in env} <= set(Settings.model_fields)


def test_child_env_layers_inherited_then_wiring_then_own(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(monkeypatch, RECS_PORT="15001")
    inherited = {"PATH": "/usr/bin", "RECS_URL": "http://stale:1", "PYTHONUNBUFFERED": "0"}
    env = config.child_env(RECOMMENDATIONS, settings, inherited)
    assert env["PATH"] == "/usr/bin"
    assert env["RECS_URL"] == "http://127.0.0.1:15001"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_local_argv_fills_every_placeholder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = make_settings(monkeypatch, MLFLOW_PORT="18080")
    paths = config.RunPaths.under(tmp_path)
    for spec in SERVICES:
        argv = config.local_argv(spec, settings, "/venv/bin/python", paths)
        assert argv[0] == "/venv/bin/python"
        assert not [part for part in argv if "{" in part and "[[]" not in part], argv
    mlflow_argv = config.local_argv(MLFLOW, settings, "/venv/bin/python", paths)
    assert mlflow_argv[1:4] == ["-m", "mlflow", "server"]
    assert mlflow_argv[mlflow_argv.index("--port") + 1] == "18080"
    assert mlflow_argv[mlflow_argv.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path}/.mlflow/mlflow.db"
    assert config.local_argv(RECOMMENDATIONS, settings, "py", paths) == ["py", "-m", "recommendations"]


def test_render_argv_names_a_missing_value() -> None:
    with pytest.raises(KeyError, match="mlflow_dir"):
        config.render_argv(MLFLOW, python="python", host="h", port="1", mlflow_allowed_hosts="*")


def test_mlflow_allows_local_and_configured_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(monkeypatch, HOST="0.0.0.0", MLFLOW_PUBLIC_URL="http://ml.example.org:8080")
    allowed = config.mlflow_allowed_hosts(settings, ["http://tracker.lan:18080"]).split(",")
    # Checked with MLflow's own matcher, the one its middleware uses.
    for host in ("localhost:8080", "127.0.0.1:18080", "192.168.1.5:8080", "ml.example.org:8080", "tracker.lan:18080"):
        assert is_allowed_host_header(allowed, host), host
    assert not is_allowed_host_header(allowed, "attacker.example:8080")


def test_plan_starts_present_modules_and_skips_a_missing_optional_one() -> None:
    present = {spec.module: True for spec in SERVICES} | {WEBAPP.module: False}
    plan = config.plan_services(SERVICES, present)
    assert WEBAPP not in plan.to_start
    assert plan.skipped == (WEBAPP,)
    assert plan.missing == ()
    assert [spec.name for spec in plan.to_start] == ["mlflow", "pipeline", "recommendations", "event_collector"]


def test_plan_reports_a_missing_required_module() -> None:
    present = {spec.module: True for spec in SERVICES} | {RECOMMENDATIONS.module: False}
    assert config.plan_services(SERVICES, present).missing == (RECOMMENDATIONS,)


def test_module_has_main_looks_for_dunder_main() -> None:
    assert config.module_has_main("launcher")
    assert config.module_has_main("mlflow")
    assert not config.module_has_main("recsys_core")
    assert not config.module_has_main("no_such_module_anywhere")


def test_url_block_lists_each_started_service(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(monkeypatch, RECS_PORT="15001", WEBAPP_PORT="18000")
    block = config.url_block(settings, SERVICES)
    assert "Recommendations API  http://127.0.0.1:15001" in block
    assert "http://127.0.0.1:18000" in block
    assert "MLflow" in block


# ---------------------------------------------------------------------------------------------------------
# catalog: ids and batches


def test_movie_item_ids_are_deterministic_opaque_uuids() -> None:
    first = catalog.movie_item_id(1)
    assert first == catalog.movie_item_id(1)
    assert uuid.UUID(first).version == 5
    assert re.fullmatch(ID_PATTERN, first)
    assert len({catalog.movie_item_id(movie_id) for movie_id in range(1, 2001)}) == 2000


def test_movie_item_id_is_pinned() -> None:
    """Changing the namespace would silently re-key every catalog already loaded."""
    assert uuid.UUID("649a5746-5cbd-5918-83de-f9583c92c54d") == catalog.MOVIELENS_NAMESPACE
    assert catalog.movie_item_id(1) == "af193c2a-94fb-5d00-9be6-d9eab0d36afd"


def _movies(count: int) -> list[Movie]:
    return [Movie(movie_id, f"Movie {movie_id} (1999)", ("Drama",) if movie_id % 2 else ()) for movie_id in
            range(1, count + 1)]  # fmt: skip


def test_catalog_batches_split_keep_order_and_validate() -> None:
    movies = _movies(2500)
    batches = list(catalog.catalog_batches(movies, 1000))
    assert [len(batch["item_ids"]) for batch in batches] == [1000, 1000, 500]
    flat_ids = [item_id for batch in batches for item_id in batch["item_ids"]]
    assert flat_ids == [catalog.movie_item_id(movie.movie_id) for movie in movies]
    assert batches[0]["genres"][:2] == [["Drama"], []]
    assert batches[2]["titles"][-1] == "Movie 2500 (1999)"
    for batch in batches:
        AddItemsRequest.model_validate(batch)  # the service's own request schema accepts every batch


def test_catalog_batches_truncate_what_the_schema_refuses() -> None:
    movie = Movie(7, "x" * 2000, tuple(f"g{i}" for i in range(100)))
    (batch,) = catalog.catalog_batches([movie])
    AddItemsRequest.model_validate(batch)


def test_catalog_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        list(catalog.catalog_batches(_movies(3), 0))


class FakeRecs:
    """An in-memory /status + /add_items, for httpx.MockTransport."""

    def __init__(self, catalog_size: int = 0, token: str | None = None) -> None:
        self.catalog_size = catalog_size
        self.token = token
        self.posted: list[dict[str, list[object]]] = []  # the JSON bodies: item_ids, genres, titles

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/status":
            return httpx.Response(200, json={"catalog_size": self.catalog_size, "other": 1})
        if request.url.path == "/add_items":
            if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
                return httpx.Response(401, json={"detail": "unauthorized"})
            body = json.loads(request.content)
            self.posted.append(body)
            self.catalog_size += len(body["item_ids"])
            return httpx.Response(200, json={"added": len(body["item_ids"]), "updated": 0})
        return httpx.Response(404)


def test_ensure_catalog_loads_an_empty_catalog_with_the_token() -> None:
    fake = FakeRecs(token="s3cret")
    with httpx.Client(transport=httpx.MockTransport(fake)) as client:
        result = catalog.ensure_catalog(client, "http://recs", lambda: _movies(2100), admin_token="s3cret")
    assert result == catalog.CatalogResult(loaded=2100, catalog_size=2100)
    assert [len(body["item_ids"]) for body in fake.posted] == [1000, 1000, 100]


def test_ensure_catalog_leaves_an_existing_catalog_alone() -> None:
    fake = FakeRecs(catalog_size=5)

    def must_not_load() -> list[Movie]:
        raise AssertionError("movies were read although the catalog exists")

    with httpx.Client(transport=httpx.MockTransport(fake)) as client:
        result = catalog.ensure_catalog(client, "http://recs", must_not_load)
    assert result == catalog.CatalogResult(loaded=0, catalog_size=5)
    assert fake.posted == []


def test_ensure_catalog_explains_a_refused_token() -> None:
    fake = FakeRecs(token="right")
    with (
        httpx.Client(transport=httpx.MockTransport(fake)) as client,
        pytest.raises(PermissionError, match="ADMIN_TOKEN"),
    ):
        catalog.ensure_catalog(client, "http://recs", lambda: _movies(3), admin_token="wrong")


# ---------------------------------------------------------------------------------------------------------
# infrastructure recipes


def test_local_redis_is_a_foreground_throwaway() -> None:
    server = infra.local_server(REDIS, "/usr/bin/redis-server", 16390, Path("/tmp/x"))
    argv = server.argv
    assert argv[0] == "/usr/bin/redis-server"
    assert argv[argv.index("--port") + 1] == "16390"
    assert argv[argv.index("--daemonize") + 1] == "no"
    assert argv[argv.index("--save") + 1] == ""


def test_local_rabbitmq_gets_its_own_node_and_folders(tmp_path: Path) -> None:
    server = infra.local_server(RABBITMQ, "/usr/lib/rabbitmq/bin/rabbitmq-server", 15673, tmp_path)
    assert server.env["RABBITMQ_NODE_PORT"] == "15673"
    assert server.env["RABBITMQ_NODENAME"] != "rabbit@localhost"
    assert server.env["RABBITMQ_MNESIA_BASE"].startswith(str(tmp_path))
    assert server.env["RABBITMQ_CONFIG_FILE"].startswith(str(tmp_path))
    assert "listeners.tcp.default = 127.0.0.1:15673\n" in server.files.values()
    assert "[].\n" in server.files.values()


def test_install_instructions_say_how() -> None:
    text = infra.install_instructions(REDIS, "redis://127.0.0.1:6379/0")
    assert "apt-get install redis-server" in text
    assert "REDIS_URL" in text
    assert "apt-get install rabbitmq-server" in infra.install_instructions(RABBITMQ, "amqp://x")


def test_only_loopback_urls_can_be_started_here() -> None:
    assert config.is_loopback_url("redis://127.0.0.1:6379/0")
    assert config.is_loopback_url("amqp://guest:guest@localhost:5672/")
    assert not config.is_loopback_url("redis://redis:6379/0")


def test_probes_see_a_closed_port_as_not_listening() -> None:
    port = free_port()
    assert infra.probe(REDIS, f"redis://127.0.0.1:{port}/0") == infra.Probe(False, False, "nothing listens there")
    assert not infra.probe(RABBITMQ, f"amqp://guest:guest@127.0.0.1:{port}/").listening


def test_find_binary_falls_back_to_path() -> None:
    assert infra.find_binary(REDIS, which=lambda name: f"/opt/bin/{name}") == "/opt/bin/redis-server"
    assert infra.find_binary(REDIS, which=lambda name: None) is None


# ---------------------------------------------------------------------------------------------------------
# process handling on dummy children


def test_children_become_healthy_and_stop_in_reverse_order(tmp_path: Path) -> None:
    stream = io.StringIO()
    output = Output(stream, color=False)
    ports = [free_port(), free_port()]
    with Supervisor(tmp_path / "logs", output, grace_s=5) as supervisor, httpx.Client(trust_env=False) as client:
        children = [
            supervisor.start(f"dummy{i}", http_server_argv(port, tmp_path), dict(os.environ))
            for i, port in enumerate(ports)
        ]
        for child, port in zip(children, ports, strict=True):
            url = f"http://127.0.0.1:{port}/"
            supervisor.wait_ready(child, http_ok(client, url), url, 20, threading.Event())
    assert all(child.exit_code() is not None for child in children)
    text = stream.getvalue()
    assert text.index("stopping dummy1") < text.index("stopping dummy0")
    assert (tmp_path / "logs" / "dummy0.log").read_text().count("GET /") >= 1


class _GoneConsole(io.StringIO):
    """A console that went away: ``make run | tee`` with tee killed."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_console_that_went_away_stops_neither_the_children_nor_their_logs_nor_the_stop(tmp_path: Path) -> None:
    # ~1 MB of output: far more than a pipe holds, so a child whose output is no longer read blocks before "done".
    chatty = "import time\nfor i in range(20000): print('line', i, 'x' * 40, flush=True)\nprint('done', flush=True)\n"
    chatty += "time.sleep(120)"
    supervisor = Supervisor(tmp_path, Output(_GoneConsole(), color=False), grace_s=2.0)
    child = supervisor.start("chatty", [sys.executable, "-c", chatty], dict(os.environ))
    assert wait_until(lambda: "done" in child.tail, timeout_s=30)
    supervisor.stop_all()  # says "stopping chatty" to the gone console first
    assert child.popen.returncode is not None
    assert (tmp_path / "chatty.log").read_text().count("line ") == 20000


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    stubborn = textwrap.dedent(
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(120)
        """
    )
    output = Output(io.StringIO(), color=False)
    supervisor = Supervisor(tmp_path, output, grace_s=1.0)
    child = supervisor.start("stubborn", [sys.executable, "-c", stubborn], dict(os.environ))
    assert wait_until(lambda: "ignoring SIGTERM" in child.tail)
    started = time.monotonic()
    supervisor.stop_all()
    assert child.popen.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_wait_ready_reports_a_child_that_dies_with_its_last_lines(tmp_path: Path) -> None:
    output = Output(io.StringIO(), color=False)
    with Supervisor(tmp_path, output) as supervisor:
        child = supervisor.start("crasher", [sys.executable, "-c", "print('no config'); raise SystemExit(3)"],
                                 dict(os.environ))  # fmt: skip
        with pytest.raises(StartupError) as raised:
            supervisor.wait_ready(child, lambda: False, "http://x/healthcheck", 20, threading.Event())
    assert raised.value.service == "crasher"
    assert "exited with code 3" in raised.value.reason
    assert raised.value.last_lines == ["no config"]
    assert "crasher.log" in raised.value.report()


def test_wait_ready_times_out_naming_the_service(tmp_path: Path) -> None:
    output = Output(io.StringIO(), color=False)
    with Supervisor(tmp_path, output, grace_s=2) as supervisor:
        child = supervisor.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
        with pytest.raises(StartupError, match=r"sleeper: http://x/h did not answer within 1s"):
            supervisor.wait_ready(child, lambda: False, "http://x/h", 1, threading.Event(), poll_s=0.05)


def test_wait_ready_gives_up_when_a_stop_is_requested(tmp_path: Path) -> None:
    output = Output(io.StringIO(), color=False)
    stop = threading.Event()
    stop.set()
    with Supervisor(tmp_path, output, grace_s=2) as supervisor:
        child = supervisor.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
        with pytest.raises(StopRequested):
            supervisor.wait_ready(child, lambda: False, "http://x/h", 30, stop)


def test_supervise_reports_an_unexpected_exit(tmp_path: Path) -> None:
    stream = io.StringIO()
    output = Output(stream, color=False)
    with Supervisor(tmp_path, output, grace_s=2) as supervisor:
        supervisor.start("steady", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
        supervisor.start("flaky", [sys.executable, "-c", "import time; time.sleep(0.5); print('out of memory')"],
                         dict(os.environ))  # fmt: skip
        code = supervise(supervisor, output, threading.Event(), poll_s=0.1)
    assert code == 1
    text = stream.getvalue()
    assert "flaky exited unexpectedly (exit code 0)" in text
    assert "out of memory" in text
    assert "stopping steady" in text


# Crashes (exit 3) on its first ``crashes`` starts, counted in a file, then runs until stopped.
CRASH_THEN_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    counter, crashes = Path(sys.argv[1]), int(sys.argv[2])
    starts = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(starts))
    print(f"start {starts}", flush=True)
    if starts <= crashes:
        raise SystemExit(3)
    time.sleep(60)
    """
)


def _supervise_in_thread(
    supervisor: Supervisor, output: Output, stop: threading.Event, policy: RestartPolicy, restartable: set[str]
) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []

    def run() -> None:
        result.append(
            supervise(
                supervisor,
                output,
                stop,
                poll_s=0.05,
                policy=policy,
                restartable=lambda c: c.name in restartable,
                # The dummies answer nothing: their output tells.
                health=lambda c: None if "start 3" in c.tail else "not started 3 times yet",
                liveness=LivenessPolicy(every_s=3600),
            )
        )

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_a_service_that_dies_is_started_again_and_keeps_its_log(tmp_path: Path) -> None:
    stream = io.StringIO()
    output = Output(stream, color=False)
    counter = tmp_path / "starts"
    policy = RestartPolicy(max_restarts=5, window_s=60, first_delay_s=0.1)
    stop = threading.Event()
    with Supervisor(tmp_path / "logs", output, grace_s=2) as supervisor:
        supervisor.start("steady", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
        supervisor.start("flaky", [sys.executable, "-c", CRASH_THEN_RUN, str(counter), "2"], dict(os.environ))
        thread, result = _supervise_in_thread(supervisor, output, stop, policy, {"steady", "flaky"})
        assert wait_until(lambda: counter.exists() and counter.read_text() == "3", timeout_s=20)
        flaky = next(child for child in supervisor.children if child.name == "flaky")
        assert wait_until(lambda: "start 3" in flaky.tail)
        # The supervisor notices the health on its next poll: stop only once it has said so.
        assert wait_until(lambda: "flaky is healthy again" in stream.getvalue())
        assert flaky.exit_code() is None, "the third start runs"
        stop.set()
        thread.join(timeout=20)
    text = stream.getvalue()
    print(text)
    assert result == [0]
    # Twice, with the delay doubling; the order of the stack is kept (flaky, the newer, stops first).
    assert "flaky exited unexpectedly (exit code 3); starting it again in 0.1 s" in text
    assert text.count("started flaky") == 3
    assert text.count("flaky is healthy again") == 1  # only the third start was, the second died first
    assert text.index("stopping flaky") < text.index("stopping steady")
    log = (tmp_path / "logs" / "flaky.log").read_text()
    assert log.splitlines() == ["start 1", "start 2", "start 3"]


def test_a_crash_loop_stops_the_stack(tmp_path: Path) -> None:
    stream = io.StringIO()
    output = Output(stream, color=False)
    policy = RestartPolicy(max_restarts=2, window_s=60, first_delay_s=0.05)
    with Supervisor(tmp_path / "logs", output, grace_s=2) as supervisor:
        supervisor.start("steady", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
        argv = [sys.executable, "-c", CRASH_THEN_RUN, str(tmp_path / "starts"), "99"]
        supervisor.start("looping", argv, dict(os.environ))
        thread, result = _supervise_in_thread(supervisor, output, threading.Event(), policy, {"steady", "looping"})
        thread.join(timeout=30)
    text = stream.getvalue()
    assert result == [1]
    assert text.count("started looping") == 3  # the first start and two restarts
    assert "looping exited unexpectedly (exit code 3), 3 times within 60 s: giving up" in text
    assert "stopping steady" in text


def test_a_child_that_is_not_restartable_stops_the_stack(tmp_path: Path) -> None:
    stream = io.StringIO()
    output = Output(stream, color=False)
    with Supervisor(tmp_path / "logs", output, grace_s=2) as supervisor:
        argv = [sys.executable, "-c", CRASH_THEN_RUN, str(tmp_path / "starts"), "1"]
        supervisor.start("redis", argv, dict(os.environ))
        thread, result = _supervise_in_thread(supervisor, output, threading.Event(), RestartPolicy(), {"pipeline"})
        thread.join(timeout=30)
    assert result == [1]
    assert "redis exited unexpectedly (exit code 3); stopping the rest" in stream.getvalue()


def _watch_liveness(
    supervisor: Supervisor, output: Output, stop: threading.Event, flag: Path, liveness: LivenessPolicy
) -> threading.Thread:
    """``supervise`` in a thread, with a healthcheck that fails while ``flag`` holds "stuck"."""

    def health(child: object) -> str | None:
        return "http://x/healthcheck timed out" if flag.read_text() == "stuck" else None

    policy = RestartPolicy(max_restarts=3, window_s=60, first_delay_s=0.05)
    thread = threading.Thread(
        target=supervise,
        args=(supervisor, output, stop),
        kwargs={"poll_s": 0.02, "policy": policy, "health": health, "liveness": liveness},
    )
    thread.start()
    return thread


def test_a_running_service_whose_healthcheck_fails_is_reported_and_its_recovery_too(tmp_path: Path) -> None:
    stream = io.StringIO()
    output = Output(stream, color=False)
    flag = tmp_path / "health"
    flag.write_text("ok")
    stop = threading.Event()
    with Supervisor(tmp_path / "logs", output, grace_s=2) as supervisor:
        child = supervisor.start("stuck", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
        thread = _watch_liveness(
            supervisor, output, stop, flag, LivenessPolicy(every_s=0.05, report_after=3, kill_after=0)
        )
        time.sleep(0.5)
        assert "healthcheck" not in stream.getvalue(), "a healthy service is not reported"
        flag.write_text("stuck")
        assert wait_until(lambda: "its healthcheck failed 3 times in a row" in stream.getvalue())
        flag.write_text("ok")
        assert wait_until(lambda: "stuck answers its healthcheck again" in stream.getvalue())
        stop.set()
        thread.join(timeout=10)
        assert child.exit_code() is None, "kill_after=0: reported, never killed"
    text = stream.getvalue()
    assert "(http://x/healthcheck timed out); see" in text
    assert text.count("failed 3 times in a row") == 1, "reported once, not on every further failure"
    assert text.count("started stuck") == 1


def test_a_service_stuck_for_long_is_killed_and_started_again(tmp_path: Path) -> None:
    stream = io.StringIO()
    output = Output(stream, color=False)
    flag = tmp_path / "health"
    flag.write_text("stuck")
    stop = threading.Event()
    liveness = LivenessPolicy(every_s=0.05, report_after=2, kill_after=4)
    with Supervisor(tmp_path / "logs", output, grace_s=2) as supervisor:
        first = supervisor.start("stuck", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
        thread = _watch_liveness(supervisor, output, stop, flag, liveness)
        assert wait_until(lambda: stream.getvalue().count("started stuck") == 2), stream.getvalue()
        flag.write_text("ok")  # the new process answers
        assert wait_until(lambda: "stuck is healthy again" in stream.getvalue()), stream.getvalue()
        # Checked before the supervising thread ends: the restarted child was forked by that thread, and its
        # parent-death signal (SIGTERM, launcher/processes.py) fires when that thread exits. (The launcher
        # supervises from its main thread, so there the children outlive nothing but the launcher itself.)
        second = next(child for child in supervisor.children if child.name == "stuck")
        assert first.popen.returncode == -signal.SIGKILL
        assert second.pid != first.pid and second.exit_code() is None
        stop.set()
        thread.join(timeout=10)
    text = stream.getvalue()
    assert "has not answered its healthcheck for 4 checks in a row" in text
    assert "stuck exited unexpectedly (exit code -9); starting it again" in text
    assert text.count("started stuck") == 2


SUPERVISED_SCRIPT = """
import os, sys, threading
from pathlib import Path
from launcher.processes import Output, Supervisor, http_ok, install_stop_handlers, supervise
import httpx

log_dir, port_a, port_b = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
output = Output(sys.stdout, color=False)
stop = threading.Event()
install_stop_handlers(stop)
with Supervisor(log_dir, output, grace_s=5) as supervisor:
    pids = []
    for name, port in (("first", port_a), ("second", port_b)):
        argv = [sys.executable, "-m", "http.server", port, "--bind", "127.0.0.1", "--directory", str(log_dir)]
        child = supervisor.start(name, argv, dict(os.environ))
        with httpx.Client(trust_env=False) as client:
            url = f"http://127.0.0.1:{port}/"
            supervisor.wait_ready(child, http_ok(client, url), url, 20, stop)
        pids.append(child.pid)
    output.say("READY " + " ".join(map(str, pids)))
    code = supervise(supervisor, output, stop, poll_s=0.1)
output.say("EXIT " + str(code))
sys.exit(code)
"""


def _run_script(tmp_path: Path, source: str, *args: str) -> subprocess.Popen[str]:
    """``source`` run as a launcher would be: its own process, this checkout importable, output as text lines."""
    script = tmp_path / f"script-{uuid.uuid4().hex[:8]}.py"
    script.write_text(source)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_launcher_stops_every_child(tmp_path: Path, signum: signal.Signals) -> None:
    launcher = _run_script(tmp_path, SUPERVISED_SCRIPT, str(tmp_path), str(free_port()), str(free_port()))
    assert launcher.stdout is not None
    lines: list[str] = []
    pids: list[int] = []
    try:
        for line in launcher.stdout:
            lines.append(line)
            if "READY" in line:
                pids = [int(pid) for pid in line.split("READY", 1)[1].split()]
                break
        assert len(pids) == 2, "".join(lines)
        assert all(psutil.pid_exists(pid) for pid in pids)
        launcher.send_signal(signum)
        rest, _ = launcher.communicate(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    transcript = "".join(lines) + rest
    assert launcher.returncode == 0, transcript
    assert all(is_gone(pid) for pid in pids), transcript
    assert transcript.index("stopping second") < transcript.index("stopping first")
    assert "EXIT 0" in transcript


SIGNAL_STORM_SCRIPT = """
import signal, sys, threading, time
from launcher.processes import install_stop_handlers

# Ignored before and after: the storm goes on until this process has exited.
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
repeats = 0

def count_repeat():
    global repeats
    repeats += 1

stop = threading.Event()
restore = install_stop_handlers(stop, on_repeat=count_repeat)
print("READY", flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    stop.wait(0.0001)  # the launcher's supervise loop waits on its stop event like this, only slower
restore()
print("DONE", stop.is_set(), repeats, flush=True)
"""


def test_stop_handlers_refuse_a_thread_other_than_the_main_one_and_leave_nothing_open() -> None:
    open_before = len(os.listdir("/proc/self/fd"))
    errors: list[BaseException] = []

    def install() -> None:
        try:
            install_stop_handlers(threading.Event())
        except ValueError as error:
            errors.append(error)

    thread = threading.Thread(target=install)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "main thread" in str(errors[0])
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_stop_signals_arriving_while_the_main_thread_waits_on_the_stop_event_never_hang_it(tmp_path: Path) -> None:
    # A handler that sets the Event itself deadlocks when it interrupts the main thread inside stop.wait(), which
    # holds the Event's lock: it happened once in CI (a launcher that ignored its SIGINT for 30 s). A storm of
    # signals against a tight wait loop hits that window within seconds; under a storm the blocked handler is
    # interrupted by the next signal's, and so on, until the nested handlers end in a RecursionError.
    child = _run_script(tmp_path, SIGNAL_STORM_SCRIPT, "3")
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "READY"
    sent = 0
    try:
        while child.poll() is None and sent < 20_000:
            child.send_signal(signal.SIGTERM if sent % 2 else signal.SIGINT)
            sent += 1
            time.sleep(0.0001)
        rest, _ = child.communicate(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    print(f"signals sent: {sent}; child: {rest.strip()!r}")
    assert child.returncode == 0, rest
    done = rest.split()
    assert done[:2] == ["DONE", "True"], rest
    assert int(done[2]) > 0, "no repeated stop signal was seen: the storm did not reach the process"


STUBBORN_SUPERVISED_SCRIPT = """
import os, sys, threading
from pathlib import Path
from launcher.processes import Output, Supervisor, install_stop_handlers, supervise

log_dir = Path(sys.argv[1])
output = Output(sys.stdout, color=False)
stop = threading.Event()
supervisor = Supervisor(log_dir, output, grace_s=60)
install_stop_handlers(stop, on_repeat=supervisor.force_stop)
stubborn = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(120)"
)
with supervisor:
    children = [supervisor.start(name, [sys.executable, "-c", stubborn], dict(os.environ)) for name in ("a", "b")]
    while not all("up" in child.tail for child in children):
        stop.wait(0.05)
    output.say("READY " + " ".join(str(child.pid) for child in children))
    supervise(supervisor, output, stop, poll_s=0.05)
output.say("EXIT")
"""


def test_a_second_ctrl_c_kills_what_is_left_without_waiting_for_the_grace_period(tmp_path: Path) -> None:
    launcher = _run_script(tmp_path, STUBBORN_SUPERVISED_SCRIPT, str(tmp_path))
    assert launcher.stdout is not None
    lines: list[str] = []
    try:
        pids: list[int] = []
        for line in launcher.stdout:
            lines.append(line)
            if "READY" in line:
                pids = [int(pid) for pid in line.split("READY", 1)[1].split()]
                launcher.send_signal(signal.SIGINT)  # the first Ctrl-C
            if "stopping b" in line:  # its ordered stop has begun, and b ignores SIGTERM for 60 s
                break
        assert len(pids) == 2, "".join(lines)
        started = time.monotonic()
        launcher.send_signal(signal.SIGINT)
        rest, _ = launcher.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if launcher.poll() is None:
            launcher.kill()
    transcript = "".join(lines) + rest
    print(transcript)
    assert took < 20, f"waited {took:.1f} s: the 60 s grace period was not cut short"
    assert "second stop request: killing the remaining services without waiting" in transcript
    assert "EXIT" in transcript
    assert all(is_gone(pid) for pid in pids), transcript
    assert transcript.index("stopping b (pid") < transcript.index("stopping a (pid")


def test_passwords_in_the_servers_urls_are_not_printed() -> None:
    assert config.redacted("amqp://guest:guest@127.0.0.1:5672/") == "amqp://guest:***@127.0.0.1:5672/"
    assert config.redacted("redis://:s3cret@10.0.0.5:6379/2") == "redis://:***@10.0.0.5:6379/2"
    assert config.redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    error = "Error connecting to redis://:s3cret@10.0.0.5:6379/2: refused"
    assert "s3cret" not in config.scrubbed(error, "redis://:s3cret@10.0.0.5:6379/2")


def test_the_running_brokers_url_is_printed_without_its_password(tmp_path: Path) -> None:
    """The shared RabbitMQ answers with guest:guest: the launcher says it uses it, and not with what password."""
    stream = io.StringIO()
    output = Output(stream, color=False)
    settings = Settings(_env_file=None)
    assert settings.amqp_url.startswith("amqp://guest:guest@")
    with Supervisor(tmp_path / "logs", output) as supervisor:
        ensure_infrastructure(
            RABBITMQ, settings, supervisor, output, threading.Event(), config.RunPaths.under(tmp_path), {}
        )
    assert "RabbitMQ answers at amqp://guest:***@" in stream.getvalue() and "guest:guest" not in stream.getvalue()


def test_a_taken_port_is_reported_for_the_stack_with_the_variable_to_change() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(_env_file=None, recs_port=port)
        with pytest.raises(StartupError) as raised:
            check_ports_free(settings, [RECOMMENDATIONS])
    report = raised.value.report()
    assert report.startswith(f"the stack failed to start: port(s) already in use: {port} (recommendations, RECS_PORT)")
    assert "REDIS_PREFIX" in report


def test_the_previous_runs_log_is_kept_when_a_service_starts_again(tmp_path: Path) -> None:
    say = [sys.executable, "-c", "import sys; print(sys.argv[1], flush=True)"]
    for run in ("first run", "second run"):
        with Supervisor(tmp_path, Output(io.StringIO(), color=False)) as supervisor:
            child = supervisor.start("svc", [*say, run], dict(os.environ))
            assert wait_until(lambda: child.exit_code() is not None)  # noqa: B023 (called within the iteration)
            assert child.reader is not None
            child.reader.join(5)
    assert (tmp_path / "svc.log").read_text().strip() == "second run"
    assert (tmp_path / "svc.previous.log").read_text().strip() == "first run"


def test_the_catalog_one_shot_loads_nothing_when_told_not_to(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens there: a load would fail after --wait; the setting must stop it before any request.
    monkeypatch.setenv("RECS_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("LOAD_CATALOG_ON_START", "false")
    assert catalog.main(["--wait", "0.5"]) == 0
    assert "LOAD_CATALOG_ON_START is false: not loading" in capsys.readouterr().out
