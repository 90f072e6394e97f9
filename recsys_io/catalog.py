"""The catalog in Redis: atomic batch adds (per generation) and consistent snapshots for readers."""

from __future__ import annotations

import asyncio
import json

import orjson
from redis.asyncio import Redis

from recsys_core import lua
from recsys_core.catalog import CatalogView
from recsys_core.keys import GlobalKeys, RunKeys
from recsys_core.schemas import MAX_DISTINCT_GENRES_PER_RUN, AddItemsRequest, AddItemsResponse
from recsys_io.redis_client import as_int, as_str

# One script call per chunk keeps Redis responsive while a 10k-item batch is stored.
ADD_CHUNK = 1000


class StaleGenerationError(RuntimeError):
    """A /cleanup happened between reading the generation and writing: the caller retries."""


class TooManyGenresError(ValueError):
    """The batch would take the run past ``MAX_DISTINCT_GENRES_PER_RUN`` genre names (nothing was added)."""


async def add_items(redis: Redis, keys: GlobalKeys, generation: int, request: AddItemsRequest) -> AddItemsResponse:
    run = keys.for_generation(generation)
    await _check_genre_budget(redis, run, request)
    script = redis.register_script(lua.ADD_ITEMS)
    added = updated = size = 0
    for start in range(0, len(request.item_ids), ADD_CHUNK):
        args: list[str | int] = [generation]
        for offset, item_id in enumerate(request.item_ids[start : start + ADD_CHUNK]):
            position = start + offset
            genres = request.genres[position] if request.genres is not None else None
            title = request.titles[position] if request.titles is not None else ""
            args += [item_id, json.dumps(genres) if genres is not None else "", title]
        result = await script(
            keys=[
                keys.generation,
                run.catalog_ids,
                run.catalog_index,
                run.catalog_genres,
                run.catalog_titles,
                run.catalog_version,
                run.catalog_genre_names,
            ],
            args=args,
        )
        if int(result[0]) == lua.STALE_GENERATION:
            raise StaleGenerationError(generation)
        added += int(result[0])
        updated += int(result[1])
        size = int(result[2])
    return AddItemsResponse(added=added, updated=updated, catalog_size=size)


async def _check_genre_budget(redis: Redis, run: RunKeys, request: AddItemsRequest) -> None:
    """Refuse, before anything is written, a batch that would take the run past its genre budget. (Two batches
    checked at the same time may together pass it by at most a batch's own new genres.)"""
    named = sorted({genre for genres in request.genres or [] if genres for genre in genres})
    if not named:
        return
    async with redis.pipeline(transaction=False) as pipe:
        pipe.scard(run.catalog_genre_names)
        pipe.smismember(run.catalog_genre_names, named)
        known_count, known = await pipe.execute()
    new = sum(1 for member in known if not member)
    if new and int(known_count) + new > MAX_DISTINCT_GENRES_PER_RUN:  # known genres always pass
        raise TooManyGenresError(
            f"genres: the batch names {new} new genres and the run already has {int(known_count)}; "
            f"a run holds at most {MAX_DISTINCT_GENRES_PER_RUN} distinct genres"
        )


async def load_catalog(redis: Redis, run: RunKeys) -> CatalogView:
    """A consistent snapshot (MULTI/EXEC) of ids, genres and the version they belong to."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(run.catalog_version)
        pipe.lrange(run.catalog_ids, 0, -1)
        pipe.hgetall(run.catalog_genres)
        version, raw_ids, raw_genres = await pipe.execute()
    # Decoding and indexing tens of thousands of items takes tens of milliseconds: off the event loop.
    return await asyncio.to_thread(_catalog_view, as_int(version), raw_ids, raw_genres)


def _catalog_view(version: int, raw_ids: list[bytes], raw_genres: dict[bytes, bytes]) -> CatalogView:
    item_ids = [as_str(i) for i in raw_ids]
    genres = {as_str(k): orjson.loads(v) for k, v in raw_genres.items()}
    return CatalogView.build(version, item_ids, genres)


async def load_titles(redis: Redis, run: RunKeys, item_ids: list[str]) -> dict[str, str]:
    if not item_ids:
        return {}
    values = await redis.hmget(run.catalog_titles, item_ids)
    return {item_id: as_str(v) for item_id, v in zip(item_ids, values, strict=True) if v is not None}


async def catalog_size(redis: Redis, run: RunKeys) -> int:
    return int(await redis.llen(run.catalog_ids))
