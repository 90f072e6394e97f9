"""One typed client for the three backends; every failure becomes a ``BackendError`` with a readable reason.

Status mapping (what the browser sees): unreachable → 503, no answer in time → 504, the backend's own 503 →
503, any other 4xx/5xx or an unexpected body → 502. The original status travels along as ``upstream_status``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from recsys_core.schemas import MAX_K, admin_authorization
from recsys_core.settings import Settings
from webapp.upstream import (
    CatalogEntry,
    Experiment,
    InteractAnswer,
    PipelineStatus,
    RecsBody,
    RecsStatus,
    UserDebug,
)

RECS = "recommendations"
COLLECTOR = "event collector"
PIPELINE = "pipeline"

# Short on purpose: a dead backend must turn into an error message on the page quickly, not a spinner.
BACKEND_TIMEOUT = httpx.Timeout(5.0, connect=1.0)
DETAIL_LIMIT = 300

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")
_CATALOG = TypeAdapter(list[CatalogEntry])


class BackendError(Exception):
    """A backend could not give a usable answer; ``status_code`` is what the webapp answers with."""

    def __init__(self, service: str, status_code: int, detail: str, upstream_status: int | None = None) -> None:
        super().__init__(detail)
        self.service = service
        self.status_code = status_code
        self.detail = detail
        self.upstream_status = upstream_status

    def as_json(self) -> dict[str, Any]:
        return {"detail": self.detail, "service": self.service, "upstream_status": self.upstream_status}


@dataclass(frozen=True, slots=True)
class RecsAnswer:
    item_ids: list[str]
    sources: list[str]
    group: str | None
    fallback: bool


def create_http_client(settings: Settings) -> httpx.AsyncClient:
    # The backends live on the internal network: no proxy from the environment, no redirects.
    return httpx.AsyncClient(
        timeout=BACKEND_TIMEOUT,
        headers=admin_authorization(settings.admin_token),
        trust_env=False,
        follow_redirects=False,
    )


def _upstream_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:DETAIL_LIMIT] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail if detail is not None else body)[:DETAIL_LIMIT]


class Backends:
    """The recommendations service, the event collector and the pipeline, as the webapp uses them."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self._client = client
        self._urls = {
            RECS: settings.recs_url.rstrip("/"),
            COLLECTOR: settings.collector_url.rstrip("/"),
            PIPELINE: settings.pipeline_url.rstrip("/"),
        }

    async def recs(self, user_id: str, k: int) -> RecsAnswer:
        response = await self._request(RECS, "GET", f"/recs/{quote(user_id, safe='')}", params={"k": k})
        body = self._parse(RECS, response, RecsBody)
        header = response.headers.get("x-recommendation-sources", "")
        return RecsAnswer(
            item_ids=body.item_ids,
            sources=header.split(",") if header else [],
            group=response.headers.get("x-experiment-group"),
            fallback="x-fallback" in response.headers,
        )

    async def catalog(self, item_ids: list[str]) -> dict[str, CatalogEntry]:
        """Titles and genres by item id; unknown ids are simply missing. Asks in chunks the backend accepts."""
        unique = list(dict.fromkeys(item_ids))
        entries: dict[str, CatalogEntry] = {}
        for start in range(0, len(unique), MAX_K):
            response = await self._request(RECS, "GET", "/debug/catalog", params={"ids": unique[start : start + MAX_K]})
            entries |= {entry.item_id: entry for entry in self._parse_with(RECS, response, _CATALOG.validate_json)}
        return entries

    async def user(self, user_id: str) -> UserDebug:
        response = await self._request(RECS, "GET", f"/debug/users/{quote(user_id, safe='')}")
        return self._parse(RECS, response, UserDebug)

    async def status(self) -> RecsStatus:
        return self._parse(RECS, await self._request(RECS, "GET", "/status"), RecsStatus)

    async def experiment(self) -> Experiment:
        return self._parse(RECS, await self._request(RECS, "GET", "/experiments"), Experiment)

    async def pipeline_status(self) -> PipelineStatus:
        return self._parse(PIPELINE, await self._request(PIPELINE, "GET", "/status"), PipelineStatus)

    async def interact(self, user_id: str, item_id: str, action: str) -> tuple[int, InteractAnswer]:
        body = {"user_id": user_id, "item_ids": [item_id], "actions": [action]}
        response = await self._request(COLLECTOR, "POST", "/interact", json=body)
        return response.status_code, self._parse(COLLECTOR, response, InteractAnswer)

    async def _request(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = f"{self._urls[service]}{path}"
        try:
            response = await self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as error:
            raise BackendError(service, 504, f"{service} did not answer in time ({url}): {error!r}") from error
        except httpx.TransportError as error:
            raise BackendError(service, 503, f"{service} is unreachable at {url}: {error!r}") from error
        except httpx.HTTPError as error:  # e.g. a body that does not decode: the backend's fault, not ours
            detail = f"{service} sent an answer that could not be read ({url}): {error!r}"
            raise BackendError(service, 502, detail) from error
        if response.status_code == 503:
            detail = f"{service} is unavailable: {_upstream_detail(response)}"
            raise BackendError(service, 503, detail, upstream_status=503)
        if response.status_code >= 400:
            detail = f"{service} answered {response.status_code} to {method} {path}: {_upstream_detail(response)}"
            raise BackendError(service, 502, detail, upstream_status=response.status_code)
        return response

    @staticmethod
    def _parse(service: str, response: httpx.Response, model: type[ModelT]) -> ModelT:
        return Backends._parse_with(service, response, model.model_validate_json)

    @staticmethod
    def _parse_with(service: str, response: httpx.Response, validate: Callable[[bytes], T]) -> T:
        try:
            return validate(response.content)
        except ValidationError as error:
            detail = f"{service} sent an unexpected answer to {response.request.url.path}: {error.errors()[:1]}"
            raise BackendError(service, 502, detail, upstream_status=response.status_code) from error
