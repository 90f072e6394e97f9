"""Oracle and perfect popularity on a catalog of 8 items with k = 3, computed by hand."""

from __future__ import annotations

import pytest

from grader.catalog import Catalog, CatalogItem
from grader.reference import (
    compute_references,
    oracle_lists,
    popularity_lists,
    popularity_ranking,
    share_of,
)
from grader.simulation import SimulatedUser

K = 3
CATALOG = Catalog(tuple(CatalogItem(name, n, name.upper(), ()) for n, name in enumerate("abcdefgh")))
USERS = [
    SimulatedUser(0, "u0", 1, frozenset({"f", "c"}), frozenset()),
    SimulatedUser(1, "u1", 2, frozenset({"h", "g", "f"}), frozenset()),
    SimulatedUser(2, "u2", 3, frozenset(), frozenset({"a"})),
]


def test_popularity_ranking_counts_likes_ties_in_catalog_order() -> None:
    # f is liked twice, c, g, h once, the rest never.
    assert popularity_ranking(USERS, CATALOG) == list("fcghabde")


def test_popularity_lists_walk_the_ranking() -> None:
    assert popularity_lists(list("fcghabde"), calls=3, k=K) == [list("fcg"), list("hab"), list("de")]


def test_oracle_shows_relevant_unseen_items_first() -> None:
    assert oracle_lists(USERS[0], CATALOG, calls=2, k=K) == [list("cfa"), list("bde")]
    assert oracle_lists(USERS[1], CATALOG, calls=2, k=K) == [list("fgh"), list("abc")]
    assert oracle_lists(USERS[2], CATALOG, calls=2, k=K) == [list("abc"), list("def")]


def test_reference_metrics_hand_computed() -> None:
    refs = compute_references(USERS, CATALOG, calls_per_user=2, k=K)
    # Oracle hits per call: u0 2, 0; u1 3, 0; u2 0, 0 -> (2/3 + 1) / 6
    assert refs.oracle.precision == pytest.approx(5 / 18)
    # NDCG 1 for the two first calls that had relevant items, 0 where none was left (ideal DCG 0).
    assert refs.oracle.ndcg == pytest.approx(2 / 6)
    # Popularity: u0 [f c g] 2 hits, [h a b] 0; u1 [f c g] 2 hits (f, g), [h a b] 1 hit (h); u2 none.
    assert refs.popularity.precision == pytest.approx(5 / 18)
    # NDCG: u0 1, 0; u1 1.5 / (1 + 1/log2(3) + 1/2), then 1 (h was the only relevant item left); u2 0, 0
    assert refs.popularity.ndcg == pytest.approx((1 + 0.7039180890341347 + 1) / 6)
    assert refs.oracle.calls == refs.popularity.calls == 6
    assert refs.popularity.unique_items == 6
    assert refs.oracle.unique_items == 8


def test_share_of() -> None:
    assert share_of(0.05, 0.2) == pytest.approx(25.0)
    assert share_of(0.05, 0.0) is None
