"""Storing events durably (exactly once per message) and rebuilding the in-memory run from Redis."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from pipeline.state import RunState
from recsys_core import lua
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import EventMessage
from recsys_io.redis_client import as_int, as_str

HISTORY_CAP = 200
STREAM_READ_CHUNK = 10_000

STORED, DUPLICATE, STALE = 1, 0, lua.STALE_GENERATION


@dataclass(frozen=True, slots=True)
class GroupedEvent:
    event: EventMessage
    group: str


class EventStore:
    def __init__(self, redis: Redis, keys: GlobalKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._store = redis.register_script(lua.STORE_EVENT)

    async def store(self, events: list[GroupedEvent]) -> list[int]:
        """One round trip for the batch; each message is stored atomically, or recognised as a redelivery."""
        if not events:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for grouped in events:
                event = grouped.event
                run = self._keys.for_generation(event.generation)
                args: list[str | int | float] = [
                    event.generation,
                    event.message_id,
                    event.user_id,
                    event.timestamp,
                    grouped.group,
                    HISTORY_CAP,
                ]
                for item_id, action in zip(event.item_ids, event.actions, strict=True):
                    args += [item_id, action]
                await self._store(
                    keys=[
                        self._keys.generation,
                        run.seen_messages,
                        run.events,
                        run.item_likes,
                        run.item_dislikes,
                        run.user_feedback(event.user_id),
                        run.user_history(event.user_id),
                        run.counters,
                    ],
                    args=args,
                    client=pipe,
                )
            results = await pipe.execute()
        return [int(r) for r in results]

    async def load_run(self, generation: int) -> RunState:
        """The run as stored: every event of the stream, in order."""
        run = self._keys.for_generation(generation)
        state = RunState(generation)
        start = "-"
        while True:
            entries = await self._redis.xrange(run.events, min=start, max="+", count=STREAM_READ_CHUNK)
            for entry_id, fields in entries:
                state.apply(
                    as_str(fields[b"user"]),
                    as_str(fields[b"item"]),
                    as_str(fields[b"action"]),
                    float(fields[b"ts"]),
                )
                start = f"({as_str(entry_id)}"
            if len(entries) < STREAM_READ_CHUNK:
                break
        counters = await self._redis.hgetall(run.counters)
        state.messages_stored = as_int(counters.get(b"messages"))
        state.duplicates = as_int(counters.get(b"duplicates"))
        state.events_at_last_train = 0
        return state
