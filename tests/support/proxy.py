"""A TCP proxy that simulates a dependency outage without touching the shared servers.

A service is pointed at the proxy instead of the real Redis or RabbitMQ. ``pause()`` closes every proxied
connection and stops listening, so reconnects are refused exactly as if the server were down; ``resume()``
listens again on the same port. ``stall()`` keeps every connection open but drops what flows through it, as a
server that hangs; ``resume()`` ends that too (the bytes dropped meanwhile stay lost). The proxy runs its own
asyncio loop in a daemon thread, so it works from plain synchronous tests and from tests that run their own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self.port = 0
        self.connections_accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._stalled = False

    @classmethod
    def for_url(cls, url: str) -> TcpProxy:
        """A proxy in front of the server a ``redis://`` or ``amqp://`` URL names."""
        parts = urlsplit(url)
        assert parts.hostname and parts.port, f"{url} must name a host and a port"
        return cls(parts.hostname, parts.port)

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's (credentials, path and query kept)."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@" if credentials else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}{self.listen_host}:{self.port}"))

    # --- control (called from the test's thread) ---
    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    @property
    def listening(self) -> bool:
        return self._server is not None

    def pause(self) -> int:
        """Refuse new connections and cut the open ones; the number of connections cut."""
        return self._call(self._pause())

    def stall(self) -> None:
        """Keep accepting and keep connections open, but forward nothing: every request waits for its timeout."""
        self._stalled = True

    def resume(self) -> None:
        self._stalled = False
        self._call(self._listen())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._pause())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # --- inside the proxy's loop ---
    async def _listen(self) -> None:
        if self._server is not None:
            return
        # The first start picks a free port; a resume listens on the same one again (SO_REUSEADDR is set).
        self._server = await asyncio.start_server(self._handle, self.listen_host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _pause(self) -> int:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        cut = len(self._writers) // 2
        for writer in list(self._writers):
            writer.transport.abort()  # an RST for the client and the server side alike
        self._writers.clear()
        for task in list(self._pumps):
            task.cancel()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        return cut

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port), 5
            )
        except (OSError, TimeoutError):
            client_writer.transport.abort()
            return
        if self._server is None:  # paused while connecting
            client_writer.transport.abort()
            upstream_writer.transport.abort()
            return
        self.connections_accepted += 1
        self._writers.update((client_writer, upstream_writer))
        pumps = [
            asyncio.create_task(self._pump(client_reader, upstream_writer)),
            asyncio.create_task(self._pump(upstream_reader, client_writer)),
        ]
        self._pumps.update(pumps)
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._pumps.difference_update(pumps)
            for writer in (client_writer, upstream_writer):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                if self._stalled:
                    continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side finished: close the other so both peers see the end of the connection.
            writer.transport.abort()
