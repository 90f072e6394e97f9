"""Child-process handling: start, mirror output, wait for health, notice deaths, stop in reverse order.

Generic on purpose (it knows commands, not services), so tests drive it with dummy ``python -c`` children.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

import httpx

LAUNCHER = "launcher"
_COLORS = ("36", "32", "33", "35", "34", "96", "92", "93", "95", "94")  # ANSI foreground colours
_PR_SET_PDEATHSIG = 1


def previous_log(log_path: Path) -> Path:
    """Where a service's log from the previous run is kept: ``<service>.previous.log``."""
    return log_path.with_suffix(".previous.log")


class StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived while the stack was still starting."""


class StartupError(Exception):
    """A child did not become healthy; carries what a human needs to see why."""

    def __init__(self, service: str, reason: str, last_lines: Sequence[str] = (), log_path: Path | None = None):
        self.service = service
        self.reason = reason
        self.last_lines = list(last_lines)
        self.log_path = log_path
        super().__init__(f"{service}: {reason}")

    def report(self) -> str:
        lines = [f"{self.service} failed to start: {self.reason}"]
        if self.last_lines:
            lines.append(f"last {len(self.last_lines)} lines of {self.service}'s output:")
            lines += [f"    {line}" for line in self.last_lines]
        if self.log_path is not None:
            lines.append(f"full log: {self.log_path}")
        return "\n".join(lines)


class Output:
    """One stream shared by the launcher and its children's output threads: whole lines, name-prefixed."""

    def __init__(self, stream: IO[str], echo_children: bool = True, color: bool | None = None) -> None:
        self._stream = stream
        self._echo_children = echo_children
        self._color = stream.isatty() if color is None else color
        self._lock = threading.Lock()
        self._width = len(LAUNCHER)
        self._color_of: dict[str, str] = {}
        self._closed = False

    def register(self, name: str) -> None:
        with self._lock:
            self._width = max(self._width, len(name))
            self._color_of.setdefault(name, _COLORS[len(self._color_of) % len(_COLORS)])

    def _prefix(self, name: str) -> str:
        label = name.ljust(self._width)
        if not self._color:
            return f"{label} |"
        code = "1" if name == LAUNCHER else self._color_of.get(name, "0")
        return f"\033[{code}m{label} |\033[0m"

    def say(self, text: str) -> None:
        """A launcher message (always shown)."""
        self._write(LAUNCHER, text)

    def child_line(self, name: str, text: str) -> None:
        if self._echo_children:
            self._write(name, text)

    def block(self, text: str) -> None:
        """Unprefixed text, e.g. the URL table."""
        with self._lock:
            self._emit(text + "\n")

    def _write(self, name: str, text: str) -> None:
        with self._lock:
            prefix = self._prefix(name)
            self._emit("".join(f"{prefix} {line}\n" for line in text.splitlines() or [""]))

    def _emit(self, text: str) -> None:
        """Writes to the console unless it has gone (``make run | tee`` with tee killed, a closed terminal): then
        the console is dropped, never the caller. A child's output thread that died of it would stop reading the
        child's pipe, and the child would hang once the pipe filled; the log files keep everything anyway."""
        if self._closed:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # BrokenPipeError; ValueError: the stream was closed
            self._closed = True


@dataclass
class Child:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    tail: deque[str]
    reader: threading.Thread | None = None
    stopped_by_us: bool = field(default=False)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_code(self) -> int | None:
        return self.popen.poll()

    def last_lines(self, count: int = 20) -> list[str]:
        return list(self.tail)[-count:]

    def drain_output(self, timeout_s: float = 2.0) -> None:
        """Waits for the output thread to copy what an exited child wrote last."""
        if self.reader is not None:
            self.reader.join(timeout=timeout_s)


