"""A tiny in-process HardML service (both recommendations and collector routes) that misbehaves on cue.

Per user it answers /recs with unseen catalog items in load order ("T1" users: reverse order), except:
call 2 repeats an entry inside the list, call 3 re-shows an item shown earlier, call 4 contains an id outside
the catalog, call 5 has 9 items. The very first /recs request and the very first /interact request of the
app's life answer 500. Everything it receives is kept for the tests to inspect.

With ``experiment`` it splits users over ``served_groups`` (by their UUID) and names the group in
``X-Experiment-Group``; ``reverse_group`` shows the catalog backwards. ``configured_groups`` is what
``GET /experiments`` lists (``config_endpoint=False``: a 404, as older services), ``assignment_endpoint`` serves
``GET /experiments/assignment/{user_id}``, users of ``failing_groups`` get a header-less 500 on every call, and
``switching_user`` moves the first user to another group after their first call.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

import numpy as np
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from grader.simulation import Dataset
from recsys_core.movielens import Movie, Ratings

EXPERIMENT_NAME = "<b>fake-experiment</b>"


@dataclass
class ServedFake:
    url: str
    state: FakeState


@dataclass
class FakeState:
    misbehave: bool
    experiment: bool
    catalog: list[str] = field(default_factory=list)
    genres: dict[str, list[str]] = field(default_factory=dict)
    shown: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    interactions: list[dict[str, Any]] = field(default_factory=list)  # the JSON bodies of /interact
    recs_requests: int = 0
    interact_requests: int = 0
    cleanups: int = 0
    served_groups: tuple[str, ...] = ("C", "T1")
    configured_groups: tuple[str, ...] = ("C", "T1")
    reverse_group: str = "T1"
    config_endpoint: bool = True
    assignment_endpoint: bool = True
    failing_groups: frozenset[str] = frozenset()
    switching_user: bool = False
    switcher: str | None = None
    assignment_requests: int = 0
    # /recs requests after this many hang until ``release`` is set (None: none hangs)
    hang_after: int | None = None
    release: threading.Event = field(default_factory=threading.Event)

    def group_of(self, user_id: str) -> str | None:
        if not self.experiment:
            return None
        return self.served_groups[uuid.UUID(user_id).int % len(self.served_groups)]

    def served_group(self, user_id: str, call: int) -> str | None:
        """The group this call is served by: the assigned one, except for the switching user after call 1."""
        group = self.group_of(user_id)
        if self.switching_user and group is not None:
            self.switcher = self.switcher or user_id
            if user_id == self.switcher and call > 1:
                return next(name for name in self.served_groups if name != group)
        return group


class FakeOptions(TypedDict, total=False):
    """The ``FakeState`` fields after ``cleanups`` (groups, endpoints, failures)."""

    served_groups: tuple[str, ...]
    configured_groups: tuple[str, ...]
    reverse_group: str
    config_endpoint: bool
    assignment_endpoint: bool
    failing_groups: frozenset[str]
    switching_user: bool
    switcher: str | None
    assignment_requests: int
    hang_after: int | None
    release: threading.Event


def create_fake_app(
    misbehave: bool = True, experiment: bool = False, **options: Unpack[FakeOptions]
) -> tuple[FastAPI, FakeState]:
    app = FastAPI()
    state = FakeState(misbehave=misbehave, experiment=experiment, **options)

    @app.get("/healthcheck")
    async def healthcheck() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/cleanup")
    async def cleanup() -> dict[str, str]:
        state.catalog.clear()
        state.genres.clear()
        state.shown.clear()
        state.calls.clear()
        state.cleanups += 1
        return {"status": "ok"}

    @app.post("/add_items")
    async def add_items(body: dict[str, Any]) -> dict[str, int]:
        for item_id, genres in zip(body["item_ids"], body["genres"], strict=True):
            state.catalog.append(item_id)
            state.genres[item_id] = genres
        return {"added": len(body["item_ids"]), "updated": 0, "catalog_size": len(state.catalog)}

    @app.get("/experiments")
    async def experiments() -> Response:
        if not state.experiment or not state.config_endpoint:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        share = 1 / len(state.configured_groups)
        groups = [
            {"name": name, "strategy": "reverse-order", "share": share, "params": {"x": 1}}
            if name == state.reverse_group
            else {"name": name, "strategy": "catalog-order", "share": share, "params": {}}
            for name in state.configured_groups
        ]
        return JSONResponse({"name": EXPERIMENT_NAME, "groups": groups})

    @app.get("/experiments/assignment/{user_id}")
    async def assignment(user_id: str) -> Response:
        state.assignment_requests += 1
        if not state.experiment or not state.assignment_endpoint:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return JSONResponse({"user_id": user_id, "group": state.group_of(user_id)})

    @app.get("/recs/{user_id}")
    async def recs(user_id: str) -> Response:
        state.recs_requests += 1
        if state.hang_after is not None and state.recs_requests > state.hang_after:
            while not state.release.is_set():  # noqa: ASYNC110 - a threading.Event, set from the test's thread
                await asyncio.sleep(0.02)
        state.calls[user_id] += 1
        call = state.calls[user_id]
        group = state.served_group(user_id, call)
        headers = {"X-Experiment-Group": group} if group else {}
        if state.misbehave and state.recs_requests == 1:
            return JSONResponse({"detail": "boom"}, status_code=500, headers=headers)
        if group in state.failing_groups:
            return JSONResponse({"detail": "this arm is broken"}, status_code=500)  # no header, as a crash
        shown = state.shown[user_id]
        order = state.catalog[::-1] if group == state.reverse_group else state.catalog
        unseen = [item for item in order if item not in shown]
        items = unseen[:10]
        if state.misbehave:
            if call == 2:
                items = [*unseen[:9], unseen[0]]
            elif call == 3:
                items = [shown[0], *unseen[:9]]
            elif call == 4:
                items = [f"unknown-{call}", *unseen[:9]]
            elif call == 5:
                items = unseen[:9]
        shown.extend(item for item in dict.fromkeys(items) if item in state.genres and item not in shown)
        return JSONResponse({"item_ids": items}, headers=headers)

    @app.post("/interact")
    async def interact(body: dict[str, Any]) -> Response:
        state.interact_requests += 1
        if state.misbehave and state.interact_requests == 1:
            return JSONResponse({"detail": "boom"}, status_code=500)
        state.interactions.append(body)
        return JSONResponse({"status": "accepted", "message_id": "m", "events": len(body["item_ids"])})

    return app, state


def tiny_dataset() -> Dataset:
    """100 movies (every 7th without genres), 6 raters each liking 15 movies near the start of the catalog."""
    genre_cycle = [("Action",), ("Comedy", "Drama"), ("Drama",), ("Action", "Comedy")]
    movies = [
        Movie(movie_id, f"Movie {movie_id}", () if movie_id % 7 == 0 else genre_cycle[movie_id % 4])
        for movie_id in range(1, 101)
    ]
    rows = []
    for rater in range(1, 7):
        rows += [(rater, movie, 4.5) for movie in range(rater * 3, rater * 3 + 15)]
        rows += [(rater, movie, 1.0) for movie in range(60, 60 + rater)]
        rows += [(rater, movie, 3.0) for movie in range(80, 85)]
    data = np.asarray(rows, dtype=np.float64)
    ratings = Ratings(
        user_ids=data[:, 0].astype(np.int32),
        movie_ids=data[:, 1].astype(np.int32),
        ratings=data[:, 2].astype(np.float32),
        timestamps=np.zeros(len(rows), dtype=np.int64),
    )
    return Dataset(movies, ratings)
