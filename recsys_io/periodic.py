"""Periodic loops that end on an event, not on cancellation."""

from __future__ import annotations

import asyncio
import contextlib


async def closed_within(closing: asyncio.Event, seconds: float) -> bool:
    """Waits up to ``seconds``, less if ``closing`` is set meanwhile; True once it is set.

    Background loops wait on this between rounds (``while not await closed_within(closing, interval): ...``) and
    end when it says so, instead of sleeping until cancelled: a cancellation that lands while a Redis command is in
    flight can be swallowed inside redis-py, and a loop that ended only by cancellation then ran on, so a
    shutdown waiting for it hung until SIGKILL (the collector's generation watch did).
    """
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(closing.wait(), timeout=seconds)
    return closing.is_set()
