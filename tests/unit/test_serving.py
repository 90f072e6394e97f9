"""The serving side's pure parts: Versions.behind, ReplicaMemory, popular_unseen, build_profile and the
validation error formatting of recsys_io.http."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from recommendations.fallback import PendingWrite, ReplicaMemory, popular_unseen
from recommendations.service import RecommendationService, build_profile
from recommendations.serving_state import ServingState, Versions
from recommendations.user_store import Feedback, UserSnapshot
from recsys_core.algorithms.bandit import ItemStats
from recsys_core.algorithms.factors import FactorModel
from recsys_core.catalog import CatalogView
from recsys_core.experiments import load_experiment
from recsys_core.schemas import InteractRequest
from recsys_core.settings import Settings
from recsys_io.http import describe_validation_errors

BASE = Versions(generation=2, catalog=5, bandit=7, model=3)


def _state(n_items: int, likes: list[float] | None = None, impressions: list[float] | None = None) -> ServingState:
    catalog = CatalogView.build(1, [f"i{i}" for i in range(n_items)], {})
    stats = ItemStats.empty(n_items)
    if likes is not None and impressions is not None:
        stats = ItemStats(
            np.array(likes, dtype=np.float32), np.zeros(n_items, np.float32), np.array(impressions, np.float32)
        )
    return ServingState(generation=2, catalog=catalog, stats=stats, bandit_version=1, model=None, model_version=0)


# --- Versions ----------------------------------------------------------------------------------------------


def test_versions_same_is_not_behind() -> None:
    assert not BASE.behind(BASE)


@pytest.mark.parametrize(
    "wanted",
    [
        Versions(2, 6, 7, 3),
        Versions(2, 5, 8, 3),
        Versions(2, 5, 7, 4),
        Versions(3, 0, 0, 0),
        Versions(1, 5, 7, 3),  # a different generation is a reload, even an older number
    ],
)
def test_versions_behind(wanted: Versions) -> None:
    assert BASE.behind(wanted)


@pytest.mark.parametrize("wanted", [Versions(2, 4, 7, 3), Versions(2, 5, 6, 3), Versions(2, 0, 0, 0)])
def test_versions_not_behind_older(wanted: Versions) -> None:
    assert not BASE.behind(wanted)


def test_empty_serving_state_versions() -> None:
    state = ServingState.empty()
    assert state.versions == Versions(-1, 0, 0, 0)
    assert state.versions.behind(Versions(0, 0, 0, 0))


# --- ReplicaMemory -----------------------------------------------------------------------------------------


def _indices(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int32)


def test_replica_memory_accumulates_compact_indices() -> None:
    memory = ReplicaMemory()
    memory.remember(1, "u", _indices(3, 1))
    memory.remember(1, "u", _indices(1, 7))
    shown = memory.shown(1, "u")
    assert shown.tolist() == [1, 3, 7] and shown.dtype == np.int32
    assert memory.shown(1, "other").size == 0


def test_replica_memory_belongs_to_one_generation() -> None:
    memory = ReplicaMemory()
    memory.remember(1, "u", _indices(3))
    assert memory.shown(2, "u").size == 0  # indices of another run's catalog mean nothing
    memory.remember(2, "v", _indices(5))
    assert memory.shown(1, "u").size == 0 and len(memory) == 1


def test_replica_memory_lru_bound() -> None:
    memory = ReplicaMemory(max_users=2)
    memory.remember(1, "a", _indices(1))
    memory.remember(1, "b", _indices(2))
    memory.remember(1, "a", _indices(3))  # a is now the most recent
    memory.remember(1, "c", _indices(4))  # evicts b, the least recently remembered
    assert memory.shown(1, "a").tolist() == [1, 3]
    assert memory.shown(1, "b").size == 0
    assert memory.shown(1, "c").tolist() == [4]
    memory.remember(1, "d", _indices())
    assert memory.shown(1, "a").size == 0
    assert memory.shown(1, "c").tolist() == [4]


def test_replica_memory_pending_writes_merge_per_user_and_stay_pending_until_flushed() -> None:
    memory = ReplicaMemory(max_pending=2)
    memory.add_pending(PendingWrite(1, "u0", ("a",)))
    memory.add_pending(PendingWrite(1, "u0", ("b",)))  # the same user again: merged, not another write
    memory.add_pending(PendingWrite(1, "u1", ("c",)))
    memory.add_pending(PendingWrite(1, "u2", ("d",)))  # a third user is over the bound: dropped, and counted
    assert memory.dropped_writes == 1 and not memory.is_pending("u2")
    taken = memory.take_pending()
    assert taken == [PendingWrite(1, "u0", ("a", "b")), PendingWrite(1, "u1", ("c",))]
    # In flight: still pending (the user's shown set in Redis lacks them), but not taken twice.
    assert memory.is_pending("u0") and memory.has_pending() and memory.take_pending() == []
    memory.add_pending(PendingWrite(1, "u0", ("e",)))  # answered from the fallback meanwhile
    memory.return_pending()  # the write-back failed: queued again, merged with the newer answer
    assert sorted(memory.take_pending(), key=lambda w: w.user_id) == [
        PendingWrite(1, "u0", ("e", "a", "b")),
        PendingWrite(1, "u1", ("c",)),
    ]
    memory.flushed()
    assert not memory.has_pending() and not memory.is_pending("u0")
    memory.add_pending(PendingWrite(2, "u0", ("x",)))
    memory.add_pending(PendingWrite(3, "u0", ("y",)))  # another run's write replaces the older run's
    memory.add_pending(PendingWrite(3, "u0", ("y", "z")))  # merged once per item
    memory.add_pending(PendingWrite(2, "u0", ("x",)))  # an older run's (a failed write-back returned) never wins
    assert memory.take_pending() == [PendingWrite(3, "u0", ("y", "z"))]


def test_replica_memory_counts_a_claims_offers_as_shown_while_it_is_in_flight() -> None:
    memory = ReplicaMemory()
    memory.remember(1, "u", _indices(1))
    with memory.offering("u") as first, memory.offering("u") as second:
        first.append(_indices(4, 5))  # two requests of the user claim at once
        second.append(_indices(7))
        assert sorted(memory.shown_or_offered(1, "u").tolist()) == [1, 4, 5, 7]
        assert memory.shown_or_offered(1, "other").size == 0
    assert memory.shown_or_offered(1, "u").tolist() == [1]  # both claims done: only what was shown


def test_replica_memory_forget_all() -> None:
    memory = ReplicaMemory()
    memory.remember(1, "u", _indices(0))
    memory.add_pending(PendingWrite(1, "u", ("a",)))
    memory.forget_all()
    assert memory.shown(1, "u").size == 0
    assert memory.take_pending() == []


# --- popular_unseen ----------------------------------------------------------------------------------------


def test_popular_unseen_orders_by_smoothed_like_rate() -> None:
    # (likes + 1) / (impressions + 20) = [0.05, 0.2, 0.136, 0.083]
    state = _state(4, likes=[0, 5, 2, 9], impressions=[0, 10, 2, 100])
    assert popular_unseen(state, _indices(), 4).tolist() == [1, 2, 3, 0]
    assert popular_unseen(state, _indices(), 2).tolist() == [1, 2]


def test_popular_unseen_excludes_given_ids() -> None:
    state = _state(4, likes=[0, 5, 2, 9], impressions=[0, 10, 2, 100])
    assert popular_unseen(state, _indices(1, 99), 2).tolist() == [2, 3]  # 99: beyond this catalog
    assert popular_unseen(state, _indices(0, 1, 2, 3), 2).tolist() == []


def test_popular_unseen_empty_catalog() -> None:
    assert popular_unseen(ServingState.empty(), _indices(), 5).tolist() == []


# --- build_profile -----------------------------------------------------------------------------------------


def test_build_profile_latest_action_wins() -> None:
    history = [
        Feedback("i1", "like", 1.0),
        Feedback("i2", "dislike", 2.0),
        Feedback("i1", "dislike", 3.0),  # i1: liked, then disliked
        Feedback("i4", "dislike", 4.0),
        Feedback("i4", "like", 5.0),  # i4: disliked, then liked
        Feedback("ghost", "like", 6.0),  # not in the catalog
    ]
    snapshot = UserSnapshot(BASE, shown=["i0", "i3", "ghost"], history=history)
    profile = build_profile(_state(5), snapshot)
    assert profile.liked.tolist() == [4]
    # Ordered by the time of the latest answer: i2 (t=2) before i1 (t=3).
    assert profile.disliked.tolist() == [2, 1]
    assert profile.shown.tolist() == [True, False, False, True, False]
    assert profile.n_feedback == 3


def test_build_profile_empty() -> None:
    profile = build_profile(_state(3), UserSnapshot(BASE, shown=[], history=[]))
    assert profile.shown.tolist() == [False, False, False]
    assert profile.liked.size == profile.disliked.size == 0


# --- describe_validation_errors ----------------------------------------------------------------------------


def test_describe_validation_errors_formatting() -> None:
    errors = [
        {"loc": ("body", "actions", 0), "msg": "Input should be 'like' or 'dislike'"},
        {"loc": ("body",), "msg": "Value error, actions has 1 entries but item_ids has 2"},
        {"loc": (), "msg": "whole body is wrong"},
        {},
    ]
    assert describe_validation_errors(errors) == (
        "body.actions.0: Input should be 'like' or 'dislike'; "
        "body: actions has 1 entries but item_ids has 2; "
        "whole body is wrong; "
        "invalid value"
    )
    assert describe_validation_errors([]) == ""


def test_describe_validation_errors_in_words() -> None:
    from recsys_core.schemas import ID_PATTERN

    errors = [
        # FastAPI's own JSON parser reports the character position as if it were a field.
        {"loc": ("body", 12), "msg": "JSON decode error", "type": "json_invalid"},
        {
            "loc": ("body", "user_id"),
            "msg": "String should match pattern '...'",
            "type": "string_pattern_mismatch",
            "ctx": {"pattern": ID_PATTERN},
        },
        {
            "loc": ("body", "genre"),
            "msg": "String should match pattern 'x'",
            "type": "string_pattern_mismatch",
            "ctx": {"pattern": "x"},
        },
    ]
    assert describe_validation_errors(errors) == (
        "body: the body is not valid JSON (at character 12); "
        "body.user_id: an id is letters, digits and . _ : @ + - only, and not only dots; "
        "body.genre: String should match pattern 'x'"
    )


def test_describe_real_pydantic_errors() -> None:
    with pytest.raises(ValidationError) as error:
        InteractRequest.model_validate({"user_id": "u", "item_ids": ["a", "b"], "actions": ["like", "meh"]})
    assert describe_validation_errors(error.value.errors()) == "actions.1: Input should be 'like' or 'dislike'"
    with pytest.raises(ValidationError) as error:
        InteractRequest.model_validate({"user_id": "u", "item_ids": ["a", "b"], "actions": ["like"]})
    text = describe_validation_errors(error.value.errors())
    assert text.startswith("actions has 1 entries but item_ids has 2")
    assert "Value error" not in text


def test_the_service_sizes_its_fallback_memory_from_settings() -> None:
    settings = Settings(fallback_memory_users=2)
    redis = Redis.from_url("redis://127.0.0.1:1/0")  # never contacted: construction opens no connection
    service = RecommendationService(settings, redis, load_experiment(None, None, "blend"))
    for user in ("a", "b", "c"):
        service.memory.remember(1, user, _indices(1))
    assert len(service.memory) == 2
    assert service.memory.shown(1, "a").size == 0  # the least recent user went first


def test_a_user_vector_is_used_only_with_the_model_version_it_was_read_from() -> None:
    """The read script returns the user's row of the version the pointer named; the replica may rank with
    another version (newer, or the previous one when a blob was retired mid-reload): then no BPR for the user."""
    model = FactorModel(
        version=3,
        user_ids=np.empty(0, dtype=np.str_),
        user_factors=np.empty((0, 2), dtype=np.float32),
        item_ids=np.array(["i0", "i1"]),
        item_factors=np.ones((2, 2), dtype=np.float32),
        neighbour_indices=np.zeros((2, 0), dtype=np.int32),
        neighbour_sims=np.zeros((2, 0), dtype=np.float32),
    )
    state = replace(_state(2), model=model, model_version=3)
    vector = np.array([0.5, -0.5], dtype=np.float32)

    def snapshot(model_version: int) -> UserSnapshot:
        return UserSnapshot(replace(BASE, model=model_version), [], [], vector)

    assert RecommendationService._user_vector(state, snapshot(3)) is vector
    assert RecommendationService._user_vector(state, snapshot(4)) is None
    assert RecommendationService._user_vector(replace(state, model=None), snapshot(3)) is None
