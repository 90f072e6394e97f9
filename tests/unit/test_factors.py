"""Factor models (recsys_core.algorithms.factors) and offline evaluation (recsys_core.algorithms.evaluation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_core.algorithms.evaluation import dcg_discounts, evaluate_at_k, recent_holdout_mask
from recsys_core.algorithms.factors import (
    BPRParams,
    FactorModel,
    TrainingCancelled,
    item_neighbours,
    score_users,
    train_bpr,
)
from recsys_core.algorithms.personal import neighbour_scores

# Four items; the last column is the bias BPR learns, which similarity must ignore (huge values here on purpose).
ITEM_FACTORS = np.array(
    [
        [1.0, 0.0, 100.0],  # 0: points along x
        [2.0, 0.1, -100.0],  # 1: almost the same direction as 0
        [0.0, 1.0, 100.0],  # 2: orthogonal to 0
        [-1.0, 0.0, 50.0],  # 3: opposite to 0
    ],
    dtype=np.float32,
)


def _model(n_items: int = 3) -> FactorModel:
    return FactorModel(
        version=9,
        user_ids=np.array(["u1", "u2"]),
        user_factors=np.array([[1.0, 2.0], [0.5, -1.0]], dtype=np.float32),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        item_factors=np.arange(n_items * 2, dtype=np.float32).reshape(n_items, 2),
        neighbour_indices=np.zeros((n_items, 1), dtype=np.int32),
        neighbour_sims=np.ones((n_items, 1), dtype=np.float32),
    )


# --- FactorModel -------------------------------------------------------------------------------------------


def test_user_index_built() -> None:
    model = _model()
    assert model.user_index == {"u1": 0, "u2": 1}
    assert model.knows("u2")
    assert not model.knows("u3")
    assert model.n_items == 3


def test_user_scores_known_user() -> None:
    # item factors [[0,1],[2,3],[4,5]] . u1 [1,2] = [2, 8, 14]
    scores = _model().user_scores("u1", 3)
    assert scores is not None
    np.testing.assert_allclose(scores, [2.0, 8.0, 14.0])


def test_user_scores_unknown_user_is_none() -> None:
    assert _model().user_scores("stranger", 3) is None


def test_the_item_side_and_the_user_rows_split_a_model_without_loss() -> None:
    """Replicas load the item side; /recs reads a user's row from Redis: together they score as the whole."""
    model = _model()
    items = FactorModel.from_bytes(model.item_side().to_bytes())
    assert items.user_ids.size == 0 and not items.knows("u1")
    np.testing.assert_array_equal(items.item_factors, model.item_factors)
    rows = dict(model.user_rows())
    assert set(rows) == {"u1", "u2"}
    for user_id, raw in rows.items():
        vector = FactorModel.vector_from_bytes(raw)
        np.testing.assert_array_equal(items.scores_for(vector, 3), model.user_scores(user_id, 3))
    # A catalog that grew since training: new items score -inf.
    grown = items.scores_for(FactorModel.vector_from_bytes(rows["u1"]), 5)
    assert grown is not None
    assert np.isneginf(grown[3:]).all()


def test_a_vector_of_another_shape_does_not_score() -> None:
    assert _model().scores_for(np.ones(3, dtype=np.float32), 3) is None


def test_user_scores_items_newer_than_model_are_minus_inf() -> None:
    scores = _model().user_scores("u2", 5)
    assert scores is not None
    # u2 [0.5, -1]: [-1, -2, -3], then two items the model never saw.
    np.testing.assert_allclose(scores[:3], [-1.0, -2.0, -3.0])
    assert np.all(np.isneginf(scores[3:]))


def test_user_scores_catalog_smaller_than_model() -> None:
    scores = _model().user_scores("u1", 2)
    assert scores is not None
    np.testing.assert_allclose(scores, [2.0, 8.0])


def test_bytes_round_trip_rebuilds_user_index() -> None:
    model = _model()
    restored = FactorModel.from_bytes(model.to_bytes())
    assert restored.version == 9
    assert restored.user_ids.tolist() == ["u1", "u2"]
    assert restored.item_ids.tolist() == ["i0", "i1", "i2"]
    for name in ("user_factors", "item_factors", "neighbour_indices", "neighbour_sims"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(model, name))
        assert getattr(restored, name).dtype == getattr(model, name).dtype
    assert restored.user_index == {"u1": 0, "u2": 1}
    scores = restored.user_scores("u1", 4)
    assert scores is not None
    np.testing.assert_allclose(scores[:3], [2.0, 8.0, 14.0])


