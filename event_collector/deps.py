"""What a request needs, reached through ``Depends`` so tests can swap it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from event_collector.publisher import EventPublisher


async def get_publisher(request: Request) -> EventPublisher:
    return request.app.state.publisher


PublisherDep = Annotated[EventPublisher, Depends(get_publisher)]