def _die_with_parent() -> None:
    """Runs in the child before exec: if the launcher is SIGKILLed, the kernel still SIGTERMs its children."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Owns the children it starts; leaving the ``with`` block stops all of them, newest first."""

    def __init__(self, log_dir: Path, output: Output, grace_s: float = 10.0, tail_lines: int = 40) -> None:
        self._log_dir = log_dir
        self._output = output
        self._grace_s = grace_s
        self._tail_lines = tail_lines
        self._children: list[Child] = []
        self._force = threading.Event()
        self._force_announced = False

    def force_stop(self) -> None:
        """A second Ctrl-C: whatever is still stopping, or not yet asked to, is killed without its grace period.

        Only sets an event: it is called from the stop-signal watcher thread while the main thread may be printing."""
        self._force.set()

    @property
    def children(self) -> tuple[Child, ...]:
        return tuple(self._children)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> Child:
        child = self._spawn(name, argv, env, cwd, append_log=False)
        self._children.append(child)
        return child

    def restart(self, dead: Child) -> Child:
        """Start ``dead`` again, in its place in the stop order; its log goes on in the same file."""
        self._signal_group(dead, signal.SIGKILL)  # workers the dead leader left behind would hold its port
        dead.drain_output()
        child = self._spawn(dead.name, dead.argv, dead.env, dead.cwd, append_log=True)
        self._children[self._children.index(dead)] = child
        return child

    def _spawn(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None, append_log: bool
    ) -> Child:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._log_dir / f"{name}.log"
        if not append_log and log_path.exists():
            # The previous run's log is kept once: after a crash, the next `make run` must not erase the evidence.
            log_path.replace(previous_log(log_path))
        self._output.register(name)
        popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group: the terminal's Ctrl-C reaches only the launcher, which then stops the
            # children in order, and a signal to the group also reaches a child's own workers.
            start_new_session=True,
            # Only a prctl call runs between fork and exec, so preexec_fn's thread caveats do not apply.
            preexec_fn=_die_with_parent,
        )
        child = Child(name, list(argv), popen, log_path, deque(maxlen=self._tail_lines), env=dict(env), cwd=cwd)
        child.reader = threading.Thread(target=self._pump, args=(child, append_log), name=f"output-{name}", daemon=True)
        child.reader.start()
        self._output.say(f"started {name} (pid {popen.pid}), log: {log_path}")
        return child

    def _pump(self, child: Child, append: bool) -> None:
        """Copies the child's output to its log file, the tail buffer and (optionally) the console."""
        assert child.popen.stdout is not None
        with child.log_path.open("ab" if append else "wb") as log:
            for raw in iter(child.popen.stdout.readline, b""):
                log.write(raw)
                log.flush()
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                child.tail.append(text)
                self._output.child_line(child.name, text)

    def wait_ready(
        self,
        child: Child,
        is_ready: Callable[[], bool],
        what: str,
        timeout_s: float,
        stop: threading.Event,
        poll_s: float = 0.25,
    ) -> None:
        """Returns once ``is_ready()``; raises StartupError if the child dies or time runs out first.

        ``what`` names the check in messages, e.g. the healthcheck URL.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if stop.is_set():
                raise StopRequested
            exit_code = child.exit_code()
            if exit_code is not None:
                child.drain_output()
                raise StartupError(
                    child.name, f"exited with code {exit_code} before {what} answered",
                    child.last_lines(), child.log_path,
                )  # fmt: skip
            if is_ready():
                return
            if time.monotonic() > deadline:
                raise StartupError(
                    child.name, f"{what} did not answer within {timeout_s:.0f}s",
                    child.last_lines(), child.log_path,
                )  # fmt: skip
            stop.wait(poll_s)

    def exited(self) -> list[Child]:
        """The children that ended although nobody asked them to."""
        return [child for child in self._children if not child.stopped_by_us and child.exit_code() is not None]

    def stop_all(self) -> None:
        for child in reversed(self._children):
            self._stop(child)

    def _stop(self, child: Child) -> None:
        if child.stopped_by_us:
            return
        child.stopped_by_us = True
        was_running = child.exit_code() is None
        if was_running:
            self._output.say(f"stopping {child.name} (pid {child.pid})")
        # The whole group, even when the leader is gone: its workers may still be running.
        self._signal_group(child, signal.SIGTERM)
        if not self._wait_or_force(child):
            if not self._force.is_set():
                self._output.say(f"{child.name} did not stop within {self._grace_s:.0f}s: killing it")
            elif not self._force_announced:
                self._force_announced = True
                self._output.say("second stop request: killing the remaining services without waiting")
            self._signal_group(child, signal.SIGKILL)
            child.popen.wait()
        self._signal_group(child, signal.SIGKILL)  # leftovers of the group that ignored SIGTERM
        child.drain_output()
        if was_running:
            self._output.say(f"{child.name} stopped (exit code {child.popen.returncode})")

    def kill(self, child: Child) -> None:
        """SIGKILL to ``child``'s group without marking it stopped: ``supervise`` sees it as a crash."""
        self._signal_group(child, signal.SIGKILL)

    def _wait_or_force(self, child: Child, poll_s: float = 0.1) -> bool:
        """Waits up to the grace period for ``child`` to exit; gives up at once on ``force_stop``."""
        deadline = time.monotonic() + self._grace_s
        while not self._force.is_set():
            try:
                child.popen.wait(timeout=max(0.0, min(poll_s, deadline - time.monotonic())))
                return True
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    return False
        return child.exit_code() is not None

    @staticmethod
    def _signal_group(child: Child, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signum)


