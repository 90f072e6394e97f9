"""The load: simulated users asking ``/recs`` and reporting feedback to ``/interact``, concurrently.

One asyncio loop per process with one HTTP client (aiohttp over the network, httpx with an injected
transport); at most ``concurrency`` users are active at once (a pool of workers taking users in arrival
order). ``--processes P`` splits the users round-robin over P processes, each with its share of the
concurrency, and merges the traces. The runner only records what it saw; judging the answers is
``grader.evaluation``'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
import random
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
import orjson

from grader.config import PauseRange, RunConfig
from grader.simulation import SimulatedUser, react
from grader.traces import GROUP_HEADER, CallTrace, UserTrace

ProgressCallback = Callable[[int], None]


def _no_progress(_calls: int) -> None:
    return None


def make_client(
    concurrency: int, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """An httpx client: the set-up calls, and the load when a transport is injected (tests, in-process fakes)."""
    # Each active user has at most one request in flight, to one of the two services.
    pool_size = 2 * concurrency + 4
    return httpx.AsyncClient(
        transport=transport,
        # As the load's aiohttp client: a proxy in the environment must not stand between the grader and the
        # services (the set-up would fail while the services are up, and the message would blame them).
        trust_env=False,
        timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
        limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
    )


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    group: str | None
    body: bytes


class LoadClient(Protocol):
    """The two calls a simulated user makes; a transport error raises one of ``TRANSPORT_ERRORS``."""

    async def get(self, url: str) -> Reply: ...

    async def post_json(self, url: str, body: dict[str, Any]) -> int: ...


TRANSPORT_ERRORS = (httpx.HTTPError, aiohttp.ClientError, TimeoutError)
CLIENT_KEEPALIVE_S = 4.0


class HttpxLoadClient:
    """The load through httpx: used with an injected transport (an ASGI app or a mock, in tests)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def get(self, url: str) -> Reply:
        response = await self._client.get(url)
        return Reply(response.status_code, response.headers.get(GROUP_HEADER), response.content)

    async def post_json(self, url: str, body: dict[str, Any]) -> int:
        return (await self._client.post(url, json=body)).status_code


class AiohttpLoadClient:
    """The load over the network through aiohttp.

    httpx's pool re-checks every connection and queued request on each request and response: with 50 users
    that was ~60% of the grader's CPU, and 200-400 ms of the latency it measured over its first seconds (when
    all users start at once) was its own event loop. aiohttp's connector costs a fraction of that.
    """

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def get(self, url: str) -> Reply:
        async with self._session.get(url) as response:
            return Reply(response.status, response.headers.get(GROUP_HEADER), await response.read())

    async def post_json(self, url: str, body: dict[str, Any]) -> int:
        headers = {"content-type": "application/json"}
        async with self._session.post(url, data=orjson.dumps(body), headers=headers) as response:
            await response.read()
            return response.status


@contextlib.asynccontextmanager
async def load_client(
    concurrency: int, timeout_s: float, transport: httpx.AsyncBaseTransport | None
) -> AsyncIterator[LoadClient]:
    if transport is not None:
        async with make_client(concurrency, timeout_s, transport) as client:
            yield HttpxLoadClient(client)
        return
    # Each active user has at most one request in flight, so a service needs at most ``concurrency``.
    # The client drops an idle connection before any server would (uvicorn's default is 5 s): a request sent
    # on a connection the server closes at that instant fails, and the grader would count it against the service.
    connector = aiohttp.TCPConnector(
        limit=2 * concurrency + 4, limit_per_host=concurrency + 2, keepalive_timeout=CLIENT_KEEPALIVE_S
    )
    timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(5.0, timeout_s))
    # No cookie jar: 50 simulated users are 50 clients, never one session a load balancer could pin.
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield AiohttpLoadClient(session)


def parse_recs_body(body: bytes) -> tuple[tuple[str, ...], bool]:
    """(item ids, whether the body had the contract's shape)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return (), False
    items = payload.get("item_ids") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        return (), False
    return tuple(items), True


async def _pause(rng: random.Random, pause: PauseRange) -> None:
    if pause.high_s > 0:
        await asyncio.sleep(rng.uniform(pause.low_s, pause.high_s))


async def _recommend(client: LoadClient, recs_url: str, user_id: str, session: int, index: int) -> CallTrace:
    started_at = time.time()
    started = time.perf_counter()
    reply: Reply | None = None
    failure: str | None = None
    try:
        reply = await client.get(f"{recs_url}/recs/{user_id}")
    except TRANSPORT_ERRORS as exc:
        failure = _describe(exc)
    # Until the answer, or until the client gave up: a call that never finished counts the time it waited.
    latency_ms = (time.perf_counter() - started) * 1000.0
    if reply is None:
        return CallTrace(session, index, started_at, latency_ms, None, (), False, None, error=failure)
    group = reply.group or None
    if reply.status != 200:
        return CallTrace(session, index, started_at, latency_ms, reply.status, (), False, group)
    items, body_ok = parse_recs_body(reply.body)
    error = None if body_ok else "body is not {'item_ids': [str, ...]}"
    return CallTrace(session, index, started_at, latency_ms, 200, items, body_ok, group, error=error)


def _describe(exc: BaseException) -> str:
    """The cause of a failed call, as the report groups it: the exception's type and first words."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:120]}" if text else type(exc).__name__


