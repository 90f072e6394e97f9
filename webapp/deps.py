"""What a request needs, reached through ``Depends`` (the objects live on ``app.state``, set by the lifespan)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.templating import Jinja2Templates

from recsys_core.schemas import ID_PATTERN, MAX_ID_LENGTH
from recsys_core.settings import Settings
from webapp.backends import Backends


async def get_backends(request: Request) -> Backends:
    return request.app.state.backends


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_templates(request: Request) -> Jinja2Templates:
    return request.app.state.templates


BackendsDep = Annotated[Backends, Depends(get_backends)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]
# The same rule as the backends: an id the webapp accepts is one they accept.
UserIdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
