"""Catalog ids, simulated users and their reactions; the CLI's parameters."""

from __future__ import annotations

import queue
import uuid

import numpy as np
import pytest

from grader.catalog import build_catalog, item_id_for
from grader.cli import build_parser, config_from_args
from grader.runner import _BatchedProgress, split_evenly
from grader.simulation import react, sample_users, tastes
from recsys_core.movielens import Movie, Ratings

MOVIES = [Movie(n, f"M{n}", ("Drama",) if n % 2 else ()) for n in range(1, 7)]


def _ratings(rows: list[tuple[int, int, float]]) -> Ratings:
    data = np.asarray(rows, dtype=np.float64)
    return Ratings(
        data[:, 0].astype(np.int32),
        data[:, 1].astype(np.int32),
        data[:, 2].astype(np.float32),
        np.zeros(len(rows), dtype=np.int64),
    )


def test_item_ids_are_opaque_and_deterministic() -> None:
    assert item_id_for(1, 10) == item_id_for(1, 10)
    assert item_id_for(1, 10) != item_id_for(2, 10)
    uuid.UUID(item_id_for(1, 10))
    catalog = build_catalog(MOVIES, seed=1)
    batches = list(catalog.batches(4))
    assert [len(b["item_ids"]) for b in batches] == [4, 2]
    assert batches[0]["genres"][:2] == [["Drama"], []]
    assert batches[0]["titles"][0] == "M1"


def test_thresholds_split_ratings_into_liked_disliked_and_ignored() -> None:
    catalog = build_catalog(MOVIES, seed=1)
    ids = catalog.item_id_by_movie
    ratings = _ratings([(7, 1, 4.0), (7, 2, 3.5), (7, 3, 2.5), (7, 4, 2.0), (7, 5, 0.5), (7, 99, 5.0)])
    relevant, disliked = tastes(ratings, catalog)[7]
    assert relevant == {ids[1]}
    assert disliked == {ids[4], ids[5]}


def test_users_are_drawn_with_replacement_under_fresh_ids() -> None:
    catalog = build_catalog(MOVIES, seed=1)
    ratings = _ratings([(1, 1, 5.0), (2, 2, 5.0)])
    users = sample_users(ratings, catalog, count=20, seed=3)
    assert [u.arrival for u in users] == list(range(20))
    assert {u.source_user for u in users} == {1, 2}
    assert len({u.user_id for u in users}) == 20
    assert all(uuid.UUID(u.user_id).version == 4 for u in users)
    assert [u.user_id for u in sample_users(ratings, catalog, 20, seed=3)] == [u.user_id for u in users]
    assert [u.user_id for u in sample_users(ratings, catalog, 20, seed=4)] != [u.user_id for u in users]


def test_distinct_raters_are_each_drawn_once() -> None:
    catalog = build_catalog(MOVIES, seed=1)
    ratings = _ratings([(rater, 1, 5.0) for rater in range(1, 11)])
    users = sample_users(ratings, catalog, count=10, seed=3, distinct=True)
    assert sorted(u.source_user for u in users) == list(range(1, 11))
    assert [u.source_user for u in users] != list(range(1, 11)), "in a seeded random order"
    assert [u.user_id for u in sample_users(ratings, catalog, 10, seed=3, distinct=True)] == [u.user_id for u in users]
    with pytest.raises(ValueError, match="only 10 raters"):
        sample_users(ratings, catalog, count=11, seed=3, distinct=True)
    args = build_parser().parse_args(["run", "--recs", "http://r", "--events", "http://e", "--distinct-raters"])
    assert config_from_args(args).public_parameters()["distinct_raters"] is True


def test_reaction_likes_relevant_dislikes_disliked_once_each() -> None:
    catalog = build_catalog(MOVIES, seed=1)
    users = sample_users(_ratings([(1, 1, 5.0), (1, 2, 1.0)]), catalog, count=1, seed=0)
    liked, disliked = catalog.item_id_by_movie[1], catalog.item_id_by_movie[2]
    other = catalog.item_id_by_movie[3]
    reaction = react(users[0], [other, disliked, liked, liked])
    assert reaction.item_ids == (disliked, liked)
    assert reaction.actions == ("dislike", "like")
    assert not react(users[0], [other])


def test_cli_parameters() -> None:
    args = build_parser().parse_args(
        ["run", "--recs", "http://r:1/", "--events", "http://e:2", "--users", "20", "--processes", "2",
         "--pause-in-session", "0", "0", "--pause-between-sessions", "0", "0.5", "--admin-token", "t"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.recs_url == "http://r:1"
    assert (config.users, config.concurrency, config.processes) == (20, 50, 2)
    assert (config.sessions, config.calls_per_session, config.calls_per_user) == (2, 2, 4)
    assert config.pause_between_sessions.high_s == 0.5
    assert config.admin_token == "t"
    assert "admin_token" not in config.public_parameters()


def test_concurrency_is_split_evenly_over_processes() -> None:
    assert split_evenly(50, 3) == [17, 17, 16]
    assert split_evenly(4, 4) == [1, 1, 1, 1]


def test_a_worker_process_reports_its_calls_in_batches_and_loses_none() -> None:
    sent: queue.Queue[int] = queue.Queue()
    progress = _BatchedProgress(sent, every=50)
    for _ in range(120):
        progress(1)
    assert sent.qsize() == 2  # two round trips to the parent instead of 120
    progress.flush()
    counts = [sent.get_nowait() for _ in range(sent.qsize())]
    assert counts == [50, 50, 20]
