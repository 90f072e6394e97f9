"""The one HTML page: a server-rendered shell (Jinja2, autoescaped); the script fills it from /api."""

from __future__ import annotations

import re
from types import MappingProxyType

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from recsys_core.schemas import ID_PATTERN, MAX_ID_LENGTH
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


@router.get("/", response_class=HTMLResponse)
async def index(
    request: Request, templates: TemplatesDep, settings: SettingsDep, user_id: str | None = None
) -> HTMLResponse:
    """The debug page; ``?user_id=`` preselects a user (the page keeps it in the address bar)."""
    valid = user_id is not None and len(user_id) <= MAX_ID_LENGTH and re.fullmatch(ID_PATTERN, user_id) is not None
    context = {
        "user_id": user_id if valid else "",
        "invalid_user_id": user_id[:SHOWN_INVALID_CHARS] if user_id and not valid else None,
        # The HTML pattern attribute anchors by itself.
        "id_pattern": ID_PATTERN.removeprefix("^").removesuffix("$"),
        "max_id_length": MAX_ID_LENGTH,
        "mlflow_url": safe_http_url(settings.mlflow_public_url),
    }
    return templates.TemplateResponse(request, "index.html", context, headers=dict(SECURITY_HEADERS))
