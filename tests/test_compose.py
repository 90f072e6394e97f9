"""docker-compose.yml and the Dockerfile agree with launcher/services.py, the one description of the stack.

No Docker engine is needed: the file is parsed with PyYAML and validated against the Compose Specification's
JSON schema (the copy check-jsonschema ships); ``docker compose config`` also runs when the compose plugin is
installed (it validates without a daemon).
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from check_jsonschema import builtin_schemas
from mlflow.server.security_utils import is_allowed_host_header

from launcher.config import render_argv
from launcher.services import INFRASTRUCTURE, MLFLOW, RABBITMQ, REDIS, SERVICES, ServiceSpec
from recsys_core.settings import PROJECT_ROOT, Settings

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
# Where the compose file keeps MLflow's sqlite file and artifacts (a named volume).
MLFLOW_DATA_DIR = "/data/mlflow"

Service = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict) and isinstance(loaded.get("services"), dict)
    return loaded


def service_of(compose: dict[str, Any], name: str) -> Service:
    services = compose["services"]
    assert name in services, f"docker-compose.yml has no service {name!r} (has {sorted(services)})"
    return services[name]


def command_of(service: Service) -> list[str]:
    command = service.get("command")
    assert command, "no command"
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def published_ports(service: Service) -> dict[int, int]:
    """container port -> host port, from short ("[ip:]host:container") or long syntax."""
    mapping: dict[int, int] = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            mapping[int(entry["target"])] = int(entry["published"])
            continue
        parts = str(entry).split("/")[0].split(":")
        assert len(parts) >= 2, f"port {entry!r} is not published on the host"
        mapping[int(parts[-1])] = int(parts[-2])
    return mapping


def healthcheck_command(service: Service) -> str:
    check = service.get("healthcheck")
    assert check, "no healthcheck"
    assert not check.get("disable"), "healthcheck disabled"
    test = check["test"]
    parts = shlex.split(test) if isinstance(test, str) else list(test)
    assert parts and parts[0] in ("CMD", "CMD-SHELL"), f"unexpected healthcheck test {test!r}"
    return " ".join(parts[1:])


def environment_of(service: Service) -> dict[str, str | None]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return {key: value for key, _, value in (item.partition("=") for item in env)}
    return {key: None if value is None else str(value) for key, value in env.items()}


def flag_value(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


# ---------------------------------------------------------------------------------------------------------
# every launcher service, as a compose service


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_same_command_as_the_launcher(compose: dict[str, Any], spec: ServiceSpec) -> None:
    command = command_of(service_of(compose, spec.name))
    if spec is MLFLOW:
        # The allowed hosts differ by design (compose peers call it "mlflow"); checked separately below.
        expected = render_argv(
            spec,
            python="python",
            host="0.0.0.0",
            port=str(spec.default_port),
            mlflow_dir=MLFLOW_DATA_DIR,
            mlflow_allowed_hosts=flag_value(command, "--allowed-hosts"),
        )
    else:
        expected = ["python", "-m", spec.module]
    assert command == expected


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_publishes_the_service_port(compose: dict[str, Any], spec: ServiceSpec) -> None:
    service = service_of(compose, spec.name)
    ports = published_ports(service)
    # The container listens on the Settings default, published under the same number.
    assert Settings.model_fields[spec.port_setting].default == spec.default_port
    assert ports.get(spec.default_port) == spec.default_port, ports
    # Pinned in the environment (which wins over the optional .env): a .env written for `make run` that moves a
    # port would otherwise move the listener away from the mapping and the healthcheck.
    if spec is not MLFLOW:  # MLflow's port is its command's --port
        assert environment_of(service).get(spec.env_var_for_port) == str(spec.default_port)


def _seconds(duration: str) -> float:
    """A compose duration such as "5s", "2m" or "1m30s"."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"unreadable duration {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_healthcheck_waits_at_least_as_long_as_the_launcher(compose: dict[str, Any], spec: ServiceSpec) -> None:
    """A start that `make run` waits for must not turn the container unhealthy (and fail `up` for its
    dependants): the grace period plus the failing checks allowed after it cover the launcher's timeout."""
    check = service_of(compose, spec.name)["healthcheck"]
    budget = _seconds(str(check.get("start_period", "0s"))) + int(check["retries"]) * _seconds(str(check["interval"]))
    assert budget >= spec.startup_timeout_s, (budget, spec.startup_timeout_s)


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_healthcheck_probes_the_service_endpoint(compose: dict[str, Any], spec: ServiceSpec) -> None:
    command = healthcheck_command(service_of(compose, spec.name))
    assert f"http://127.0.0.1:{spec.default_port}{spec.health_path}'" in command, command


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_waits_for_healthy_dependencies(compose: dict[str, Any], spec: ServiceSpec) -> None:
    depends_on = service_of(compose, spec.name).get("depends_on", {})
    if spec.depends_on:
        assert isinstance(depends_on, dict), "depends_on must use the long form to carry a condition"
    for dependency in spec.depends_on:
        assert dependency in depends_on, f"{spec.name} does not depend on {dependency}"
        assert depends_on[dependency].get("condition") == "service_healthy"
        # The dependency must have a healthcheck, or "service_healthy" can never be reached.
        healthcheck_command(service_of(compose, dependency))


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_has_the_services_own_env(compose: dict[str, Any], spec: ServiceSpec) -> None:
    env = environment_of(service_of(compose, spec.name))
    assert {key: env.get(key) for key, _ in spec.env} == dict(spec.env)


@pytest.mark.parametrize("spec", [s for s in SERVICES if s is not MLFLOW], ids=lambda spec: spec.name)
def test_env_points_at_the_compose_hostnames(compose: dict[str, Any], spec: ServiceSpec) -> None:
    env = environment_of(service_of(compose, spec.name))
    assert {key.lower() for key in env} - {"pythonunbuffered"} <= set(Settings.model_fields), "unknown variable"
    assert urlsplit(env["REDIS_URL"] or "").hostname == REDIS.name
    assert urlsplit(env["AMQP_URL"] or "").hostname == RABBITMQ.name
    assert env["HOST"] == "0.0.0.0"
    for peer in SERVICES:
        if peer.url_setting:
            assert env[peer.url_setting.upper()] == f"http://{peer.name}:{peer.default_port}"


def test_service_ports_are_published_on_the_loopback_unless_asked(compose: dict[str, Any]) -> None:
    # With ADMIN_TOKEN unset anyone who reaches /cleanup can erase the run: not the whole network by default.
    for name, service in compose["services"].items():
        for entry in service.get("ports", []):
            assert str(entry).startswith(("127.0.0.1:", "${PUBLISH_HOST:-127.0.0.1}:")), (name, entry)


def test_python_services_read_an_optional_env_file(compose: dict[str, Any]) -> None:
    for spec in SERVICES:
        assert {"path": ".env", "required": False} in service_of(compose, spec.name).get("env_file", []), spec.name


def test_python_services_share_one_image_built_here(compose: dict[str, Any]) -> None:
    images = {service_of(compose, spec.name).get("image") for spec in SERVICES}
    builds = {str(service_of(compose, spec.name).get("build")) for spec in SERVICES}
    assert len(images) == 1 and None not in images
    assert builds == {"."}


def test_the_pipeline_standby_is_the_pipeline_on_an_opt_in_profile(compose: dict[str, Any]) -> None:
    pipeline, standby = service_of(compose, "pipeline"), service_of(compose, "pipeline-standby")
    assert standby.get("profiles") == ["ha"]  # `docker compose up` alone runs one pipeline
    assert command_of(standby) == command_of(pipeline)
    assert environment_of(standby) == environment_of(pipeline)  # same prefix and queue: the same deployment
    # Its dependencies, and the pipeline itself: started once it is healthy, the published one leads first.
    assert standby.get("depends_on") == {**pipeline.get("depends_on", {}), "pipeline": {"condition": "service_healthy"}}
    assert healthcheck_command(standby) == healthcheck_command(pipeline)
    assert not published_ports(standby)  # a second publisher of host port 5002 could not start


# ---------------------------------------------------------------------------------------------------------
# infrastructure and data


@pytest.mark.parametrize("spec", INFRASTRUCTURE, ids=lambda spec: spec.name)
def test_infrastructure_has_an_image_and_a_healthcheck(compose: dict[str, Any], spec: Any) -> None:
    service = service_of(compose, spec.name)
    assert str(service.get("image", "")).startswith(f"{spec.name}:")
    healthcheck_command(service)


def test_redis_is_durable(compose: dict[str, Any]) -> None:
    redis = service_of(compose, REDIS.name)
    command = command_of(redis)
    assert flag_value(command, "--appendonly") == "yes"
    assert named_volume_at(compose, redis, "/data")


def test_mlflow_keeps_its_data_on_a_volume(compose: dict[str, Any]) -> None:
    mlflow = service_of(compose, MLFLOW.name)
    assert named_volume_at(compose, mlflow, MLFLOW_DATA_DIR)
    assert flag_value(command_of(mlflow), "--backend-store-uri") == f"sqlite:///{MLFLOW_DATA_DIR}/mlflow.db"


def test_mlflow_accepts_its_compose_hostname(compose: dict[str, Any]) -> None:
    """MLflow 3 answers 403 to Host headers it does not know; /health is exempt, so only this catches it."""
    allowed = flag_value(command_of(service_of(compose, MLFLOW.name)), "--allowed-hosts").split(",")
    tracking_uri = environment_of(service_of(compose, "pipeline"))["MLFLOW_TRACKING_URI"] or ""
    assert is_allowed_host_header(allowed, urlsplit(tracking_uri).netloc)
    assert is_allowed_host_header(allowed, f"localhost:{MLFLOW.default_port}")
    # MLflow's own defaults stay: a stack published with PUBLISH_HOST=0.0.0.0 is opened by a private address.
    for lan_host in ("192.168.1.5:8080", "10.0.0.3:8080", "172.20.0.4:8080"):
        assert is_allowed_host_header(allowed, lan_host), lan_host
    assert not is_allowed_host_header(allowed, "attacker.example:8080")


def test_the_catalog_one_shot_loads_movielens_once_the_recommendations_service_is_healthy(
    compose: dict[str, Any],
) -> None:
    catalog = service_of(compose, "catalog")
    assert command_of(catalog) == ["python", "-m", "launcher.catalog"]
    assert str(catalog.get("restart")) == "no"  # it exits 0 when done; "unless-stopped" would load forever
    assert catalog.get("depends_on") == {"recommendations": {"condition": "service_healthy"}}
    env = environment_of(catalog)
    assert env["RECS_URL"] == f"http://recommendations:{service_of_spec('recommendations').default_port}"
    assert "ADMIN_TOKEN" in env  # /add_items is guarded when a token is set
    assert {"path": ".env", "required": False} in catalog.get("env_file", [])
    # The download is kept in a volume at the image's DATA_CACHE_DIR, so it happens once.
    cache_dir = dict(
        pair.split("=", 1)
        for keyword, argument in dockerfile_instructions(DOCKERFILE)
        if keyword == "ENV"
        for pair in argument.split()
    )["DATA_CACHE_DIR"]
    assert named_volume_at(compose, catalog, cache_dir)


def service_of_spec(name: str) -> ServiceSpec:
    return next(spec for spec in SERVICES if spec.name == name)


def named_volume_at(compose: dict[str, Any], service: Service, target: str) -> bool:
    declared = compose.get("volumes") or {}
    for volume in service.get("volumes", []):
        source, _, rest = str(volume).partition(":") if isinstance(volume, str) else (volume["source"], ":", "")
        mount = rest.split(":")[0] if isinstance(volume, str) else volume["target"]
        if mount == target and source in declared:
            return True
    return False


# ---------------------------------------------------------------------------------------------------------
# the Dockerfile


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())  # join continuation lines
    instructions = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, argument = stripped.partition(" ")
            instructions.append((keyword.upper(), argument.strip()))
    return instructions


