"""closed_within: the wait between a background loop's rounds."""

from __future__ import annotations

import asyncio

from recsys_io.periodic import closed_within


async def test_it_waits_its_interval_while_open_and_returns_at_once_when_closed() -> None:
    closing = asyncio.Event()
    assert await closed_within(closing, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, closing.set)
    assert await asyncio.wait_for(closed_within(closing, 60), 5) is True  # woken by the event, not the interval
    assert await asyncio.wait_for(closed_within(closing, 60), 5) is True
