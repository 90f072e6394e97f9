"""Preparing the deployment under test: healthchecks, ``/cleanup``, the catalog, the experiment config."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from grader.catalog import Catalog
from grader.traces import UNASSIGNED
from recsys_core.schemas import admin_authorization


class GradingAborted(RuntimeError):
    """The deployment cannot be graded (a service is down or refuses the setup); the message says why."""


@dataclass(frozen=True, slots=True)
class ExperimentGroup:
    name: str
    strategy: str | None
    share: float | None
    params: dict[str, object]


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    groups: tuple[ExperimentGroup, ...]

    @property
    def control(self) -> str:
        """The group named "C" when there is one, else the first group listed (the service's rule)."""
        names = [group.name for group in self.groups]
        return "C" if "C" in names else names[0]

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "control": self.control,
            "groups": [
                {"name": g.name, "strategy": g.strategy, "share": g.share, "params": g.params} for g in self.groups
            ],
        }


async def check_health(client: httpx.AsyncClient, services: dict[str, str]) -> None:
    """GET /healthcheck on every service; all failures are reported together."""
    problems = []
    for name, base_url in services.items():
        url = f"{base_url}/healthcheck"
        try:
            response = await client.get(url)
        except httpx.HTTPError as exc:
            problems.append(f"{name} at {url} is unreachable: {type(exc).__name__}: {exc}")
            continue
        if response.status_code != 200:
            problems.append(f"{name} at {url} answered {response.status_code}")
    if problems:
        raise GradingAborted("healthcheck failed: " + "; ".join(problems))


async def _expect_ok(client: httpx.AsyncClient, method: str, url: str, **kwargs: object) -> None:
    try:
        response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError as exc:
        raise GradingAborted(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise GradingAborted(f"{method} {url} answered {response.status_code}: {response.text[:300]}")


async def cleanup(client: httpx.AsyncClient, recs_url: str, admin_token: str | None) -> None:
    await _expect_ok(client, "GET", f"{recs_url}/cleanup", headers=admin_authorization(admin_token))


async def load_catalog(
    client: httpx.AsyncClient, recs_url: str, catalog: Catalog, batch_size: int, admin_token: str | None
) -> None:
    for body in catalog.batches(batch_size):
        await _expect_ok(client, "POST", f"{recs_url}/add_items", json=body, headers=admin_authorization(admin_token))


def parse_experiment(payload: object) -> Experiment | None:
    """The experiment described by a ``GET /experiments`` body, or None when it is not one we understand."""
    if not isinstance(payload, dict) or not isinstance(payload.get("groups"), list):
        return None
    groups = []
    for raw in payload["groups"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            return None
        share = raw.get("share")
        params = raw.get("params")
        groups.append(
            ExperimentGroup(
                name=raw["name"],
                strategy=raw.get("strategy") if isinstance(raw.get("strategy"), str) else None,
                share=float(share) if isinstance(share, int | float) else None,
                params=params if isinstance(params, dict) else {},
            )
        )
    if not groups:
        return None
    return Experiment(str(payload.get("name", "experiment")), tuple(groups))


async def fetch_experiment(client: httpx.AsyncClient, recs_url: str) -> Experiment | None:
    """The running experiment; None when the service has no ``/experiments`` (older versions 404) or none."""
    try:
        response = await client.get(f"{recs_url}/experiments")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        return parse_experiment(response.json())
    except ValueError:
        return None


ASSIGNMENT_PATH = "/experiments/assignment"


@dataclass(frozen=True, slots=True)
class GroupLookup:
    """What the service's assignment endpoint said about users whose /recs answers named no group."""

    asked: int = 0
    groups: dict[str, str] = field(default_factory=dict)  # user id -> group
    # The service has no assignment endpoint (404): those users stay unassigned.
    endpoint_missing: bool = False
    failed: int = 0  # other errors (transport, status, a body without a usable group)

    def describe(self) -> str | None:
        """One sentence for the reports, None when nobody had to be looked up."""
        if not self.asked:
            return None
        if self.endpoint_missing:
            return (
                f"{self.asked} users got no group header and cannot be placed: the service has no "
                f"{ASSIGNMENT_PATH}/{{user_id}} endpoint (404)"
            )
        text = f"{len(self.groups)} of {self.asked} users without a group header placed by {ASSIGNMENT_PATH}"
        return f"{text}; {self.failed} lookups failed" if self.failed else text


def _group_from(payload: object) -> str | None:
    group = payload.get("group") if isinstance(payload, dict) else None
    return group if isinstance(group, str) and group and group != UNASSIGNED else None


async def look_up_groups(
    client: httpx.AsyncClient, recs_url: str, user_ids: Sequence[str], concurrency: int
) -> GroupLookup:
    """Each user's group by ``GET /experiments/assignment/{user_id}``, at most ``concurrency`` at once. The
    grader never re-implements the service's hash: the service says where it put a user."""
    if not user_ids:
        return GroupLookup()
    limit = asyncio.Semaphore(max(1, concurrency))
    groups: dict[str, str] = {}
    failed = 0
    endpoint_missing = False

    async def look_up(user_id: str) -> None:
        nonlocal failed, endpoint_missing
        async with limit:
            if endpoint_missing:  # one 404 is enough: do not ask the rest
                return
            try:
                response = await client.get(f"{recs_url}{ASSIGNMENT_PATH}/{user_id}")
                group = _group_from(response.json()) if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                failed += 1
                return
            if response.status_code == 404:
                endpoint_missing = True
            elif group is None:
                failed += 1
            else:
                groups[user_id] = group

    await asyncio.gather(*(look_up(user_id) for user_id in user_ids))
    return GroupLookup(len(user_ids), groups, endpoint_missing, 0 if endpoint_missing else failed)