def test_dockerfile_is_python_311_installing_the_project_as_non_root() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)
    bases = [argument for keyword, argument in instructions if keyword == "FROM"]
    assert bases and re.fullmatch(r"python:3\.11(\.\d+)?-slim(\S*)?", bases[-1].split()[0]), bases
    runs = " ".join(argument for keyword, argument in instructions if keyword == "RUN")
    assert "pyproject.toml" in runs and "pip install" in runs
    users = [argument for keyword, argument in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = {line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    assert {".venv", ".git", ".env", ".mlflow", ".run", ".data"} <= ignored


def compose_spec_validator() -> jsonschema.protocols.Validator:
    schema = builtin_schemas.get_builtin_schema("vendor.compose-spec")
    return jsonschema.validators.validator_for(schema)(schema)


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in compose_spec_validator().iter_errors(compose)]
    assert errors == []


def test_compose_specification_check_rejects_a_misspelled_key(compose: dict[str, Any]) -> None:
    """The check above can fail: the schema refuses unknown keys and wrong types (not only parses YAML)."""
    service = next(iter(compose["services"]))
    misspelled, wrong_type = copy.deepcopy(compose), copy.deepcopy(compose)
    misspelled["services"][service]["enviroment"] = {"A": "1"}
    wrong_type["services"][service]["depends_on"] = 5
    validator = compose_spec_validator()
    assert not validator.is_valid(misspelled)
    assert not validator.is_valid(wrong_type)


def test_docker_compose_accepts_the_file() -> None:
    """Runs only where the compose plugin exists; `config` validates without a Docker engine."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed here")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
