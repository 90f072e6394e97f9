"""Sending many /interact calls concurrently and checking what the run's Redis keys hold afterwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from recsys_core.algorithms.bandit import ItemStats
from recsys_io.redis_client import as_str
from tests.support.replies import blob, stream
from tests.support.stack import ServiceStack


@dataclass
class Sent:
    """What the collector answered: every 200 with its message id, event count and likes."""

    statuses: dict[int, int] = field(default_factory=dict)
    message_ids: set[str] = field(default_factory=set)
    events: int = 0
    likes: int = 0
    slowest_s: float = 0.0

    @property
    def accepted(self) -> int:
        return len(self.message_ids)

    def record(self, response: httpx.Response, body: dict[str, object], seconds: float) -> None:
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        self.slowest_s = max(self.slowest_s, seconds)
        if response.status_code == 200:
            message_id = str(response.json()["message_id"])
            assert message_id not in self.message_ids
            self.message_ids.add(message_id)
            actions = body["actions"]
            assert isinstance(actions, list)
            self.events += len(actions)
            self.likes += actions.count("like")


def event_body(n: int, item_ids: list[str]) -> dict[str, object]:
    """Call ``n``: 1-3 interactions of one of 53 users, a mix of likes and dislikes."""
    size = 1 + n % 3
    items = [item_ids[(n * 7 + i) % len(item_ids)] for i in range(size)]
    actions = ["like" if (n + i) % 3 else "dislike" for i in range(size)]
    return {"user_id": f"user-{n % 53}", "item_ids": items, "actions": actions}


async def send_events(
    collector_url: str,
    item_ids: list[str],
    calls: int,
    sent: Sent,
    concurrency: int = 20,
    first: int = 0,
    on_progress: Callable[[Sent], Awaitable[None]] | None = None,
) -> Sent:
    """``calls`` /interact calls, ``concurrency`` at a time; ``on_progress`` runs after each answer."""
    numbers = iter(range(first, first + calls))

    async def worker(client: httpx.AsyncClient) -> None:
        for n in numbers:
            body = event_body(n, item_ids)
            started = time.monotonic()
            response = await client.post(f"{collector_url}/interact", json=body)
            sent.record(response, body, time.monotonic() - started)
            if on_progress is not None:
                await on_progress(sent)

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return sent


@dataclass(frozen=True)
class Stored:
    stream_length: int
    message_ids: set[str]
    messages_counter: int
    events_counter: int
    duplicates_counter: int
    likes: int
    dislikes: int

    @classmethod
    def read(cls, stack: ServiceStack) -> Stored:
        entries = stream(stack.redis.xrange(stack.run_key("events")))
        counters = {as_str(k): int(v) for k, v in stack.redis.hgetall(stack.run_key("counters")).items()}
        return cls(
            stream_length=int(stack.redis.xlen(stack.run_key("events"))),
            message_ids={fields[b"msg"].decode() for _, fields in entries},
            messages_counter=counters.get("messages", 0),
            events_counter=counters.get("events", 0),
            duplicates_counter=counters.get("duplicates", 0),
            likes=sum(int(v) for v in stack.redis.hvals(stack.run_key("stats:likes"))),
            dislikes=sum(int(v) for v in stack.redis.hvals(stack.run_key("stats:dislikes"))),
        )

    def describe(self) -> str:
        return (
            f"stream {self.stream_length} events of {len(self.message_ids)} messages, counters "
            f"messages={self.messages_counter} events={self.events_counter} duplicates={self.duplicates_counter}, "
            f"likes {self.likes}, dislikes {self.dislikes}"
        )


def wait_until_stored(stack: ServiceStack, events: int, timeout_s: float) -> tuple[Stored, float]:
    """Poll until the stream holds ``events`` entries; then wait a little so a late duplicate would show."""
    started = time.monotonic()
    while int(stack.redis.xlen(stack.run_key("events"))) < events:
        if time.monotonic() - started > timeout_s:
            break
        time.sleep(0.1)
    seconds = time.monotonic() - started
    time.sleep(1.0)
    return Stored.read(stack), seconds


def assert_stored_exactly_once(stack: ServiceStack, sent: Sent, stored: Stored) -> None:
    assert stored.message_ids == sent.message_ids, (
        f"{len(sent.message_ids - stored.message_ids)} accepted messages missing, "
        f"{len(stored.message_ids - sent.message_ids)} stored that were never accepted"
    )
    assert stored.stream_length == sent.events, "some accepted event was lost or stored twice"
    assert stored.messages_counter == sent.accepted
    assert stored.events_counter == sent.events
    assert stored.likes == sent.likes
    assert stored.dislikes == sent.events - sent.likes


def bandit_likes(stack: ServiceStack) -> int:
    """The likes in the bandit snapshot the pipeline published from its in-memory state."""
    snapshot = stack.redis.get(stack.run_key("bandit:snapshot"))
    return 0 if snapshot is None else int(ItemStats.from_bytes(blob(snapshot)).likes.sum())
