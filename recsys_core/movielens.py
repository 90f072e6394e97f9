"""MovieLens ml-latest-small: where to find it, and a download from GroupLens as the fallback.

Used by the launcher (to load a catalog) and the grader (to build simulated users); never by a request path.
The data is never committed: it is read from ``MOVIELENS_DIR``, then ``../shared/data/ml-latest-small``, then
a cached download.
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from recsys_core.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

DATASET_NAME = "ml-latest-small"
NO_GENRES = "(no genres listed)"


@dataclass(frozen=True, slots=True)
class Movie:
    movie_id: int
    title: str
    genres: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ratings:
    """Column arrays of ratings.csv."""

    user_ids: np.ndarray  # int32
    movie_ids: np.ndarray  # int32
    ratings: np.ndarray  # float32
    timestamps: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.user_ids)


def candidate_dirs(settings: Settings) -> list[Path]:
    dirs = []
    if settings.movielens_dir:
        dirs.append(Path(settings.movielens_dir))
    dirs.append(PROJECT_ROOT.parent / "shared" / "data" / DATASET_NAME)
    dirs.append(Path(settings.data_cache_dir) / DATASET_NAME)
    return dirs


def _is_dataset(path: Path) -> bool:
    return (path / "movies.csv").is_file() and (path / "ratings.csv").is_file()


def find_local(settings: Settings) -> Path | None:
    """The first folder of ``candidate_dirs`` that holds the dataset, or None. A ``MOVIELENS_DIR`` that does not
    hold it is an error, not a reason to look elsewhere: whoever set it meant that folder."""
    if settings.movielens_dir and not _is_dataset(Path(settings.movielens_dir)):
        raise FileNotFoundError(
            f"MOVIELENS_DIR={settings.movielens_dir} does not hold {DATASET_NAME} (movies.csv and ratings.csv)"
        )
    return next((path for path in candidate_dirs(settings) if _is_dataset(path)), None)


def locate(
    settings: Settings,
    download: bool = True,
    should_stop: Callable[[], bool] | None = None,
    before_download: Callable[[list[str]], None] | None = None,
) -> Path:
    """The dataset folder: the first configured one that holds it, else a fresh download from GroupLens.

    ``before_download`` is told the folders searched in vain, e.g. to announce a download that may take a while.
    """
    found = find_local(settings)
    if found is not None:
        return found
    searched = [str(p) for p in candidate_dirs(settings)]
    if not download:
        raise FileNotFoundError(f"MovieLens {DATASET_NAME} not found in {searched}; set MOVIELENS_DIR")
    if before_download is not None:
        before_download(searched)
    try:
        return download_dataset(settings.movielens_url, Path(settings.data_cache_dir), should_stop)
    except RuntimeError as error:
        raise RuntimeError(f"MovieLens {DATASET_NAME} is not in {searched} (set MOVIELENS_DIR), and {error}") from None


def download_dataset(url: str, cache_dir: Path, should_stop: Callable[[], bool] | None = None) -> Path:
    """Downloads and unpacks the dataset into ``cache_dir``; ``should_stop`` is asked between chunks."""
    target = cache_dir / DATASET_NAME
    log.info("downloading %s from %s", DATASET_NAME, url)
    cache_dir.mkdir(parents=True, exist_ok=True)
    body = io.BytesIO()
    try:
        # A server that accepts the connection and then says nothing fails within the read timeout.
        with (
            httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, connect=10.0)) as client,
            client.stream("GET", url) as response,
        ):
            response.raise_for_status()
            for chunk in response.iter_bytes():
                if should_stop is not None and should_stop():
                    raise RuntimeError(f"the download from {url} was stopped")
                body.write(chunk)
    except httpx.HTTPError as error:
        raise RuntimeError(f"the download from {url} failed: {type(error).__name__}: {error}") from None
    try:
        archive = zipfile.ZipFile(body)
    except zipfile.BadZipFile:
        raise RuntimeError(f"the download from {url} is not a zip archive") from None
    with archive:
        for member in archive.namelist():
            name = Path(member)
            # The archive holds "ml-latest-small/<file>"; refuse anything that would escape the cache folder.
            if name.is_absolute() or ".." in name.parts or len(name.parts) != 2:
                continue
            target.mkdir(parents=True, exist_ok=True)
            (target / name.name).write_bytes(archive.read(member))
    if not _is_dataset(target):
        raise RuntimeError(f"the download from {url} did not contain movies.csv and ratings.csv")
    return target


def load_movies(path: Path) -> list[Movie]:
    movies = []
    with (path / "movies.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            genres = tuple(g for g in row["genres"].split("|") if g and g != NO_GENRES)
            movies.append(Movie(int(row["movieId"]), row["title"], genres))
    return movies


def load_ratings(path: Path) -> Ratings:
    data = np.loadtxt(path / "ratings.csv", delimiter=",", skiprows=1, dtype=np.float64)
    return Ratings(
        user_ids=data[:, 0].astype(np.int32),
        movie_ids=data[:, 1].astype(np.int32),
        ratings=data[:, 2].astype(np.float32),
        timestamps=data[:, 3].astype(np.int64),
    )