def health_problem(client: httpx.Client, url: str) -> str | None:
    """None when ``url`` answers 200; otherwise what went wrong, for a human."""
    try:
        status = client.get(url).status_code
    except httpx.TimeoutException:
        return f"{url} timed out"
    except httpx.HTTPError as error:
        return f"{url} failed: {type(error).__name__}"
    return None if status == 200 else f"{url} answered HTTP {status}"


def http_ok(client: httpx.Client, url: str) -> Callable[[], bool]:
    """A readiness check: ``url`` answers 200."""

    def check() -> bool:
        return health_problem(client, url) is None

    return check


def install_stop_handlers(stop: threading.Event, on_repeat: Callable[[], None] | None = None) -> Callable[[], None]:
    """SIGINT/SIGTERM set ``stop`` instead of raising, so shutdown always runs the same orderly path; a second
    one, while that path runs, calls ``on_repeat`` (the launcher kills what is left, as docker compose does).
    Call from the main thread.

    The Python handlers do nothing: setting an Event takes its lock, which the main thread may hold at that very
    moment (inside ``stop.wait()``), and a handler runs in the main thread, so it would wait for itself forever.
    The signal's number reaches a watcher thread through the wakeup fd instead, and that thread sets ``stop``.
    Nothing else may take the wakeup fd meanwhile (an event loop's ``add_signal_handler`` in the main thread
    would); ``asyncio.run`` alone leaves it alone.

    Returns a function that puts the previous handlers back.
    """
    if threading.current_thread() is not threading.main_thread():
        raise ValueError("stop handlers can only be installed from the main thread")
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # the C-level handler must never block
    previous_wakeup_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    stop_signals = (signal.SIGINT, signal.SIGTERM)

    def delivered_through_the_wakeup_fd(signum: int, frame: FrameType | None) -> None:
        pass

    def watch() -> None:
        while data := os.read(read_fd, 64):  # b"": restore() closed the write end
            for signum in data:
                if signum in stop_signals:
                    if stop.is_set() and on_repeat is not None:
                        on_repeat()
                    stop.set()

    previous = {signum: signal.signal(signum, delivered_through_the_wakeup_fd) for signum in stop_signals}
    watcher = threading.Thread(target=watch, name="stop-signals", daemon=True)
    watcher.start()

    def restore() -> None:
        try:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_wakeup_fd)
        finally:
            os.close(write_fd)  # the watcher reads EOF and ends
            watcher.join()
            os.close(read_fd)

    return restore


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How a service that dies on its own is started again (docker compose's ``restart: unless-stopped``, with
    a limit): after 1 s, then twice as long after each crash of the last ``window_s``, up to ``max_delay_s``.
    A crash after ``max_restarts`` restarts within ``window_s`` is a crash loop: the launcher gives up."""

    max_restarts: int = 5
    window_s: float = 120.0
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def delay_s(self, recent_crashes: int) -> float:
        return min(self.first_delay_s * 2**recent_crashes, self.max_delay_s)


NO_RESTARTS = RestartPolicy(max_restarts=0)


@dataclass(frozen=True, slots=True)
class LivenessPolicy:
    """What happens to a service that runs but whose healthcheck stopped answering (a stuck event loop): checked
    every ``every_s``; reported after ``report_after`` failures in a row; after ``kill_after`` (0: never) it is
    killed, and the restart policy treats it as a crash. Docker compose only marks such a container unhealthy;
    this is a Kubernetes liveness probe. The healthchecks are liveness endpoints (they touch no dependency), so a
    Redis outage does not trigger it."""

    every_s: float = 10.0
    report_after: int = 3
    kill_after: int = 12


def supervise(
    supervisor: Supervisor,
    output: Output,
    stop: threading.Event,
    poll_s: float = 0.5,
    policy: RestartPolicy = NO_RESTARTS,
    restartable: Callable[[Child], bool] = lambda child: True,
    health: Callable[[Child], str | None] | None = None,
    liveness: LivenessPolicy = LivenessPolicy(),
) -> int:
    """Blocks until a stop is requested (returns 0) or a child dies on its own and is not started again
    (reports it, returns 1). A ``restartable`` child is started again as ``policy`` says. With ``health`` (None
    when the child's healthcheck answers, else what is wrong), the launcher says when a restarted child answers
    again, and watches the running restartable children as ``liveness`` says.

    The caller stops the remaining children (leaving the Supervisor's ``with`` block).
    """
    crashes: dict[str, deque[float]] = {}
    due: dict[str, tuple[Child, float]] = {}  # dead children waiting for their restart time
    recovering: dict[str, tuple[Child, float]] = {}  # restarted children not yet healthy, since when
    failed_checks: dict[str, int] = {}  # running children's failed healthchecks in a row
    next_liveness_check = time.monotonic() + liveness.every_s
    while not stop.wait(poll_s):
        now = time.monotonic()
        for name, (child, since) in list(recovering.items()):
            if child.exit_code() is not None:
                del recovering[name]  # it died again: counted below
            elif health is not None and health(child) is None:
                del recovering[name]
                output.say(f"{name} is healthy again, {now - since:.1f} s after its restart")
        if health is not None and now >= next_liveness_check:
            next_liveness_check = now + liveness.every_s
            watched = [
                child
                for child in supervisor.children
                if restartable(child) and child.name not in recovering and child.exit_code() is None
            ]
            for child in watched:
                _check_liveness(supervisor, output, child, health(child), failed_checks, liveness)
        for dead in supervisor.exited():
            if dead.name in due:
                continue
            failed_checks.pop(dead.name, None)
            dead.drain_output()  # so its last words are in the tail
            tail = [f"    {line}" for line in dead.last_lines()]
            last_words = "\n".join([f"last lines of {dead.name}:", *tail, f"full log: {dead.log_path}"])
            history = crashes.setdefault(dead.name, deque())
            while history and history[0] < now - policy.window_s:
                history.popleft()
            exit_code = dead.exit_code()
            if not restartable(dead) or policy.max_restarts == 0:
                output.say(f"{dead.name} exited unexpectedly (exit code {exit_code}); stopping the rest.\n{last_words}")
                return 1
            if len(history) >= policy.max_restarts:
                output.say(
                    f"{dead.name} exited unexpectedly (exit code {exit_code}), {len(history) + 1} times within "
                    f"{policy.window_s:.0f} s: giving up on it and stopping the rest.\n{last_words}"
                )
                return 1
            delay = policy.delay_s(len(history))
            history.append(now)
            due[dead.name] = (dead, now + delay)
            output.say(
                f"{dead.name} exited unexpectedly (exit code {exit_code}); "
                f"starting it again in {delay:g} s.\n{last_words}"
            )
        for name, (dead, at) in list(due.items()):
            if now >= at:
                del due[name]
                recovering[name] = (supervisor.restart(dead), now)
    output.say("stop requested: stopping all services")
    return 0


def _check_liveness(
    supervisor: Supervisor,
    output: Output,
    child: Child,
    problem: str | None,
    failed_checks: dict[str, int],
    liveness: LivenessPolicy,
) -> None:
    """One liveness check's outcome: counted, reported when it turns bad and good again, fatal when long."""
    failures = failed_checks.get(child.name, 0)
    if problem is None:
        if failures >= liveness.report_after:
            output.say(f"{child.name} answers its healthcheck again")
        failed_checks[child.name] = 0
        return
    failures += 1
    failed_checks[child.name] = failures
    if failures == liveness.report_after:
        output.say(
            f"{child.name} is running but its healthcheck failed {failures} times in a row ({problem}); "
            f"see {child.log_path}"
        )
    if liveness.kill_after and failures >= liveness.kill_after:
        output.say(
            f"{child.name} has not answered its healthcheck for {failures} checks in a row ({problem}): "
            "killing it so that it is started again"
        )
        supervisor.kill(child)
        failed_checks[child.name] = 0
