"""``python -m launcher`` (``make run``): the whole stack on this machine, in one terminal.

Order: Redis and RabbitMQ (reused when they answer, else started locally), then every service of
``launcher.services.SERVICES`` in order, each waited for until its healthcheck answers; then the MovieLens
catalog if the recommendations service has none; then the URL table. Ctrl-C/SIGTERM stops every child it
started, newest first; a second Ctrl-C kills what is left at once. A service dying on its own is started again
(``RestartPolicy``: with a growing delay, and a crash loop stops the stack, exit code 1); so is one that runs but
stopped answering its healthcheck for two minutes (``LivenessPolicy``; reported after 30 s). Redis or RabbitMQ
started here dying stops the rest at once, as does any service with ``--no-restart``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from launcher import catalog, infra
from launcher.config import (
    Plan,
    RunPaths,
    child_env,
    connect_host,
    health_url,
    infra_url,
    is_loopback_url,
    local_argv,
    local_url,
    plan_services,
    redacted,
    scrubbed,
    service_port,
    url_block,
    url_port,
)
from launcher.processes import (
    NO_RESTARTS,
    LivenessPolicy,
    Output,
    RestartPolicy,
    StartupError,
    StopRequested,
    Supervisor,
    health_problem,
    http_ok,
    install_stop_handlers,
    supervise,
)
from launcher.services import INFRASTRUCTURE, RECOMMENDATIONS, SERVICES, InfraSpec, ServiceSpec
from recsys_core.settings import PROJECT_ROOT, Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_MISSING_DEPENDENCY = 2
INFRA_STARTUP_TIMEOUT_S = 90.0


class InfrastructureUnavailable(Exception):
    """Redis or RabbitMQ neither answers nor can be started here; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Options:
    echo_children: bool
    load_catalog: bool
    timeout_s: float | None  # None: each service's own startup timeout
    grace_s: float
    restart: bool = True


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m launcher",
        description="Start Redis/RabbitMQ (if needed), MLflow, the pipeline, the APIs and the web UI locally. "
        "All configuration comes from the environment (see recsys_core/settings.py); "
        "each service's output also goes to .run/logs/<service>.log.",
    )
    parser.add_argument("--quiet", action="store_true", help="do not mirror service output here (logs only)")
    parser.add_argument("--no-catalog", action="store_true", help="do not load MovieLens into an empty catalog")
    parser.add_argument("--timeout", type=float, default=None, help="seconds each service gets to become healthy")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL on stop")
    parser.add_argument(
        "--no-restart", action="store_true", help="a service that dies stops the stack instead of being started again"
    )
    args = parser.parse_args(argv)
    return Options(
        echo_children=not args.quiet,
        load_catalog=not args.no_catalog,
        timeout_s=args.timeout,
        grace_s=args.grace,
        restart=not args.no_restart,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    settings = Settings()
    output = Output(sys.stdout, echo_children=options.echo_children)
    plan = plan_services(SERVICES)
    if plan.missing:
        names = ", ".join(f"{spec.name} ({spec.module}/__main__.py)" for spec in plan.missing)
        output.say(f"cannot start the stack: these services are not in this checkout: {names}")
        return EXIT_MISSING_DEPENDENCY
    # Known up front, so the name column keeps one width from the first line on.
    for name in [infra_spec.name for infra_spec in INFRASTRUCTURE] + [spec.name for spec in plan.to_start]:
        output.register(name)
    for spec in plan.skipped:
        output.say(f"{spec.name} is optional and {spec.module}/__main__.py does not exist: not starting it")

    paths = RunPaths.under(PROJECT_ROOT)
    stop = threading.Event()
    supervisor = Supervisor(paths.logs_dir, output, grace_s=options.grace_s)
    restore_signals = install_stop_handlers(stop, on_repeat=supervisor.force_stop)
    try:
        with supervisor:
            code = run_stack(settings, plan, options, paths, supervisor, output, stop)
            started_any = bool(supervisor.children)
        if started_any:
            output.say("all services stopped")
        return code
    finally:
        restore_signals()


def run_stack(
    settings: Settings,
    plan: Plan,
    options: Options,
    paths: RunPaths,
    supervisor: Supervisor,
    output: Output,
    stop: threading.Event,
) -> int:
    # Passed through unchanged (PATH, locale, any setting the user exported); the wiring is layered on top.
    inherited = dict(os.environ)
    try:
        check_ports_free(settings, plan.to_start)
        for infra_spec in INFRASTRUCTURE:
            ensure_infrastructure(infra_spec, settings, supervisor, output, stop, paths, inherited)
        paths.mlflow_dir.mkdir(parents=True, exist_ok=True)
        for spec in plan.to_start:
            start_service(spec, settings, options, supervisor, output, stop, paths, inherited)
        if options.load_catalog and settings.load_catalog_on_start and RECOMMENDATIONS in plan.to_start:
            load_catalog(settings, output, stop)
    except StopRequested:
        output.say("stop requested while starting")
        return EXIT_OK
    except StartupError as error:
        output.say(error.report())
        return EXIT_FAILED
    except InfrastructureUnavailable as error:
        output.say(str(error))
        return EXIT_MISSING_DEPENDENCY
    if stop.is_set():
        return EXIT_OK
    output.block(url_block(settings, plan.to_start))
    output.say(f"service logs: {paths.logs_dir}/<service>.log   --   Ctrl-C stops everything")
    policy = RestartPolicy() if options.restart else NO_RESTARTS
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        urls = {spec.name: health_url(spec, settings) for spec in plan.to_start}
        return supervise(
            supervisor,
            output,
            stop,
            policy=policy,
            restartable=lambda child: child.name in urls,
            health=lambda child: health_problem(client, urls[child.name]),
            # Without restarts, killing a stuck service would stop the whole stack: then it is only reported.
            liveness=LivenessPolicy() if options.restart else LivenessPolicy(kill_after=0),
        )


def check_ports_free(settings: Settings, services: Sequence[ServiceSpec]) -> None:
    """Fails before anything starts: a leftover stack on a port would answer the healthcheck for a new child."""
    host = connect_host(settings.host)
    busy = [spec for spec in services if infra.tcp_listening(host, service_port(spec, settings), timeout_s=0.5)]
    if busy:
        details = ", ".join(f"{service_port(spec, settings)} ({spec.name}, {spec.env_var_for_port})" for spec in busy)
        raise StartupError(
            "the stack",
            f"port(s) already in use: {details}; stop whatever listens there (another stack still running?) or "
            "choose free ports with those variables (a second stack beside a running one also needs its own "
            "REDIS_PREFIX and EVENTS_QUEUE, or the two share one run)",
        )


def ensure_infrastructure(
    spec: InfraSpec,
    settings: Settings,
    supervisor: Supervisor,
    output: Output,
    stop: threading.Event,
    paths: RunPaths,
    inherited: dict[str, str],
) -> None:
    url = infra_url(spec, settings)
    probe = infra.probe(spec, url)
    shown = redacted(url)
    if probe.healthy:
        output.say(f"{spec.label} answers at {shown} ({scrubbed(probe.detail, url)}): using it")
        return
    if probe.listening:
        raise InfrastructureUnavailable(f"{spec.label} at {shown}: {scrubbed(probe.detail, url)}")
    if not is_loopback_url(url):
        raise InfrastructureUnavailable(
            f"{spec.label} does not answer at {shown}; it is not on this machine, so it cannot be started here"
        )
    binary = infra.find_binary(spec)
    if binary is None:
        raise InfrastructureUnavailable(infra.install_instructions(spec, shown))
    server = infra.local_server(spec, binary, url_port(url, spec.default_port), paths.state_dir)
    for path, content in server.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    output.say(f"{spec.label} does not answer at {shown}: starting a local one ({binary})")
    child = supervisor.start(spec.name, server.argv, {**inherited, **server.env}, cwd=PROJECT_ROOT)

    def is_up() -> bool:
        return infra.probe(spec, url).healthy

    supervisor.wait_ready(child, is_up, shown, INFRA_STARTUP_TIMEOUT_S, stop, poll_s=0.5)
    output.say(f"{spec.label} is up at {shown}")


def start_service(
    spec: ServiceSpec,
    settings: Settings,
    options: Options,
    supervisor: Supervisor,
    output: Output,
    stop: threading.Event,
    paths: RunPaths,
    inherited: dict[str, str],
) -> None:
    argv = local_argv(spec, settings, sys.executable, paths)
    child = supervisor.start(spec.name, argv, child_env(spec, settings, inherited), cwd=PROJECT_ROOT)
    url = health_url(spec, settings)
    timeout_s = options.timeout_s if options.timeout_s is not None else spec.startup_timeout_s
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        supervisor.wait_ready(child, http_ok(client, url), url, timeout_s, stop)
    output.say(f"{spec.name} is healthy at {url}")


def load_catalog(settings: Settings, output: Output, stop: threading.Event) -> None:
    """Best effort: a failure is reported loudly but leaves the running stack up."""
    recs_url = local_url(settings, service_port(RECOMMENDATIONS, settings))

    def announce_download(searched: list[str]) -> None:
        output.say(
            f"MovieLens is not in {searched}: downloading it from {settings.movielens_url} "
            "(set MOVIELENS_DIR to use a copy you have)"
        )

    try:
        with httpx.Client(timeout=60.0, trust_env=False) as client:
            result = catalog.ensure_catalog(
                client,
                recs_url,
                catalog.movielens_movies(settings, should_stop=stop.is_set, before_download=announce_download),
                admin_token=settings.admin_token,
                should_stop=stop.is_set,
            )
    except (httpx.HTTPError, PermissionError, OSError, RuntimeError, KeyError, ValueError) as error:
        if stop.is_set():
            return  # stopping anyway: the load was cut short on purpose
        output.say(
            f"WARNING: could not load the MovieLens catalog: {error!r}\n"
            "the services keep running; retry with: .venv/bin/python -m launcher.catalog"
        )
        return
    if result.loaded:
        output.say(f"loaded {result.loaded} MovieLens movies; catalog_size={result.catalog_size}")
    else:
        output.say(f"catalog already loaded (catalog_size={result.catalog_size})")
