"""What the load run observed, raw: one record per ``/recs`` call. Everything else is computed from these."""

from __future__ import annotations

from dataclasses import dataclass

# The response header that names the A/B group a user was served by.
GROUP_HEADER = "X-Experiment-Group"
# The group label of users the grader could not place in any group (the service refuses it as a group name).
UNASSIGNED = "(none)"


@dataclass(frozen=True, slots=True)
class CallTrace:
    session: int
    # Position of the call among the user's calls, 0-based across sessions.
    index: int
    # Wall-clock start (epoch seconds): comparable across worker processes.
    started_at: float
    # Until the answer, or until the client gave up (a timeout, a refused connection): a hung service must not
    # look fast because its calls never finished. None only in traces built without a clock (tests).
    latency_ms: float | None
    status: int | None
    item_ids: tuple[str, ...]
    # False for a 200 whose body is not {"item_ids": [str, ...]}.
    body_ok: bool
    group: str | None
    # None when there was nothing to report, so no /interact call was made.
    interact_status: int | None = None
    interact_sent: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.body_ok

    @property
    def interact_failed(self) -> bool:
        return self.interact_sent and self.interact_status != 200


@dataclass(frozen=True, slots=True)
class UserTrace:
    arrival: int
    user_id: str
    calls: tuple[CallTrace, ...]
    # Set when the load stopped early (see ``RunConfig.abort_after_failures``): why.
    aborted: str | None = None
    # For a user none of whose answers named a group (every call failed without the header): the group the
    # service's assignment endpoint gave after the load, so the failures count against that arm.
    looked_up_group: str | None = None

    @property
    def header_group(self) -> str | None:
        """The group of the user's first answer that named one (a user should never switch groups)."""
        return next((call.group for call in self.calls if call.group), None)

    @property
    def group(self) -> str | None:
        """The group the user is counted in: from the headers, else looked up after the load."""
        return self.header_group or self.looked_up_group

    @property
    def switched_group(self) -> bool:
        return len({call.group for call in self.calls if call.group}) > 1
