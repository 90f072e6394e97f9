"""The wire contracts: HTTP request/response bodies and the event message on the queue.

The HTTP shapes follow the HardML contract exactly; clients and graders depend on them. Limits on sizes and
characters live here so both services refuse the same inputs with the same messages.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_ID_LENGTH = 128
MAX_ITEMS_PER_BATCH = 20_000
MAX_GENRES_PER_ITEM = 32
# A replica holds the catalog's genres as an items x distinct-genres matrix (9 bytes a cell): a batch of 20,000
# items with 32 new genres each would ask for 115 GB.
MAX_DISTINCT_GENRES_PER_BATCH = 256
# ...and batch after batch: genre names a run may hold in all (MovieLens has 20).
MAX_DISTINCT_GENRES_PER_RUN = 1024
MAX_GENRE_LENGTH = 64
MAX_TITLE_LENGTH = 512
MAX_INTERACTIONS_PER_EVENT = 1_000
MAX_K = 100
DEFAULT_K = 10
# A client clock may run ahead a little; a day ahead is a unit mistake (milliseconds) or a broken clock, and such
# events would sort after every real one (the pipeline holds out the most recent likes to evaluate a retrain).
MAX_TIMESTAMP_AHEAD_S = 86_400.0

# Ids are opaque (UUIDs in practice) but end up inside Redis key names and URLs: printable, no whitespace, and not
# dots alone (a path segment "." or ".." is resolved away by clients before the request leaves).
ID_PATTERN = r"^[A-Za-z0-9._:@+\-]*[A-Za-z0-9_:@+\-][A-Za-z0-9._:@+\-]*$"
# The pattern's characters in words, for messages (a client should not have to read a regular expression).
ID_CHARACTERS = "letters, digits and . _ : @ + -"

ItemId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, strict=True)]
UserId = ItemId
# Genres are free text shown to people: printable, and not only spaces (control characters and blank names would
# count as genres of their own and break the diversity and taste figures silently).
GENRE_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
Genre = Annotated[str, StringConstraints(min_length=1, max_length=MAX_GENRE_LENGTH, pattern=GENRE_PATTERN, strict=True)]
Action = Literal["like", "dislike"]


class AddItemsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    item_ids: list[ItemId] = Field(min_length=1, max_length=MAX_ITEMS_PER_BATCH)
    genres: list[list[Genre]] | None = None
    # Optional, not part of the HardML contract: human titles shown by the debug UI.
    titles: list[Annotated[str, StringConstraints(max_length=MAX_TITLE_LENGTH)]] | None = None

    @model_validator(mode="after")
    def _aligned(self) -> AddItemsRequest:
        if self.genres is not None:
            if len(self.genres) != len(self.item_ids):
                raise ValueError(
                    f"genres has {len(self.genres)} entries but item_ids has {len(self.item_ids)}: "
                    "they must have the same length (one genre list per item)"
                )
            too_many = [i for i, genres in enumerate(self.genres) if len(genres) > MAX_GENRES_PER_ITEM]
            if too_many:
                raise ValueError(f"item at position {too_many[0]} has more than {MAX_GENRES_PER_ITEM} genres")
            distinct = len({genre for genres in self.genres for genre in genres})
            if distinct > MAX_DISTINCT_GENRES_PER_BATCH:
                raise ValueError(
                    f"the batch names {distinct} distinct genres; at most {MAX_DISTINCT_GENRES_PER_BATCH} are allowed"
                )
        if self.titles is not None and len(self.titles) != len(self.item_ids):
            raise ValueError(
                f"titles has {len(self.titles)} entries but item_ids has {len(self.item_ids)}: "
                "they must have the same length"
            )
        return self


class AddItemsResponse(BaseModel):
    added: int
    updated: int
    catalog_size: int


class RecsResponse(BaseModel):
    item_ids: list[str]


class InteractRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_id: UserId
    item_ids: list[ItemId] = Field(min_length=1, max_length=MAX_INTERACTIONS_PER_EVENT)
    actions: list[Action] = Field(min_length=1, max_length=MAX_INTERACTIONS_PER_EVENT)
    # strict: a boolean or a numeric string is not a time (JSON integers are still accepted).
    # allow_inf_nan=False: NaN is refused as "not a finite number" rather than as "not >= 0".
    timestamp: float | None = Field(default=None, ge=0, strict=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _aligned(self) -> InteractRequest:
        if len(self.actions) != len(self.item_ids):
            raise ValueError(
                f"actions has {len(self.actions)} entries but item_ids has {len(self.item_ids)}: "
                "they must have the same length (one action per item)"
            )
        if self.timestamp is not None and self.timestamp > time.time() + MAX_TIMESTAMP_AHEAD_S:
            raise ValueError(
                f"timestamp {self.timestamp:.0f} is more than a day ahead of the server's clock: seconds since the "
                "epoch are expected (not milliseconds)"
            )
        return self


# A client's Idempotency-Key header: an id by the same rules, so that it is safe to log and to hash.
IdempotencyKey = ItemId
_IDEMPOTENT_NAMESPACE = uuid.UUID("7f0e4c36-5d1a-4b8e-9a51-2f3c8d6e1b90")


def idempotent_message_id(user_id: str, key: str) -> str:
    """The message id of a user's event sent with ``key``: the same for every retry of it, so the pipeline stores
    it once however many of them the collector accepted (its store skips a message id it has seen in the run).
    A uuid5 never equals the uuid4 a request without a key gets."""
    return uuid.uuid5(_IDEMPOTENT_NAMESPACE, f"{user_id}\x00{key}").hex


def admin_authorization(admin_token: str | None) -> dict[bytes, bytes]:
    """The header an admin call carries, ``Authorization: Bearer <ADMIN_TOKEN>`` (empty without a token).

    As bytes: the services compare the token's UTF-8 bytes, and an HTTP client encodes a ``str`` header as ASCII,
    so a non-ASCII token sent as text fails in the client before any request is made."""
    return {b"Authorization": b"Bearer " + admin_token.encode()} if admin_token else {}


class InteractResponse(BaseModel):
    status: Literal["accepted"] = "accepted"
    message_id: str
    events: int


class EventMessage(BaseModel):
    """What the collector publishes and the pipeline consumes: one /interact call."""

    message_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    generation: int
    user_id: str
    item_ids: list[str]
    actions: list[Action]
    # Client's time when it gave one, otherwise the server's receive time.
    timestamp: float
    received_at: float

    @model_validator(mode="after")
    def _storable(self) -> EventMessage:
        # The collector only sends valid events, but the queue may hold anything: a message the pipeline cannot
        # store must fail here, where it goes to the dead-letter queue, not in the store, where it would be retried.
        if len(self.actions) != len(self.item_ids) or not self.item_ids:
            raise ValueError(f"{len(self.item_ids)} item ids with {len(self.actions)} actions")
        if not (math.isfinite(self.timestamp) and math.isfinite(self.received_at)):
            raise ValueError("timestamps must be finite")
        return self


# The AMQP ``type`` of a message that holds an ``EventBatch``; a message without it holds one ``EventMessage``
# (the format before batches, still accepted so that messages queued by an older collector are consumed).
EVENT_BATCH_TYPE = "event-batch"


class EventBatch(BaseModel):
    """One message of the events queue: the events of the /interact calls the collector published together.

    Each event keeps its own ``message_id``, so a redelivered batch is deduplicated event by event.
    """

    events: list[EventMessage] = Field(min_length=1)


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, object]]


class CleanupResponse(BaseModel):
    status: Literal["ok"] = "ok"
    generation: int
    # Every live collector stamps the new generation: an event sent from now on belongs to the new run.
    collectors_switched: bool
    queue_purged: bool
    pipeline_acknowledged: bool
    keys_deleted: int
