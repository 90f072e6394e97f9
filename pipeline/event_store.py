"""Storing events durably (exactly once per message) and rebuilding the in-memory run from Redis."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from tenacity import before_sleep_log, retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from pipeline.state import RunState
from recsys_core import lua
from recsys_core.keys import GlobalKeys
from recsys_core.schemas import EventMessage
from recsys_io.redis_client import REDIS_UNAVAILABLE, as_int, as_str

log = logging.getLogger(__name__)

HISTORY_CAP = 200
# Messages per STORE_EVENTS call: Redis runs one call without interruption, so a call stays short.
STORE_CHUNK = 64
# Messages per round trip (the caller stores a longer batch in slices): with the collector's group commit a
# batch of 256 AMQP messages can hold up to 65,536 messages, which took 1.4 s in one round trip here (1,024:
# 0.03 s), longer than the client's 1 s timeout.
STORE_ROUND_TRIP = 1024
# How long Redis keeps a store call's replies for a retry of that call (~140 bytes a call). A retry comes within
# seconds of Redis being reachable again; past this the retry's messages count as redeliveries (the behaviour
# without the replies: stored once in Redis, missing from this process's counters until it restarts).
STORE_REPLIES_TTL_S = 300
STREAM_READ_CHUNK = 10_000
# Reloading a long run is hundreds of reads of a chunk each, against a client timeout of 1 s meant for requests:
# a read that outlasts it on a busy Redis is retried, instead of failing the whole start-up.
STREAM_READ_ATTEMPTS = 5

STORED, DUPLICATE, STALE, NOT_LEASE_HOLDER = 1, 0, lua.STALE_GENERATION, lua.NOT_LEASE_HOLDER


@dataclass(frozen=True, slots=True)
class GroupedEvent:
    event: EventMessage
    group: str


def _chunks_of_one_run(events: list[GroupedEvent], size: int) -> Iterator[list[GroupedEvent]]:
    """Consecutive runs of events of the same generation, cut to at most ``size`` messages, in order."""
    chunk: list[GroupedEvent] = []
    for grouped in events:
        if chunk and (len(chunk) == size or grouped.event.generation != chunk[0].event.generation):
            yield chunk
            chunk = []
        chunk.append(grouped)
    if chunk:
        yield chunk


class EventStore:
    def __init__(self, redis: Redis, keys: GlobalKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._store = redis.register_script(lua.STORE_EVENTS)

    @staticmethod
    def new_call_id() -> str:
        """An id for one ``store`` call, to be passed again by each retry of that call."""
        return uuid.uuid4().hex

    async def store(self, events: list[GroupedEvent], call_id: str, lease_token: str = "") -> list[int]:
        """One round trip for the batch; each message is stored atomically, or recognised as a redelivery.

        Messages of one run go to Redis a chunk per script call (a batch spans two runs only around a /cleanup).
        A retry must pass the ``call_id`` of the call it repeats: the chunks that call already stored then answer
        as they did then, even if that reply was lost on the way back. With a ``lease_token`` a chunk is stored
        only while that token holds the pipeline lease (``NOT_LEASE_HOLDER`` for each of its messages otherwise).
        """
        if not events:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for number, chunk in enumerate(_chunks_of_one_run(events, STORE_CHUNK)):
                generation = chunk[0].event.generation
                run = self._keys.for_generation(generation)
                keys = [
                    self._keys.generation,
                    run.seen_messages,
                    run.events,
                    run.item_likes,
                    run.item_dislikes,
                    run.counters,
                    run.store_replies(f"{call_id}.{number}"),
                    self._keys.pipeline_leader,
                ]
                args: list[str | int | float] = [generation, HISTORY_CAP, STORE_REPLIES_TTL_S, lease_token]
                for grouped in chunk:
                    event = grouped.event
                    user = event.user_id
                    keys += [run.user_feedback(user), run.user_history(user), run.user_ab_tally(user)]
                    args += [event.message_id, event.user_id, event.timestamp, grouped.group, len(event.item_ids)]
                    for item_id, action in zip(event.item_ids, event.actions, strict=True):
                        args += [item_id, action]
                await self._store(keys=keys, args=args, client=pipe)
            replies = await pipe.execute()
        return [int(result) for reply in replies for result in reply]

    async def load_run(self, generation: int, max_events: int = 0) -> RunState:
        """The run as stored: its counters, and its latest ``max_events`` events in order (0: every event)."""
        run = self._keys.for_generation(generation)
        state = RunState(generation, max_events=max_events)
        # Newest first, until the window is full or the oldest entry is read; then put the log back in order.
        # Never ask for the empty range before the oldest entry: Redis answers that XREVRANGE in time linear in
        # the stream's length (0.2 s at 2M entries, over 1 s at 10M, which failed a reload on the timeout).
        oldest = await self._redis.xrange(run.events, "-", "+", count=1)
        end = "+"
        while oldest and (not max_events or len(state.log) < max_events):
            count = STREAM_READ_CHUNK if not max_events else min(STREAM_READ_CHUNK, max_events - len(state.log))
            entries = await self._read_newest_first(run.events, end, count)
            self._append(state, entries)
            if len(entries) < count or entries[-1][0] == oldest[0][0]:
                break
            end = f"({as_str(entries[-1][0])}"
        state.log.reverse()
        # The counters cover the whole run, also the events left out of the window.
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(run.item_likes)
            pipe.hgetall(run.item_dislikes)
            pipe.hgetall(run.counters)
            likes, dislikes, counters = await pipe.execute()
        state.likes = Counter({as_str(item): int(count) for item, count in likes.items()})
        state.dislikes = Counter({as_str(item): int(count) for item, count in dislikes.items()})
        state.applied_events = as_int(counters.get(b"events"))
        state.messages_stored = as_int(counters.get(b"messages"))
        state.duplicates = as_int(counters.get(b"duplicates"))
        state.events_at_last_train = 0
        return state

    @retry(
        retry=retry_if_exception_type(REDIS_UNAVAILABLE),
        stop=stop_after_attempt(STREAM_READ_ATTEMPTS),
        wait=wait_exponential(multiplier=0.2, max=5.0),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    async def _read_newest_first(self, stream: str, end: str, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        entries = await self._redis.xrevrange(stream, max=end, min="-", count=count)
        return cast(list[tuple[bytes, dict[bytes, bytes]]], entries)  # the client does not decode

    @staticmethod
    def _append(state: RunState, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        for _, fields in entries:
            state.log.append(
                as_str(fields[b"user"]), as_str(fields[b"item"]), as_str(fields[b"action"]), float(fields[b"ts"])
            )