def test_model_without_users() -> None:
    model = FactorModel(
        version=1,
        user_ids=np.array([], dtype=np.str_),
        user_factors=np.zeros((0, 2), dtype=np.float32),
        item_ids=np.array(["a"]),
        item_factors=np.zeros((1, 2), dtype=np.float32),
        neighbour_indices=np.zeros((1, 0), dtype=np.int32),
        neighbour_sims=np.zeros((1, 0), dtype=np.float32),
    )
    restored = FactorModel.from_bytes(model.to_bytes())
    assert restored.user_index == {}
    assert restored.user_scores("anyone", 1) is None


def test_score_users() -> None:
    model = _model()
    np.testing.assert_allclose(
        score_users(model.user_factors, model.item_factors, [1, 0]), [[-1.0, -2.0, -3.0], [2.0, 8.0, 14.0]]
    )


# --- item_neighbours ---------------------------------------------------------------------------------------


def test_item_neighbours_hand_made() -> None:
    indices, sims = item_neighbours(ITEM_FACTORS, 2)
    assert indices.shape == (4, 2) and sims.shape == (4, 2)
    assert indices[0].tolist() == [1, 2]  # cos(0,1)≈0.9988, cos(0,2)=0, cos(0,3)=-1
    assert indices[1][0] == 0
    assert indices[2][0] == 1  # cos(2,1)=0.1/|(2,0.1)|≈0.05 beats 0 and 3 (cos 0)
    assert indices[3].tolist() == [2, 1]  # cos(3,2)=0, cos(3,1)≈-0.9988, cos(3,0)=-1
    cos_01 = 2.0 / math.hypot(2.0, 0.1)
    np.testing.assert_allclose(sims[0], [cos_01, 0.0], atol=1e-6)
    np.testing.assert_allclose(sims[3], [0.0, -cos_01], atol=1e-6)


def test_item_neighbours_never_self_and_clipped() -> None:
    indices, sims = item_neighbours(ITEM_FACTORS, 10)
    assert indices.shape == (4, 3)
    for item, row in enumerate(indices.tolist()):
        assert sorted(row) == sorted(set(range(4)) - {item})
    assert np.all(np.diff(sims, axis=1) <= 1e-7)  # best first
    assert np.all(np.isfinite(sims))


def test_item_neighbours_batching_gives_the_same_answer() -> None:
    rng = np.random.default_rng(2)
    factors = rng.normal(size=(37, 6)).astype(np.float32)
    whole_idx, whole_sims = item_neighbours(factors, 5)
    batch_idx, batch_sims = item_neighbours(factors, 5, batch=4)
    np.testing.assert_array_equal(whole_idx, batch_idx)
    np.testing.assert_allclose(whole_sims, batch_sims, rtol=1e-5)
    assert not np.any(batch_idx == np.arange(37)[:, None])


def test_item_neighbours_asks_before_every_block_and_stops_when_told() -> None:
    factors = np.random.default_rng(4).normal(size=(10, 4)).astype(np.float32)
    asked: list[int] = []

    def on_the_second_ask() -> bool:
        asked.append(1)
        return len(asked) == 2

    with pytest.raises(TrainingCancelled, match="4 of 10 items done"):
        item_neighbours(factors, 3, batch=4, should_stop=on_the_second_ask)
    assert len(asked) == 2
    asked.clear()

    def never() -> bool:
        asked.append(1)
        return False

    indices, _ = item_neighbours(factors, 3, batch=4, should_stop=never)
    assert len(asked) == 3 and indices.shape == (10, 3)  # blocks of 4, 4 and 2 rows


def test_item_neighbours_degenerate_sizes() -> None:
    indices, sims = item_neighbours(ITEM_FACTORS[:1], 5)
    assert indices.shape == (1, 0) and sims.shape == (1, 0)
    indices, _ = item_neighbours(ITEM_FACTORS[:2], 5)
    assert indices.tolist() == [[1], [0]]


def test_item_neighbours_only_among_eligible_items() -> None:
    rng = np.random.default_rng(3)
    factors = rng.normal(size=(12, 5)).astype(np.float32)
    eligible = np.zeros(12, dtype=bool)
    eligible[[1, 4, 5, 9]] = True
    indices, sims = item_neighbours(factors, 5, eligible=eligible)
    assert indices.shape == (12, 5)
    for item in range(12):
        if eligible[item]:
            # Three other eligible items, best first; the two spare slots say "no neighbour".
            assert set(indices[item, :3].tolist()) == {1, 4, 5, 9} - {item}
            assert indices[item, 3:].tolist() == [12, 12] and sims[item, 3:].tolist() == [0.0, 0.0]
        else:
            assert indices[item].tolist() == [12] * 5 and not sims[item].any()
    # The eligible items' neighbours and similarities are those of the eligible sub-matrix.
    sub_indices, sub_sims = item_neighbours(factors[eligible], 3)
    members = np.flatnonzero(eligible)
    np.testing.assert_array_equal(indices[members, :3], members[sub_indices])
    np.testing.assert_allclose(sims[members, :3], sub_sims, rtol=1e-5)
    # "No neighbour" slots contribute nothing to a user's neighbour scores.
    scores, anchors = neighbour_scores(12, np.array([0, 4]), indices, sims)
    assert scores.shape == (12,) and not scores[~eligible].any()
    assert (anchors[~eligible] == -1).all()
    positive = [int(i) for i, sim in zip(indices[4], sims[4], strict=True) if sim > 0]
    assert positive and all(anchors[i] == 4 for i in positive)


