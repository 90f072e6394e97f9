"""Finding and downloading MovieLens: a wrong setting or a bad download says what went wrong, never a traceback
from the zip reader or a silent fallback to another folder."""

from __future__ import annotations

import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict, Unpack

import pytest

from recsys_core import movielens
from recsys_core.settings import Settings


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""
    url = ""  # set by the serve fixture on its own subclass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[type[_Handler]]:
    """A local server answering every GET with ``handler.body``; its URL is ``handler.url``."""

    class Handler(_Handler):  # a class of its own: body and url are set on it, not on _Handler
        pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Handler.url = f"http://127.0.0.1:{server.server_address[1]}/ml-latest-small.zip"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Handler
    server.shutdown()
    server.server_close()


class _Overrides(TypedDict, total=False):
    movielens_dir: Path
    movielens_url: str


def _settings(tmp_path: Path, **overrides: Unpack[_Overrides]) -> Settings:
    return Settings(_env_file=None, data_cache_dir=tmp_path / "cache", **overrides)


def _zip_of_dataset() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-latest-small/movies.csv", "movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n")
        archive.writestr("ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    return buffer.getvalue()


def test_a_movielens_dir_without_the_dataset_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    settings = _settings(tmp_path, movielens_dir=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"MOVIELENS_DIR=.*nowhere"):
        movielens.locate(settings)


def test_a_download_that_is_not_a_zip_says_so_and_where_it_looked(
    tmp_path: Path, serve: type[_Handler], monkeypatch: pytest.MonkeyPatch
) -> None:
    serve.body = b"<html>please log in to this network</html>"  # a captive portal
    settings = _settings(tmp_path, movielens_url=serve.url)
    # Only the cache folder, which is empty: the shared copy next to the project would be found first.
    monkeypatch.setattr(movielens, "candidate_dirs", lambda _: [tmp_path / "cache" / movielens.DATASET_NAME])
    announced: list[list[str]] = []
    with pytest.raises(RuntimeError, match="not a zip archive") as raised:
        movielens.locate(settings, before_download=announced.append)
    assert "set MOVIELENS_DIR" in str(raised.value) and str(tmp_path / "cache") in str(raised.value)
    assert announced == [[str(tmp_path / "cache" / movielens.DATASET_NAME)]], "the download was announced first"


def test_a_local_copy_is_used_without_announcing_a_download(tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(_zip_of_dataset())) as archive:
        archive.extractall(tmp_path)
    settings = _settings(tmp_path, movielens_dir=tmp_path / movielens.DATASET_NAME)
    announced: list[list[str]] = []
    assert movielens.locate(settings, before_download=announced.append) == tmp_path / movielens.DATASET_NAME
    assert announced == []


def test_a_download_can_be_stopped_and_a_good_one_is_unpacked(tmp_path: Path, serve: type[_Handler]) -> None:
    serve.body = _zip_of_dataset()
    url = serve.url
    with pytest.raises(RuntimeError, match="was stopped"):
        movielens.download_dataset(url, tmp_path, should_stop=lambda: True)
    folder = movielens.download_dataset(url, tmp_path)
    assert [movie.title for movie in movielens.load_movies(folder)] == ["Toy Story (1995)"]
