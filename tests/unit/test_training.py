"""The pipeline's pure parts: InteractionLog / RunState (pipeline.state) and latest_likes / fit_model."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.state import DISLIKE, LIKE, InteractionLog, RunState, TrainingColumns
from pipeline.training import N_NEIGHBOURS, fit_model, latest_likes
from recsys_core.algorithms.factors import BPRParams

FAST = BPRParams(iterations=3, factors=4)

# (user, item, action, timestamp) in log order.
EVENTS: list[tuple[str, str, str, float]] = [
    ("u3", "a", "dislike", 0.5),  # u3 never likes anything
    ("u1", "a", "like", 1.0),
    ("u1", "a", "dislike", 2.0),  # liked then disliked -> not a positive
    ("u2", "a", "dislike", 3.0),
    ("u2", "a", "like", 4.0),  # disliked then liked -> a positive
    ("u1", "b", "like", 5.0),
    ("u1", "zzz", "like", 6.0),  # not in the catalog -> dropped
    ("u2", "c", "like", 7.0),
    ("u2", "c", "like", 8.0),  # repeated like -> one positive, the latest one
]
CATALOG = ["c", "b", "a"]  # catalog index: c=0, b=1, a=2


def _log(events: list[tuple[str, str, str, float]]) -> InteractionLog:
    log = InteractionLog()
    for user, item, action, ts in events:
        log.append(user, item, action, ts)
    return log


def _columns(events: list[tuple[str, str, str, float]] = EVENTS) -> TrainingColumns:
    return _log(events).columns()


# --- InteractionLog / RunState -----------------------------------------------------------------------------


def test_interaction_log_interns_ids() -> None:
    log = _log([("u1", "a", "like", 1.0), ("u2", "b", "dislike", 2.0), ("u1", "b", "like", 3.5)])
    assert len(log) == 3
    assert log.user_codes == {"u1": 0, "u2": 1}
    assert log.item_codes == {"a": 0, "b": 1}
    columns = log.columns()
    assert columns.users.tolist() == [0, 1, 0]
    assert columns.items.tolist() == [0, 1, 1]
    assert columns.actions.tolist() == [LIKE, DISLIKE, LIKE]
    assert columns.timestamps.tolist() == [1.0, 2.0, 3.5]
    assert columns.user_ids == ["u1", "u2"]
    assert columns.item_ids == ["a", "b"]
    assert columns.users.dtype == np.int32
    assert columns.items.dtype == np.int32
    assert columns.actions.dtype == np.int8
    assert columns.timestamps.dtype == np.float64


def test_columns_are_a_copy() -> None:
    log = _log([("u1", "a", "like", 1.0)])
    columns = log.columns()
    log.append("u2", "b", "dislike", 2.0)
    assert columns.users.tolist() == [0]
    assert columns.user_ids == ["u1"]
    assert columns.item_ids == ["a"]
    assert len(log.columns().users) == 2


def test_empty_log_columns() -> None:
    columns = InteractionLog().columns()
    assert columns.users.size == columns.items.size == columns.actions.size == columns.timestamps.size == 0
    assert columns.user_ids == [] and columns.item_ids == []


def test_run_state_apply() -> None:
    state = RunState(generation=3)
    state.apply("u1", "a", "like", 1.0)
    state.apply("u2", "a", "like", 2.0)
    state.apply("u1", "b", "dislike", 3.0)
    assert state.likes == {"a": 2}
    assert state.dislikes == {"b": 1}
    assert len(state.log) == 3
    assert state.applied_events == 3
    state.events_at_last_train = 2
    assert state.events_since_train == 1


# --- latest_likes ------------------------------------------------------------------------------------------


def test_latest_likes_hand_computed() -> None:
    likes = latest_likes(_columns(), {item: i for i, item in enumerate(CATALOG)})
    # Codes: u3=0, u1=1, u2=2. Kept, in log order: (u2, a) at ts 4, (u1, b) at ts 5, (u2, c) at ts 8.
    assert likes.users.tolist() == [2, 1, 2]
    assert likes.items.tolist() == [2, 1, 0]
    assert likes.timestamps.tolist() == [4.0, 5.0, 8.0]
    assert likes.user_ids == ["u3", "u1", "u2"]


@pytest.mark.parametrize(
    ("events", "expected_items"),
    [
        ([("u", "a", "like", 1.0), ("u", "a", "dislike", 2.0)], []),
        ([("u", "a", "dislike", 1.0), ("u", "a", "like", 2.0)], [0]),
        ([("u", "a", "like", 1.0), ("u", "a", "dislike", 2.0), ("u", "a", "like", 3.0)], [0]),
        ([("u", "unknown", "like", 1.0)], []),
        ([("u", "a", "dislike", 1.0)], []),
    ],
)
def test_latest_action_wins(events: list[tuple[str, str, str, float]], expected_items: list[int]) -> None:
    assert latest_likes(_columns(events), {"a": 0}).items.tolist() == expected_items


def test_latest_likes_is_per_user() -> None:
    # Another user's dislike does not cancel this user's like.
    events = [("u1", "a", "like", 1.0), ("u2", "a", "dislike", 2.0)]
    likes = latest_likes(_columns(events), {"a": 0})
    assert likes.users.tolist() == [0]
    assert likes.items.tolist() == [0]


def test_latest_likes_empty() -> None:
    likes = latest_likes(InteractionLog().columns(), {"a": 0})
    assert likes.users.size == likes.items.size == likes.timestamps.size == 0


# --- fit_model ---------------------------------------------------------------------------------------------


def test_fit_model_without_likes_is_none() -> None:
    assert fit_model(InteractionLog().columns(), CATALOG, FAST, 0.2) is None
    only_dislikes = _columns([("u1", "a", "dislike", 1.0), ("u2", "b", "dislike", 2.0)])
    assert fit_model(only_dislikes, CATALOG, FAST, 0.2) is None
    liked_elsewhere = _columns([("u1", "outside", "like", 1.0)])
    assert fit_model(liked_elsewhere, CATALOG, FAST, 0.2) is None


def test_fit_model_counts_and_shapes() -> None:
    output = fit_model(_columns(), CATALOG, FAST, 0.2, evaluate=False)
    assert output is not None
    # u3 has no like, so the user axis is compacted to u1 and u2 (in code order).
    assert output.user_ids.tolist() == ["u1", "u2"]
    assert output.n_users == 2
    assert output.n_items == 3
    assert output.n_likes == 3
    assert output.n_events == len(EVENTS)
    assert output.user_factors.shape == (2, FAST.factors + 1)
    assert output.item_factors.shape == (3, FAST.factors + 1)
    n_neighbours = min(N_NEIGHBOURS, 3 - 1)
    assert output.neighbour_indices.shape == (3, n_neighbours)
    assert output.neighbour_sims.shape == (3, n_neighbours)
    assert not np.any(output.neighbour_indices == np.arange(3)[:, None])
    assert output.offline is None
    assert output.train_seconds >= 0


def test_fit_model_offline_evaluation() -> None:
    # 3 likes, fraction 0.34 -> the most recent one, (u2, c), is held out; u2 keeps (u2, a) for training.
    output = fit_model(_columns(), CATALOG, FAST, 0.34, evaluate=True)
    assert output is not None and output.offline is not None
    assert output.offline.users_evaluated == 1
    # Ranking 2 candidate items (a is u2's training item) at k=10: one hit -> precision 1/10.
    assert output.offline.precision_at_10 == pytest.approx(0.1)
    assert output.offline.ndcg_at_10 in (pytest.approx(1.0), pytest.approx(1 / np.log2(3)))


def test_fit_model_user_with_only_heldout_likes_is_not_evaluated() -> None:
    events = [("u1", "a", "like", 1.0), ("u1", "b", "like", 2.0), ("u2", "c", "like", 3.0)]
    output = fit_model(_columns(events), CATALOG, FAST, 0.3)
    assert output is not None and output.offline is not None
    # round(3 * 0.3) = 1 held out: (u2, c); u2 has no training like, so nobody can be evaluated.
    assert output.offline.users_evaluated == 0
    assert output.n_users == 2 and output.n_likes == 3