# --- train_bpr ---------------------------------------------------------------------------------------------


LIKES = sp.csr_matrix(
    np.array([[1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0]], dtype=np.float32)
)  # 3 users x 5 items


def test_train_bpr_shapes_and_determinism() -> None:
    params = BPRParams(factors=4, iterations=3)
    users, items = train_bpr(LIKES, params)
    assert users.shape == (3, 5)
    assert items.shape == (5, 5)
    assert users.dtype == items.dtype == np.float32
    again_users, again_items = train_bpr(LIKES, params)
    np.testing.assert_array_equal(users, again_users)
    np.testing.assert_array_equal(items, again_items)


def test_train_bpr_asks_after_every_iteration_and_stops_when_told() -> None:
    params = BPRParams(factors=4, iterations=50)
    asked: list[bool] = []

    def never() -> bool:
        asked.append(False)
        return False

    train_bpr(LIKES, params, should_stop=never)
    assert len(asked) == 50

    asked.clear()

    def on_the_third_ask() -> bool:
        asked.append(len(asked) == 2)
        return asked[-1]

    with pytest.raises(TrainingCancelled, match="after 3 of 50"):
        train_bpr(LIKES, params, should_stop=on_the_third_ask)
    assert len(asked) == 3


# --- evaluation --------------------------------------------------------------------------------------------


def test_recent_holdout_mask_picks_most_recent() -> None:
    timestamps = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    assert recent_holdout_mask(timestamps, 0.4).tolist() == [True, False, True, False, False]
    assert recent_holdout_mask(timestamps, 0.2).tolist() == [True, False, False, False, False]


def test_recent_holdout_mask_bounds() -> None:
    assert recent_holdout_mask(np.array([1.0]), 0.5).tolist() == [False]
    assert recent_holdout_mask(np.array([]), 0.5).size == 0
    assert not recent_holdout_mask(np.array([1.0, 2.0, 3.0]), 0.0).any()
    # At least one when there are two or more...
    assert recent_holdout_mask(np.array([1.0, 2.0, 3.0]), 0.01).tolist() == [False, False, True]
    # ...and never everything: one entry always stays for training.
    assert recent_holdout_mask(np.array([3.0, 1.0, 2.0]), 1.0).tolist() == [True, False, True]


def test_dcg_discounts() -> None:
    np.testing.assert_allclose(dcg_discounts(3), [1.0, 1 / math.log2(3), 0.5])


def test_evaluate_at_k_hand_computed() -> None:
    item_factors = np.eye(4)
    user_factors = np.array([[4.0, 3.0, 2.0, 1.0], [0.0, 0.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
    train = {0: np.array([0])}
    heldout = {
        0: np.array([2]),  # ranking 0,1,2,3 minus train item 0 -> top2 [1, 2]: hit at rank 2
        1: np.array([3, 1]),  # ranking 3,2,... -> top2 [3, 2]: hit at rank 1 out of 2 relevant
        2: np.array([], dtype=np.int64),  # no held-out items: not evaluated
    }
    metrics = evaluate_at_k(user_factors, item_factors, train, heldout, k=2)
    assert metrics.users_evaluated == 2
    assert metrics.precision_at_10 == pytest.approx(0.5)
    ndcg_user0 = (1 / math.log2(3)) / 1.0
    ndcg_user1 = 1.0 / (1.0 + 1 / math.log2(3))
    assert metrics.ndcg_at_10 == pytest.approx((ndcg_user0 + ndcg_user1) / 2)


def test_evaluate_at_k_perfect_and_empty() -> None:
    item_factors = np.eye(3)
    user_factors = np.array([[3.0, 2.0, 1.0]])
    perfect = evaluate_at_k(user_factors, item_factors, {}, {0: np.array([0, 1])}, k=2)
    assert (perfect.precision_at_10, perfect.ndcg_at_10, perfect.users_evaluated) == (1.0, 1.0, 1)
    # Precision divides by k even when fewer than k items can be ranked.
    short = evaluate_at_k(user_factors, item_factors, {}, {0: np.array([0])}, k=10)
    assert short.precision_at_10 == pytest.approx(0.1)
    assert short.ndcg_at_10 == pytest.approx(1.0)
    nothing = evaluate_at_k(user_factors, item_factors, {}, {}, k=10)
    assert (nothing.precision_at_10, nothing.ndcg_at_10, nothing.users_evaluated) == (0.0, 0.0, 0)