INTERRUPTED = "interrupted (Ctrl-C): the load stopped early; the report covers the calls made until then"


class StopRequest:
    """Set from outside the load (the grader's Ctrl-C handler): users start no further call once it is set."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason


class FailureStreak:
    """/recs calls in a row that got no 200, across the users of one process; trips at ``limit`` (0: never)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.last_error: str | None = None

    def record(self, trace: CallTrace) -> None:
        if trace.status == 200:
            self.count = 0
            return
        self.count += 1
        self.last_error = trace.error or f"HTTP {trace.status}"

    @property
    def tripped(self) -> bool:
        return self.limit > 0 and self.count >= self.limit

    def reason(self) -> str:
        return f"the last {self.count} /recs calls got no 200 (the last: {self.last_error}); the load stopped early"


class LoadHalt:
    """Whether the load should start no further call, and why: a streak of failures, or a stop request."""

    def __init__(self, streak: FailureStreak, stop: StopRequest | None = None) -> None:
        self.streak = streak
        self.stop = stop

    def reason(self) -> str | None:
        if self.stop is not None and self.stop.reason is not None:
            return self.stop.reason
        return self.streak.reason() if self.streak.tripped else None


async def _interact(
    client: LoadClient, events_url: str, user_id: str, item_ids: Sequence[str], actions: Sequence[str]
) -> int | None:
    body = {"user_id": user_id, "item_ids": list(item_ids), "actions": list(actions), "timestamp": time.time()}
    try:
        return await client.post_json(f"{events_url}/interact", body)
    except TRANSPORT_ERRORS:
        return None


async def simulate_user(
    client: LoadClient,
    user: SimulatedUser,
    config: RunConfig,
    on_call: ProgressCallback,
    halt: LoadHalt | None = None,
) -> UserTrace:
    # Pauses are seeded per user so a rerun replays the same rhythm regardless of scheduling.
    rng = random.Random(f"grader-pauses:{config.seed}:{user.arrival}")
    calls: list[CallTrace] = []
    for session in range(config.sessions):
        if session > 0:
            await _pause(rng, config.pause_between_sessions)
        for call in range(config.calls_per_session):
            if call > 0:
                await _pause(rng, config.pause_in_session)
            halted = halt.reason() if halt is not None else None
            if halted is not None:
                return UserTrace(user.arrival, user.user_id, tuple(calls), aborted=halted)
            trace = await _recommend(client, config.recs_url, user.user_id, session, len(calls))
            if halt is not None:
                halt.streak.record(trace)
            reaction = react(user, trace.item_ids) if trace.ok else None
            if reaction:
                status = await _interact(client, config.events_url, user.user_id, reaction.item_ids, reaction.actions)
                trace = _with_interact(trace, status)
            calls.append(trace)
            on_call(1)
    return UserTrace(user.arrival, user.user_id, tuple(calls))


def _with_interact(trace: CallTrace, status: int | None) -> CallTrace:
    return CallTrace(
        trace.session,
        trace.index,
        trace.started_at,
        trace.latency_ms,
        trace.status,
        trace.item_ids,
        trace.body_ok,
        trace.group,
        interact_status=status,
        interact_sent=True,
        error=trace.error,
    )


async def run_users(
    users: Sequence[SimulatedUser],
    config: RunConfig,
    concurrency: int,
    on_call: ProgressCallback = _no_progress,
    transport: httpx.AsyncBaseTransport | None = None,
    stop: StopRequest | None = None,
) -> list[UserTrace]:
    """Every user's trace, in arrival order; users start in arrival order, ``concurrency`` at a time. Once
    ``stop`` is requested (or the failure streak trips) no further call starts; calls in flight finish."""
    traces: list[UserTrace] = []
    pending: Iterator[SimulatedUser] = iter(sorted(users, key=lambda u: u.arrival))
    halt = LoadHalt(FailureStreak(config.abort_after_failures), stop)

    async def worker(client: LoadClient) -> None:
        # A shared iterator is safe here: next() never awaits, so workers cannot interleave inside it.
        for user in pending:
            halted = halt.reason()
            if halted is not None:
                traces.append(UserTrace(user.arrival, user.user_id, (), aborted=halted))
                continue
            traces.append(await simulate_user(client, user, config, on_call, halt))

    services = (config.recs_url, config.events_url)
    async with load_client(concurrency, config.request_timeout_s, transport) as client:
        await open_connections(client, services, min(concurrency, len(users)))
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(users))):
                group.create_task(worker(client))
    return sorted(traces, key=lambda t: t.arrival)


