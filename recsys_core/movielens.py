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


def locate(settings: Settings, download: bool = True) -> Path:
    """The dataset folder: the first configured one that holds it, else a fresh download from GroupLens."""
    for path in candidate_dirs(settings):
        if _is_dataset(path):
            return path
    if not download:
        raise FileNotFoundError(
            f"MovieLens {DATASET_NAME} not found in {[str(p) for p in candidate_dirs(settings)]}; set MOVIELENS_DIR"
        )
    return download_dataset(settings.movielens_url, Path(settings.data_cache_dir))


def download_dataset(url: str, cache_dir: Path) -> Path:
    target = cache_dir / DATASET_NAME
    log.info("downloading %s from %s", DATASET_NAME, url)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with httpx.Client(follow_redirects=True, timeout=120) as client:
        response = client.get(url)
        response.raise_for_status()
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
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
