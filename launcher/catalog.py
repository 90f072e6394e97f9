"""Load the MovieLens catalog into a recommendations service that has none.

Items get opaque ids: a UUID derived from the movieId, so reloading gives the same ids and nothing outside
this module depends on MovieLens numbering. ``python -m launcher.catalog`` runs only this step (compose uses
it as a one-shot service).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from launcher.config import service_url
from launcher.services import RECOMMENDATIONS
from recsys_core import movielens
from recsys_core.movielens import Movie
from recsys_core.schemas import MAX_GENRES_PER_ITEM, MAX_TITLE_LENGTH, admin_authorization
from recsys_core.settings import Settings

# Fixed forever: changing it would give every movie a new id.
MOVIELENS_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://grouplens.org/datasets/movielens/")
DEFAULT_BATCH_SIZE = 1000


def movie_item_id(movie_id: int) -> str:
    """The catalog item id of a MovieLens movieId: deterministic, opaque, URL- and Redis-key-safe."""
    return str(uuid.uuid5(MOVIELENS_NAMESPACE, f"movie:{int(movie_id)}"))


def catalog_batches(movies: Sequence[Movie], batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[dict[str, Any]]:
    """The /add_items request bodies for ``movies``, ``batch_size`` items each, in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, len(movies), batch_size):
        chunk = movies[start : start + batch_size]
        yield {
            "item_ids": [movie_item_id(movie.movie_id) for movie in chunk],
            "genres": [list(movie.genres[:MAX_GENRES_PER_ITEM]) for movie in chunk],
            "titles": [movie.title[:MAX_TITLE_LENGTH] for movie in chunk],
        }


def _is_transient(error: BaseException) -> bool:
    """Network hiccups and 5xx are retried; a 4xx means the request itself is wrong."""
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code >= 500
    return isinstance(error, httpx.TransportError)


_retry_transient = retry(
    retry=retry_if_exception(_is_transient),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.5, max=4),
    reraise=True,
)


@_retry_transient
def fetch_catalog_size(client: httpx.Client, recs_url: str) -> int:
    response = client.get(f"{recs_url}/status")
    response.raise_for_status()
    return int(response.json()["catalog_size"])


@_retry_transient
def post_batch(client: httpx.Client, recs_url: str, body: dict[str, Any], admin_token: str | None) -> None:
    response = client.post(f"{recs_url}/add_items", json=body, headers=admin_authorization(admin_token))
    if response.status_code in (401, 403):
        raise PermissionError(
            f"{recs_url}/add_items refused the catalog ({response.status_code}): "
            "ADMIN_TOKEN must be the same for the launcher and the recommendations service"
        )
    response.raise_for_status()


@dataclass(frozen=True, slots=True)
class CatalogResult:
    loaded: int  # items sent (0 when the catalog was already there)
    catalog_size: int  # as reported by /status afterwards


def ensure_catalog(
    client: httpx.Client,
    recs_url: str,
    load_movies: Callable[[], Sequence[Movie]],
    admin_token: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    should_stop: Callable[[], bool] = lambda: False,
) -> CatalogResult:
    """Send the catalog when /status reports an empty one; an existing catalog is left alone."""
    size = fetch_catalog_size(client, recs_url)
    if size > 0:
        return CatalogResult(loaded=0, catalog_size=size)
    movies = load_movies()
    sent = 0
    for body in catalog_batches(movies, batch_size):
        if should_stop():
            break
        post_batch(client, recs_url, body, admin_token)
        sent += len(body["item_ids"])
    return CatalogResult(loaded=sent, catalog_size=fetch_catalog_size(client, recs_url))


def movielens_movies(
    settings: Settings,
    should_stop: Callable[[], bool] | None = None,
    before_download: Callable[[list[str]], None] | None = None,
) -> Callable[[], list[Movie]]:
    """Reads movies.csv only when needed (locate may download the dataset; see ``movielens.locate`` for the
    two callbacks)."""

    def movies() -> list[Movie]:
        return movielens.load_movies(
            movielens.locate(settings, should_stop=should_stop, before_download=before_download)
        )

    return movies


def wait_until_up(client: httpx.Client, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if client.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f}s")
        time.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m launcher.catalog",
        description="Load the MovieLens catalog into the recommendations service if its catalog is empty.",
    )
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the service (default 120)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    args = parser.parse_args(argv)
    settings = Settings()
    recs_url = service_url(RECOMMENDATIONS, settings)
    if not settings.load_catalog_on_start:
        print(f"LOAD_CATALOG_ON_START is false: not loading MovieLens into {recs_url}")
        return 0
    # trust_env=False: the service is a peer on this machine or network, never behind the environment's proxy.
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        wait_until_up(client, recs_url + RECOMMENDATIONS.health_path, args.wait)
        result = ensure_catalog(client, recs_url, movielens_movies(settings), settings.admin_token, args.batch_size)
    if result.loaded:
        print(f"loaded {result.loaded} MovieLens items into {recs_url}; catalog_size={result.catalog_size}")
    else:
        print(f"{recs_url} already has a catalog (catalog_size={result.catalog_size}); nothing loaded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