async def open_connections(client: LoadClient, services: Sequence[str], per_service: int) -> None:
    """Open the connections before the clock starts, with concurrent ``GET /healthcheck`` calls: the first
    calls of the run then measure the service, not the set-up of 50 connections at once."""

    async def touch(url: str) -> None:
        with contextlib.suppress(*TRANSPORT_ERRORS):
            await client.get(f"{url}/healthcheck")

    await asyncio.gather(*(touch(url) for url in services for _ in range(per_service)))


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers that differ by at most one, larger first."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class _BatchedProgress:
    """Counts calls and sends them to the parent every ``every`` calls: each put is a round trip to the manager
    process, which would otherwise stall the event loop (and the latencies it measures) after every call."""

    def __init__(self, progress: queue.Queue[int], every: int = 50) -> None:
        self._progress = progress
        self._every = every
        self._pending = 0

    def __call__(self, calls: int) -> None:
        self._pending += calls
        if self._pending >= self._every:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._progress.put(self._pending)
            self._pending = 0


class LoadAborted(Exception):
    """The load's worker processes were ended without waiting for their calls in flight (a second Ctrl-C)."""


# A worker told to abort exits at once with this status, as a process ended by Ctrl-C does.
ABORTED_EXIT_STATUS = 128 + signal.SIGINT


async def _run_users_until_stopped(
    users: Sequence[SimulatedUser],
    config: RunConfig,
    concurrency: int,
    on_call: ProgressCallback,
    stopped: threading.Event,
    aborted: threading.Event,
) -> list[UserTrace]:
    """``run_users`` in a worker process: the parent's stop and abort (Event proxies, each wait a blocking round
    trip to the manager) are watched from a thread so this loop never waits on them. A stop lets the calls in
    flight finish; an abort ends the process at once."""
    stop = StopRequest()

    async def watch() -> None:
        while not await asyncio.to_thread(stopped.wait, 0.25):
            pass
        stop.request(INTERRUPTED)
        while not await asyncio.to_thread(aborted.wait, 0.25):
            pass
        os._exit(ABORTED_EXIT_STATUS)  # not an exception: the calls in flight must not be awaited

    watcher = asyncio.create_task(watch())
    try:
        return await run_users(users, config, concurrency, on_call, stop=stop)
    finally:
        watcher.cancel()


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group: the parent decides, and tells the workers through ``stopped``.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _process_main(
    users: Sequence[SimulatedUser],
    config: RunConfig,
    concurrency: int,
    progress: queue.Queue[int],
    stopped: threading.Event,
    aborted: threading.Event,
) -> list[UserTrace]:
    batched = _BatchedProgress(progress)
    try:
        return asyncio.run(_run_users_until_stopped(users, config, concurrency, batched, stopped, aborted))
    finally:
        batched.flush()


def run_in_processes(
    users: Sequence[SimulatedUser],
    config: RunConfig,
    on_call: ProgressCallback = _no_progress,
    stop: StopRequest | None = None,
    abort: threading.Event | None = None,
) -> list[UserTrace]:
    """The load spread over ``config.processes`` processes (users round-robin in arrival order).

    ``stop`` lets every process finish its calls in flight; ``abort`` (set from another thread) ends the worker
    processes without waiting for them and raises ``LoadAborted``."""
    processes = max(1, min(config.processes, config.concurrency, len(users)))
    ordered = sorted(users, key=lambda u: u.arrival)
    shares = split_evenly(config.concurrency, processes)
    # spawn, not fork: the parent may already run threads (the progress display, an event loop).
    context = multiprocessing.get_context("spawn")
    with (
        context.Manager() as manager,
        ProcessPoolExecutor(processes, mp_context=context, initializer=_ignore_interrupts) as pool,
    ):
        progress: queue.Queue[int] = manager.Queue()
        stopped = manager.Event()
        aborted = manager.Event()
        futures = [
            pool.submit(_process_main, ordered[p::processes], config, shares[p], progress, stopped, aborted)
            for p in range(processes)
        ]
        while not all(future.done() for future in futures):
            if abort is not None and abort.is_set():
                # A worker watches ``aborted`` only once stopped; the first one to exit breaks the pool, which
                # then ends the others, so leaving this block does not wait for their calls.
                stopped.set()
                aborted.set()
                raise LoadAborted("the load was aborted; its calls in flight were not waited for")
            if stop is not None and stop.reason is not None and not stopped.is_set():
                stopped.set()
            try:
                on_call(progress.get(timeout=0.1))
            except queue.Empty:
                continue
        while not progress.empty():
            on_call(progress.get())
        traces = [trace for future in futures for trace in future.result()]
    return sorted(traces, key=lambda t: t.arrival)
