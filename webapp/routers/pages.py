"""The one HTML page: a server-rendered shell (Jinja2, autoescaped); the script fills it from /api."""

from __future__ import annotations

import re
from types import MappingProxyType

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from recsys_core.schemas import ID_CHARACTERS, ID_PATTERN, MAX_ID_LENGTH
from webapp.deps import SettingsDep, TemplatesDep
from webapp.views import safe_http_url

router = APIRouter(tags=["pages"])

# Defence in depth behind the escaping: even injected markup could run no script and load nothing foreign.
SECURITY_HEADERS = MappingProxyType(
    {
        "Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
)
SHOWN_INVALID_CHARS = 200
ID_RULE = f"up to {MAX_ID_LENGTH} {ID_CHARACTERS}, not only dots"


def id_problem(user_id: str) -> str | None:
    """What is wrong with ``user_id`` as the contracts see it, in words; None when it is a valid id."""
    if not user_id:
        return "it is empty"
    if len(user_id) > MAX_ID_LENGTH:
        return f"it has {len(user_id)} characters, at most {MAX_ID_LENGTH} are allowed"
    if re.fullmatch(ID_PATTERN, user_id) is not None:
        return None
    if set(user_id) == {"."}:
        return "it is only dots"
    return f"use {ID_CHARACTERS} only"


@router.get("/", response_class=HTMLResponse)
async def index(
    request: Request, templates: TemplatesDep, settings: SettingsDep, user_id: str | None = None
) -> HTMLResponse:
    """The debug page; ``?user_id=`` preselects a user (the page keeps it in the address bar)."""
    problem = None if user_id is None else id_problem(user_id)
    context = {
        "user_id": user_id if user_id is not None and problem is None else "",
        "invalid_user_id": user_id[:SHOWN_INVALID_CHARS] if user_id and problem else None,
        "invalid_reason": problem,
        "id_rule": ID_RULE,
        # The HTML pattern attribute anchors by itself.
        "id_pattern": ID_PATTERN.removeprefix("^").removesuffix("$"),
        "max_id_length": MAX_ID_LENGTH,
        "mlflow_url": safe_http_url(settings.mlflow_public_url),
    }
    return templates.TemplateResponse(request, "index.html", context, headers=dict(SECURITY_HEADERS))
