"""What a request needs, reached through ``Depends`` so tests can swap it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from event_collector.generation import GenerationSource
from event_collector.publisher import EventPublisher


async def get_publisher(request: Request) -> EventPublisher:
    return request.app.state.publisher


async def get_generations(request: Request) -> GenerationSource:
    return request.app.state.generations


PublisherDep = Annotated[EventPublisher, Depends(get_publisher)]
GenerationsDep = Annotated[GenerationSource, Depends(get_generations)]
