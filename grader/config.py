"""The parameters of one grading run, fixed before it starts and written into ``summary.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recsys_core.schemas import DEFAULT_K

# The contract: every /recs answer holds this many items.
K = DEFAULT_K


@dataclass(frozen=True, slots=True)
class PauseRange:
    """A random pause, uniform in [low_s, high_s] seconds."""

    low_s: float
    high_s: float

    def __post_init__(self) -> None:
        if self.low_s < 0 or self.high_s < self.low_s:
            raise ValueError(f"invalid pause range [{self.low_s}, {self.high_s}]")


@dataclass(frozen=True, slots=True)
class RunConfig:
    recs_url: str
    events_url: str
    users: int = 3000
    concurrency: int = 50
    processes: int = 1
    seed: int = 42
    # Draw each MovieLens rater at most once (no visitor repeats an earlier one's answers).
    distinct_raters: bool = False
    calls_per_session: int = 2
    sessions: int = 2
    # Inside a session a user glances at a list and asks again; between sessions they come back later.
    pause_in_session: PauseRange = field(default_factory=lambda: PauseRange(0.1, 0.3))
    pause_between_sessions: PauseRange = field(default_factory=lambda: PauseRange(1.0, 2.0))
    add_items_batch: int = 1000
    request_timeout_s: float = 10.0
    # Stop the load after this many /recs calls in a row got no 200 (0: never): a hung or dead service would
    # otherwise take minutes of certain failure (users / concurrency x calls x timeout).
    abort_after_failures: int = 200
    admin_token: str | None = None
    out_dir: Path | None = None
    show_progress: bool = True

    def __post_init__(self) -> None:
        for name in ("users", "concurrency", "processes", "calls_per_session", "sessions", "add_items_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be positive")
        if self.abort_after_failures < 0:
            raise ValueError("abort_after_failures must be 0 (never) or positive")

    @property
    def calls_per_user(self) -> int:
        return self.sessions * self.calls_per_session

    def public_parameters(self) -> dict[str, object]:
        """What the report shows about the run (never the admin token)."""
        return {
            "recs_url": self.recs_url,
            "events_url": self.events_url,
            "users": self.users,
            "concurrency": self.concurrency,
            "processes": self.processes,
            "seed": self.seed,
            "distinct_raters": self.distinct_raters,
            "sessions": self.sessions,
            "calls_per_session": self.calls_per_session,
            "calls_per_user": self.calls_per_user,
            "k": K,
            "pause_in_session_s": [self.pause_in_session.low_s, self.pause_in_session.high_s],
            "pause_between_sessions_s": [self.pause_between_sessions.low_s, self.pause_between_sessions.high_s],
            "add_items_batch": self.add_items_batch,
            "request_timeout_s": self.request_timeout_s,
            "abort_after_failures": self.abort_after_failures,
            "admin_token_set": self.admin_token is not None,
        }
