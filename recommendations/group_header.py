"""Every ``/recs/{user_id}`` response names the user's experiment group, errors included.

The route sets ``X-Experiment-Group`` on its answers; this middleware adds it to whatever else the service sends
for that path (a 422 for a bad ``k``, the shared 503 for a Redis error, a 500 for a bug): an A/B analysis that
groups users by the header would otherwise lose the users whose calls failed, and bias the effect towards the
failing arm.
"""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys_core.experiments import Experiment
from recsys_core.schemas import UserId

log = logging.getLogger(__name__)

GROUP_HEADER = b"x-experiment-group"
RECS_PREFIX = "/recs/"
_USER_ID = TypeAdapter(UserId)


def _valid_user_id(raw: str) -> str | None:
    """The user id /recs would accept, else None (an id the route refuses has no group to name)."""
    try:
        return _USER_ID.validate_python(raw)
    except ValidationError:
        return None


class ExperimentGroupHeader:
    """Pure ASGI middleware; the hash is only computed for a response that lacks the header (not on the hot path)."""

    def __init__(self, app: ASGIApp, experiment: Experiment) -> None:
        self.app = app
        self.experiment = experiment

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(RECS_PREFIX):
            await self.app(scope, receive, send)
            return
        raw_user_id: str = scope["path"][len(RECS_PREFIX) :]
        response_started = False

        async def send_with_group(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                headers = list(message.get("headers", []))
                user_id = (
                    None if any(name.lower() == GROUP_HEADER for name, _ in headers) else _valid_user_id(raw_user_id)
                )
                if user_id is not None:
                    group = self.experiment.assign(user_id).name
                    message = {**message, "headers": [*headers, (GROUP_HEADER, group.encode("latin-1"))]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_group)
        except Exception:
            if response_started:
                raise
            # Answered here rather than by Starlette's outermost handler, which would send its 500 without the group.
            log.exception("/recs failed for %r", raw_user_id)
            error = JSONResponse({"detail": "internal error"}, status_code=500)
            await error(scope, receive, send_with_group)
