"""Twins (users who answered like this one) on small hand-made cases, and their lift in the blend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Unpack

import numpy as np
import pytest
import scipy.sparse as sp

import recsys_core.algorithms.twins as twins_module
import recsys_core.strategies.blend as blend
from recsys_core.algorithms.bandit import ItemStats
from recsys_core.algorithms.twins import (
    DISLIKE,
    LIKE,
    SILENT,
    DenseTwinLift,
    ReactionBook,
    ReactionMatrix,
    TwinLift,
    TwinParams,
    link_order,
)
from recsys_core.catalog import CatalogView
from recsys_core.strategies.base import DrawCache, RecommendationContext, UserProfile
from recsys_core.strategies.blend import BlendParams, BlendStrategy
from tests.support.blend import count_blend_selections
from tests.support.params import BlendOverrides, TwinOverrides

# The query user's world: four items they liked and two they were shown without answering.
LIKES = ["l1", "l2", "l3", "l4"]
SILENTS = ["s1", "s2"]
QUERY_SHOWN = LIKES + SILENTS
# A min_mass that keeps every item some candidate was shown (0 would also keep items nobody was shown: see below).
KEEP_ANY = 1e-9


def _book(fillers: int = 40) -> ReactionBook:
    """A book where many users were shown the query's items and liked none: likes on them are rare, so a
    shared like is strong evidence (and fillers share no like, so they are never candidates). Half of them
    disliked s1: silence there is no foregone answer, so a like on s1 does disagree with a silence."""
    book = ReactionBook(max_users=1000)
    for f in range(fillers):
        book.record(f"f{f}", shown=QUERY_SHOWN, liked=[], disliked=["s1"] if f % 2 else [])
    return book


def _lift(matrix: ReactionMatrix, user_id: str = "q", params: TwinParams | None = None) -> TwinLift | None:
    return matrix.lift(user_id, shown=QUERY_SHOWN, liked=LIKES, disliked=[], params=params or TwinParams())


def _as_dict(lift: TwinLift) -> dict[str, tuple[float, float]]:
    return {
        item: (liked, shown)
        for item, liked, shown in zip(lift.item_ids, lift.liked.tolist(), lift.shown.tolist(), strict=True)
    }


def _reactions(book: ReactionBook, user_id: str) -> dict[str, int]:
    found = book.reactions_of(user_id)
    assert found is not None
    item_ids = book.matrix().item_ids
    positions, codes = found
    return {item_ids[p]: c for p, c in zip(positions.tolist(), codes.tolist(), strict=True)}


# --- ReactionMatrix.lift ---


def test_an_exact_twin_lends_its_likes_and_its_silences() -> None:
    """A user who answered exactly as the query on every shared item: their other like rises (liked mass), what
    they were shown without liking sinks (shown mass, no liked mass)."""
    book = _book()
    book.record("twin", shown=[*QUERY_SHOWN, "gem", "dud"], liked=[*LIKES, "gem"], disliked=[])
    lift = _lift(book.matrix())
    assert lift is not None
    masses = _as_dict(lift)
    assert set(masses) == {"gem", "dud"}
    gem_liked, gem_shown = masses["gem"]
    dud_liked, dud_shown = masses["dud"]
    assert gem_liked > 0.5 and gem_shown >= gem_liked
    assert dud_shown > 0.5 and dud_liked == pytest.approx(0.0, abs=1e-6)
    assert lift.liked.dtype == np.float32 and lift.shown.dtype == np.float32


@pytest.mark.parametrize(
    "conflict",
    [
        pytest.param(
            {"shown": ["l4"], "liked": []},  # silent on an item the query liked
            id="silent on a query like",
        ),
        pytest.param({"shown": ["s1"], "liked": ["s1"]}, id="liked a query silence"),
    ],
)
def test_a_candidate_that_disagrees_weighs_far_less_than_one_that_agrees(conflict: dict[str, list[str]]) -> None:
    # Both candidates share the same three likes; only "contrary" also contradicts the query on one item.
    book = _book()
    book.record("agrees", shown=[*LIKES[:3], "s1", "gem"], liked=[*LIKES[:3], "gem"], disliked=[])
    book.record(
        "contrary",
        shown=[*LIKES[:3], "s1", *conflict["shown"], "odd"],
        liked=[*LIKES[:3], *conflict["liked"], "odd"],
        disliked=[],
    )
    lift = _lift(book.matrix(), params=TwinParams(min_mass=KEEP_ANY))
    assert lift is not None
    masses = _as_dict(lift)
    gem, odd = masses["gem"][0], masses.get("odd", (0.0, 0.0))[0]
    # Against an agreement (or no answer), one disagreement at noise 0.05 should cost a factor of about 20 in the odds.
    assert gem > 10 * odd
    assert gem > 0.3


def test_more_agreeing_likes_on_rare_items_mean_a_surer_twin() -> None:
    def gem_mass(shared: int) -> float:
        book = _book()
        book.record("twin", shown=[*LIKES[:shared], "gem"], liked=[*LIKES[:shared], "gem"], disliked=[])
        lift = _lift(book.matrix(), params=TwinParams(min_mass=KEEP_ANY, min_weight=0.0))
        assert lift is not None
        return _as_dict(lift)["gem"][0]

    masses = [gem_mass(shared) for shared in (1, 2, 3, 4)]
    assert masses == sorted(masses) and masses[0] < 0.1 < 0.9 < masses[-1]


def test_shared_dislikes_are_evidence_too() -> None:
    def odd_mass(disliked: list[str]) -> float:
        book = _book()
        book.record("c", shown=["l1", *disliked, "odd"], liked=["l1", "odd"], disliked=disliked)
        lift = book.matrix().lift(
            "q", shown=QUERY_SHOWN, liked=["l1"], disliked=["l2", "l3"], params=TwinParams(min_mass=KEEP_ANY)
        )
        assert lift is not None
        return _as_dict(lift)["odd"][0]

    # Nobody else disliked l2 or l3: agreeing on both turns a weak candidate into a likely twin.
    assert odd_mass(["l2", "l3"]) > 0.5 > 0.05 > odd_mass([])


def test_no_candidate_sharing_a_like_gives_no_lift() -> None:
    book = _book()
    # Shown the query's likes but disliked or ignored them; liked only items the query was silent on or never saw.
    book.record("hater", shown=LIKES, liked=[], disliked=LIKES)
    book.record("other taste", shown=["s1", "x"], liked=["s1", "x"], disliked=[])
    assert _lift(book.matrix()) is None


def test_a_user_who_shares_only_silences_is_no_candidate() -> None:
    book = _book()
    # Silent on s1 and s2 as the query was, and liked an item the query never saw: no shared like.
    book.record("quiet", shown=["s1", "s2", "odd"], liked=["odd"], disliked=[])
    assert _lift(book.matrix(), params=TwinParams(min_mass=KEEP_ANY)) is None


def test_a_twins_dislike_is_shown_mass_and_never_liked_mass() -> None:
    book = _book()
    book.record("twin", shown=[*QUERY_SHOWN, "gem", "bad"], liked=[*LIKES, "gem"], disliked=["bad"])
    lift = _lift(book.matrix())
    assert lift is not None
    bad_liked, bad_shown = _as_dict(lift)["bad"]
    assert bad_shown > 0.5 and bad_liked == 0.0


def test_one_shared_like_weighs_the_prior_times_its_rarity_by_hand() -> None:
    book = _book()  # 40 users shown l1 without liking it
    book.record("t", shown=["l1", "gem"], liked=["l1", "gem"], disliked=[])
    lift = _lift(book.matrix())
    assert lift is not None
    # P(like l1) over the 41 users shown it, smoothed: (1 + 0.5) / (41 + 2). The agreement multiplies the prior
    # odds 1e-3 by 0.95 / p + 0.05; the weight is odds / (1 + odds), and gem's liked and shown mass both equal it.
    odds = 1e-3 * (0.95 / (1.5 / 43) + 0.05)
    weight = odds / (1 + odds)
    gem_liked, gem_shown = _as_dict(lift)["gem"]
    assert gem_liked == pytest.approx(weight, rel=1e-5) and gem_shown == pytest.approx(weight, rel=1e-5)


def test_a_user_without_likes_gets_no_lift() -> None:
    book = _book()
    book.record("twin", shown=[*QUERY_SHOWN, "gem"], liked=[*LIKES, "gem"], disliked=[])
    matrix = book.matrix()
    assert matrix.lift("q", shown=QUERY_SHOWN, liked=[], disliked=["l1"], params=TwinParams()) is None
    # Likes only of items nobody in the book was shown say nothing either.
    assert matrix.lift("q", shown=["new"], liked=["new"], disliked=[], params=TwinParams()) is None
    assert _lift(matrix) is not None  # the same book does answer a user with likes


def test_a_user_with_only_dislikes_is_matched_on_them_unless_switched_off() -> None:
    book = _book()
    book.record("twin", shown=["l1", "l2", "l3", "gem"], liked=["gem"], disliked=["l1", "l2", "l3"])
    matrix = book.matrix()

    def lift(match_dislikes: bool) -> TwinLift | None:
        params = TwinParams(match_dislikes=match_dislikes)
        return matrix.lift("q", shown=QUERY_SHOWN, liked=[], disliked=["l1", "l2", "l3"], params=params)

    matched = lift(True)
    assert matched is not None and _as_dict(matched)["gem"][0] > 0.5
    assert lift(False) is None


def test_the_user_is_never_their_own_twin() -> None:
    # The book remembers an older like of the query user's that the query itself does not repeat.
    book = _book()
    book.record("q", shown=[*QUERY_SHOWN, "old"], liked=[*LIKES, "old"], disliked=[])
    matrix = book.matrix()
    assert _lift(matrix, "q") is None
    # Any other user with the same answers would find "q" and its "old" like.
    other = _lift(matrix, "someone else")
    assert other is not None and "old" in other.item_ids


@pytest.mark.parametrize(
    "min_mass",
    [
        KEEP_ANY,
        pytest.param(
            0.0,
        ),
    ],
)
def test_items_the_user_was_shown_never_appear_in_the_lift(min_mass: float) -> None:
    book = _book()
    book.record("twin", shown=[*QUERY_SHOWN, "gem", "seen"], liked=[*LIKES, "gem", "seen"], disliked=["s2"])
    matrix = book.matrix()
    params = TwinParams(min_mass=min_mass)
    lift = matrix.lift("q", shown=[*QUERY_SHOWN, "seen"], liked=LIKES, disliked=[], params=params)
    assert lift is not None
    assert not set(lift.item_ids) & {*QUERY_SHOWN, "seen"}
    assert set(lift.item_ids) == {"gem"}


def test_max_candidates_keeps_those_sharing_the_most_likes() -> None:
    book = _book()
    book.record("close", shown=[*LIKES, "gem"], liked=[*LIKES, "gem"], disliked=[])
    book.record("far", shown=["l1", "odd"], liked=["l1", "odd"], disliked=[])
    loose = TwinParams(min_weight=0.0, min_mass=KEEP_ANY)
    everyone = _lift(book.matrix(), params=loose)
    one = _lift(book.matrix(), params=replace(loose, max_candidates=1))
    assert everyone is not None and one is not None
    assert {"gem", "odd"} <= set(everyone.item_ids)
    assert set(one.item_ids) == {"gem"}


def test_min_mass_leaves_out_items_few_twins_were_shown() -> None:
    book = _book()
    book.record("sure", shown=[*LIKES, "gem"], liked=[*LIKES, "gem"], disliked=[])
    book.record("unsure", shown=["l1", "odd"], liked=["l1", "odd"], disliked=[])
    kept = _lift(book.matrix(), params=TwinParams(min_weight=0.0, min_mass=KEEP_ANY))
    assert kept is not None
    odd_shown = _as_dict(kept)["odd"][1]
    assert 0.0 < odd_shown < 0.5
    pruned = _lift(book.matrix(), params=TwinParams(min_weight=0.0, min_mass=odd_shown * 1.01))
    assert pruned is not None and "odd" not in pruned.item_ids and "gem" in pruned.item_ids


def test_max_items_keeps_the_items_with_the_most_shown_mass() -> None:
    book = _book()
    book.record("sure", shown=[*LIKES, "gem"], liked=[*LIKES, "gem"], disliked=[])
    book.record("unsure", shown=["l1", "odd"], liked=["l1", "odd"], disliked=[])
    everything = _lift(book.matrix(), params=TwinParams(min_weight=0.0, min_mass=KEEP_ANY))
    assert everything is not None and {"gem", "odd"} <= set(everything.item_ids)
    one = _lift(book.matrix(), params=TwinParams(min_weight=0.0, min_mass=KEEP_ANY, max_items=1))
    assert one is not None and one.item_ids == ("gem",)


# --- ReactionBook ---


def test_record_keeps_the_strongest_answer_per_item() -> None:
    book = ReactionBook(max_users=10)
    book.record("u", shown=["a", "b", "c"], liked=["a"], disliked=["a", "b"])
    # A like overrides a dislike, a dislike overrides silence; a liked item counts as shown even if not listed.
    assert _reactions(book, "u") == {"a": LIKE, "b": DISLIKE, "c": SILENT}
    book.record("v", shown=[], liked=["d"], disliked=[])
    assert _reactions(book, "v") == {"d": LIKE}


def test_record_replaces_what_the_book_knew_of_the_user() -> None:
    book = ReactionBook(max_users=10)
    book.record("u", shown=["a", "b"], liked=["a"], disliked=[])
    book.record("u", shown=["c"], liked=[], disliked=["c"])
    assert len(book) == 1
    assert _reactions(book, "u") == {"c": DISLIKE}
    matrix = book.matrix()
    assert matrix.user_ids == ("u",)
    assert matrix.csr.nnz == 1


def test_the_book_drops_the_user_who_answered_least_recently() -> None:
    book = ReactionBook(max_users=2)
    book.record("u1", shown=["a"], liked=["a"], disliked=[])
    book.record("u2", shown=["a"], liked=[], disliked=[])
    book.record("u1", shown=["b"], liked=["b"], disliked=[])  # u1 answered again: now the newest
    book.record("u3", shown=["c"], liked=[], disliked=[])
    assert len(book) == 2
    assert book.reactions_of("u2") is None
    assert book.matrix().user_ids == ("u1", "u3")


def test_users_restored_after_a_restart_are_older_than_live_ones_and_never_override_them() -> None:
    book = ReactionBook(max_users=3)
    book.record("live", shown=["a"], liked=["a"], disliked=[])  # answered since the restart
    # The restore reads users the most recent first; each goes in as the oldest so far.
    assert book.restore("recent", shown=["b"], liked=["b"], disliked=[])
    assert not book.restore("live", shown=["z"], liked=[], disliked=["z"])  # the live record is newer
    assert book.restore("older", shown=["c"], liked=[], disliked=[])
    assert not book.restore("oldest", shown=["d"], liked=["d"], disliked=[])  # full: the oldest do not fit
    assert book.matrix().user_ids == ("older", "recent", "live")
    assert _reactions(book, "live") == {"a": LIKE}
    book.record("new", shown=["e"], liked=["e"], disliked=[])  # a live answer drops the oldest restored user
    assert book.matrix().user_ids == ("recent", "live", "new")


def test_a_linked_user_carries_its_twins_answers_and_its_own_win() -> None:
    book = ReactionBook(max_users=10)
    book.record("first", shown=["a", "b", "c"], liked=["a", "c"], disliked=[])
    book.record("second", shown=["a", "b", "d"], liked=["a"], disliked=["b"])
    assert book.link("second", "first")
    # The twin's c comes along; where both answered (a, b) the user's own answer stays.
    assert _reactions(book, "second") == {"a": LIKE, "b": DISLIKE, "c": LIKE, "d": SILENT}
    assert _reactions(book, "first") == {"a": LIKE, "b": SILENT, "c": LIKE}
    # A new answer of the linked user is merged again with the twin's row.
    book.record("second", shown=["a", "b", "d", "e"], liked=["a", "e"], disliked=["b"])
    assert _reactions(book, "second") == {"a": LIKE, "b": DISLIKE, "c": LIKE, "d": SILENT, "e": LIKE}
    # Chains carry everything: a third visit linked to the second gets the first's answers too.
    book.record("third", shown=["f"], liked=["f"], disliked=[])
    assert book.link("third", "second")
    assert set(_reactions(book, "third")) == {"a", "b", "c", "d", "e", "f"}
    assert book.linked_users == 2
    assert not book.link("third", "third") and not book.link("third", "nobody")


def test_a_chain_of_links_cannot_grow_a_row_past_the_cap() -> None:
    book = ReactionBook(max_users=10, max_linked_row=4)
    book.record("first", shown=["a", "b", "c", "d"], liked=["a"], disliked=["b"])
    book.record("second", shown=["e", "f", "g"], liked=["e", "f"], disliked=[])
    assert book.link("second", "first")
    # Over the cap: the twin's silent c and d go first, then its dislike b; its like a stays.
    assert _reactions(book, "second") == {"a": LIKE, "e": LIKE, "f": LIKE, "g": SILENT}
    # Own answers are never dropped, even past the cap; only the twin's are.
    book.record("third", shown=["i", "j", "k", "l", "m"], liked=["i"], disliked=[])
    assert book.link("third", "second")
    assert set(_reactions(book, "third")) == {"i", "j", "k", "l", "m"}


def test_a_linked_user_keeps_the_answers_of_a_twin_dropped_from_the_book() -> None:
    book = ReactionBook(max_users=2)
    book.record("twin", shown=["a", "b"], liked=["a", "b"], disliked=[])
    book.record("user", shown=["a", "c"], liked=["a"], disliked=[])
    assert book.link("user", "twin")
    book.record("newcomer", shown=["z"], liked=[], disliked=[])  # the book is full: the twin goes
    assert book.reactions_of("twin") is None
    book.record("user", shown=["a", "c", "d"], liked=["a", "d"], disliked=["c"])
    # The twin's b stays in the row (and the link counted); the user's own answers are the new ones.
    assert _reactions(book, "user") == {"a": LIKE, "b": LIKE, "c": DISLIKE, "d": LIKE}
    assert book.linked_users == 1


def test_links_restored_after_a_restart_carry_their_chains() -> None:
    answers = {"first": ["a"], "second": ["b"], "third": ["c"], "fourth": ["d"]}
    book = ReactionBook(max_users=10)
    for user, liked in answers.items():
        book.restore(user, shown=liked, liked=liked, disliked=[])
    book.record("fourth", shown=["d", "e"], liked=["d", "e"], disliked=[])
    assert book.link("fourth", "first")  # linked live since the restart: that newer link stays
    # Given in an order where each user comes before its twin: the twin's link must be restored first.
    links = {"third": "second", "second": "first", "fourth": "third", "ghost": "first"}
    made = sum(book.restore_link(user, twin) for user, twin in link_order(links))
    assert made == 2  # "ghost" is not in the book; "fourth" keeps its live link
    assert set(_reactions(book, "second")) == {"a", "b"}
    assert set(_reactions(book, "third")) == {"a", "b", "c"}
    assert set(_reactions(book, "fourth")) == {"a", "d", "e"}
    assert book.linked_users == 3


def test_only_the_latest_viewers_of_an_item_are_looked_at() -> None:
    book = ReactionBook(max_users=10)
    # The oldest user answered exactly like the query; two later users were shown the same items and liked
    # only "a". Looking at the latest two viewers per item, the oldest is out of sight.
    book.record("oldest", shown=["a", "b", "gem"], liked=["a", "b", "gem"], disliked=[])
    book.record("later-1", shown=["a", "b", "dud-1"], liked=["a", "dud-1"], disliked=[])
    book.record("later-2", shown=["a", "b", "dud-2"], liked=["a", "dud-2"], disliked=[])
    matrix = book.matrix()
    everyone = matrix.lift("user", ["a", "b"], ["a", "b"], [], TwinParams(prior=0.5, max_viewers_per_item=0))
    latest = matrix.lift("user", ["a", "b"], ["a", "b"], [], TwinParams(prior=0.5, max_viewers_per_item=2))
    assert everyone is not None and "gem" in everyone.item_ids
    assert latest is not None and "gem" not in latest.item_ids and {"dud-1", "dud-2"} <= set(latest.item_ids)
    with pytest.raises(ValueError, match="max_viewers_per_item"):
        TwinParams(max_viewers_per_item=-1)


def _links_before_their_twins(ordered: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The links restored before their twin's own link (a twin with no link of its own is never waited on)."""
    position = {user: n for n, (user, _) in enumerate(ordered)}
    return {(user, twin) for user, twin in ordered if twin in position and position[twin] > position[user]}


def test_link_order_puts_every_twin_first_and_cuts_each_cycle_once_at_its_entry() -> None:
    # A chain c -> b -> a, a two-cycle x <-> y, a tail d into the chain; a three-cycle p -> q -> r -> p entered
    # from a tail t (so at r); and the reviewer's case: m <-> n with o -> m, entered at m.
    links = {
        "c": "b",
        "b": "a",
        "x": "y",
        "y": "x",
        "d": "c",
        "t": "r",
        "p": "q",
        "q": "r",
        "r": "p",
        "m": "n",
        "n": "m",
        "o": "m",
    }
    ordered = link_order(links)
    assert sorted(ordered) == sorted(links.items())  # every link once
    # Outside cycles every twin's link comes first; each cycle has exactly one link before its twin's: the
    # one to the user where the walk entered it (x from x, r from t, m from m), whose own link is its cycle's last.
    assert _links_before_their_twins(ordered) == {("y", "x"), ("q", "r"), ("n", "m")}
    assert ordered[-3:] == [("n", "m"), ("m", "n"), ("o", "m")]


def test_a_cycle_of_links_restores_every_link_and_both_rows_carry_both_users() -> None:
    book = ReactionBook(max_users=10)
    for user, liked in {"x": ["a"], "y": ["b"]}.items():
        book.restore(user, shown=liked, liked=liked, disliked=[])
    made = sum(book.restore_link(user, twin) for user, twin in link_order({"x": "y", "y": "x"}))
    assert made == 2
    assert set(_reactions(book, "x")) == set(_reactions(book, "y")) == {"a", "b"}


def test_a_twin_sure_enough_is_named_by_the_lift() -> None:
    book = ReactionBook(max_users=10)
    for filler in range(20):  # users who saw a and b and liked neither: liking them is rare
        book.record(f"filler-{filler}", shown=["a", "b"], liked=[], disliked=[])
    book.record("earlier", shown=["a", "b", "c"], liked=["a", "b", "c"], disliked=[])
    matrix = book.matrix()
    lift = matrix.lift("user", ["a", "b"], ["a", "b"], [], TwinParams(prior=0.5, link_weight=0.9))
    assert lift is not None and lift.sure_twin == "earlier"
    # Not part of what is published.
    assert TwinLift.from_text(lift.to_text()).sure_twin is None
    # Never named at link_weight 1, however sure; nor when the twin weighs less than link_weight.
    at_one = matrix.lift("user", ["a", "b"], ["a", "b"], [], TwinParams(prior=1e30, link_weight=1.0))
    assert at_one is not None and at_one.sure_twin is None
    lighter = matrix.lift("user", ["a", "b"], ["a", "b"], [], TwinParams(prior=1e-3, link_weight=0.9))
    assert lighter is not None and lighter.sure_twin is None


def test_the_matrix_is_a_snapshot() -> None:
    book = ReactionBook(max_users=10)
    book.record("u", shown=["a"], liked=["a"], disliked=[])
    matrix = book.matrix()
    book.record("v", shown=["b"], liked=["b"], disliked=[])
    assert matrix.user_ids == ("u",) and matrix.csr.shape == (1, 1)
    assert ReactionBook(max_users=3).matrix().csr.shape == (0, 0)


# --- TwinLift and DenseTwinLift ---


def test_twin_lift_text_round_trip() -> None:
    lift = TwinLift(
        ("a", "item-42", "z"),
        np.array([0.5, 0.0, 0.123456], dtype=np.float32),
        np.array([0.75, 1.0, 0.2], dtype=np.float32),
    )
    text = lift.to_text()
    assert text.splitlines() == ["a\titem-42\tz", "0.5 0 0.1235", "0.75 1 0.2"]
    back = TwinLift.from_text(text)
    assert back.item_ids == lift.item_ids
    assert back.liked.dtype == np.float32 and back.shown.dtype == np.float32
    # Four significant digits are kept: compact, and plenty for a ranking.
    np.testing.assert_allclose(back.liked, lift.liked, rtol=1e-3)
    np.testing.assert_allclose(back.shown, lift.shown, rtol=1e-3)
    with pytest.raises(ValueError):
        TwinLift.from_text("a\tb\n0.5\n0.5 0.5")
    empty = TwinLift.from_text(TwinLift((), np.empty(0, np.float32), np.empty(0, np.float32)).to_text())
    assert empty.item_ids == () and empty.liked.size == 0


def test_dense_lift_ignores_unknown_ids() -> None:
    lift = TwinLift(
        ("b", "gone", "a", "late"),
        np.array([0.1, 0.9, 0.3, 0.8], dtype=np.float32),
        np.array([0.2, 0.9, 0.4, 0.8], dtype=np.float32),
    )
    # "late" has an index position beyond the catalog the blend ranks (an item newer than its view).
    dense = DenseTwinLift.over(lift, {"a": 0, "b": 2, "late": 3}, n_items=3)
    assert dense is not None
    np.testing.assert_array_equal(dense.liked, np.array([0.3, 0.0, 0.1], dtype=np.float32))
    np.testing.assert_array_equal(dense.shown, np.array([0.4, 0.0, 0.2], dtype=np.float32))


def test_dense_lift_is_none_when_no_id_is_known() -> None:
    lift = TwinLift(("x", "y"), np.array([0.5, 0.5], np.float32), np.array([0.5, 0.5], np.float32))
    assert DenseTwinLift.over(lift, {"a": 0}, n_items=1) is None
    assert DenseTwinLift.over(TwinLift((), np.empty(0, np.float32), np.empty(0, np.float32)), {"a": 0}, 1) is None


# --- TwinParams ---


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"prior": 0.0}, "prior"),
        ({"noise": 0.0}, "noise"),
        ({"noise": 0.5}, "noise"),
        ({"noise": 0.7}, "noise"),
        ({"prior": -1.0, "noise": 0.9}, "noise"),
        ({"max_candidates": 0}, "max_candidates"),
        ({"max_items": 0}, "max_items"),
        ({"min_weight": 1.0}, "min_weight"),
        ({"min_mass": -0.1}, "min_mass"),
        ({"link_weight": 0.0}, "link_weight"),
        ({"link_weight": 1.5}, "link_weight"),
    ],
    ids=repr,
)
def test_twin_params_reject_invalid_values(values: TwinOverrides, named: str) -> None:
    TwinParams()  # the defaults are valid
    with pytest.raises(ValueError, match=named):
        TwinParams(**values)


# --- the blend with a twin lift ---

# Only the bandit and the twins decide the order here.
NO_PERSONAL: BlendOverrides = {
    "neighbour_weight": 0.0,
    "bpr_weight": 0.0,
    "taste_weight": 0.0,
    "dislike_neighbour_weight": 0.0,
}
N = 20


def _catalog(n: int) -> CatalogView:
    ids = [f"i{i}" for i in range(n)]
    return CatalogView.build(1, ids, {item: ["Drama"] for item in ids})


def _stats(n: int) -> ItemStats:
    """Well-measured evidence: item 0 is liked most, then item 1, and so on down to a floor."""
    impressions = np.full(n, 2000.0, dtype=np.float32)
    likes = np.maximum(np.linspace(600, 20, n), 100).astype(np.float32)
    return ItemStats(likes, np.zeros(n, dtype=np.float32), impressions)


def _context(
    twins: DenseTwinLift | None, *, n: int = N, shown: Sequence[int] = (), seed: int = 0
) -> RecommendationContext:
    mask = np.zeros(n, dtype=bool)
    mask[list(shown)] = True
    return RecommendationContext(
        user_id="u",
        catalog=_catalog(n),
        stats=_stats(n),
        model=None,
        profile=UserProfile(mask, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)),
        rng=np.random.default_rng(seed),
        k=5,
        twins=twins,
    )


def _dense(liked: dict[int, float], shown: dict[int, float], n: int = N) -> DenseTwinLift:
    dense_liked, dense_shown = np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
    for i, value in liked.items():
        dense_liked[i] = value
    for i, value in shown.items():
        dense_shown[i] = value
    return DenseTwinLift(dense_liked, dense_shown)


def _ranked(strategy: BlendStrategy, ctx: RecommendationContext, n: int = 5) -> list[int]:
    return [c.index for c in strategy.recommend(ctx, n)]


def _strategy(**params: Unpack[BlendOverrides]) -> BlendStrategy:
    merged: BlendOverrides = {"explore_slots": 0.0, **NO_PERSONAL, **params}
    return BlendStrategy(BlendParams(**merged))


def test_an_item_a_sure_twin_liked_ranks_first() -> None:
    strategy = _strategy()
    plain = _ranked(strategy, _context(None))
    assert plain[0] == 0 and 12 not in plain  # item 12 is unremarkable on its own
    lifted = _ranked(strategy, _context(_dense({12: 0.9}, {12: 0.9})))
    assert lifted[0] == 12
    assert lifted[1:] == plain[:4]  # the rest keeps its order


def test_an_item_a_sure_twin_was_shown_without_liking_drops_out() -> None:
    strategy = _strategy()
    assert _ranked(strategy, _context(None))[0] == 0
    ranked = _ranked(strategy, _context(_dense({}, {0: 1.0})), n=N - 1)
    assert 0 not in ranked


def test_twin_weight_zero_ignores_the_lift() -> None:
    twins = _dense({12: 0.9}, {12: 0.9, 0: 1.0})
    for seed in range(3):
        without = _ranked(_strategy(), _context(None, seed=seed))
        assert _ranked(_strategy(twin_weight=0.0), _context(twins, seed=seed)) == without
        assert _ranked(_strategy(), _context(twins, seed=seed)) != without  # the same lift does matter at 1


def test_an_item_the_user_was_shown_is_never_recommended_whatever_the_twins() -> None:
    ranked = _ranked(_strategy(), _context(_dense({12: 0.9}, {12: 0.9}), shown=[12]), n=N)
    assert 12 not in ranked and len(ranked) == N - 1


def test_exploration_slots_stay_with_under_shown_items_when_twins_lift_others() -> None:
    n = N
    stats = _stats(n)
    impressions = stats.impressions.copy()
    impressions[15:] = 2.0  # only items 15.. are under-shown
    stats = ItemStats(np.minimum(stats.likes, impressions), stats.dislikes, impressions)
    ctx = replace(_context(_dense({3: 0.9}, {3: 0.9})), stats=stats)
    strategy = _strategy(explore_slots=1.0, explore_below=10)
    explored = [c.index for c in strategy.recommend(ctx, 5) if c.source == "explore"]
    assert explored and all(i >= 15 for i in explored)


# --- the candidate universe stays exact with twins ---

N_WIDE = 400


def _wide_context(seed: int) -> RecommendationContext:
    rng = np.random.default_rng(seed)
    ids = [f"i{i}" for i in range(N_WIDE)]
    genres = ("Action", "Comedy", "Drama", "Horror")
    catalog = CatalogView.build(1, ids, {item: [genres[int(rng.integers(len(genres)))]] for item in ids})
    rate = rng.beta(0.3, 6.0, N_WIDE)
    impressions = np.where(rng.random(N_WIDE) < 0.3, 0, rng.geometric(0.05, N_WIDE)).astype(np.float32)
    likes = rng.binomial(impressions.astype(np.int64), rate).astype(np.float32)
    stats = ItemStats(likes, np.zeros(N_WIDE, dtype=np.float32), impressions)
    shown = np.zeros(N_WIDE, dtype=bool)
    shown[rng.choice(N_WIDE, size=30, replace=False)] = True
    liked = rng.choice(np.flatnonzero(shown), size=3, replace=False).astype(np.int64)
    # Twins were shown a few dozen items and liked some of them, anywhere in the catalog (mostly outside the head).
    twin_shown = np.zeros(N_WIDE, dtype=np.float32)
    twin_liked = np.zeros(N_WIDE, dtype=np.float32)
    items = rng.choice(N_WIDE, size=40, replace=False)
    twin_shown[items] = rng.uniform(0.05, 1.0, items.size)
    twin_liked[items] = twin_shown[items] * (rng.random(items.size) < 0.4) * rng.uniform(0.2, 1.0, items.size)
    return RecommendationContext(
        user_id="u",
        catalog=catalog,
        stats=stats,
        model=None,
        profile=UserProfile(shown, liked, np.empty(0, dtype=np.int64)),
        rng=rng,
        k=10,
        twins=DenseTwinLift(twin_liked, twin_shown),
    )


def _answers(strategy: BlendStrategy, ctx: RecommendationContext, n: int, draw_seed: int) -> list[tuple[int, str]]:
    ctx = replace(ctx, rng=np.random.default_rng(draw_seed), draws=DrawCache())
    return [(c.index, c.source) for c in strategy.recommend(ctx, n)]


@pytest.mark.parametrize("params", [{}, {"twin_weight": 0.5}, {"explore_below": 10, "explore_slots": 2.0}], ids=repr)
def test_the_candidate_universe_with_twins_answers_exactly_as_ranking_every_arm(
    params: BlendOverrides, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy = BlendStrategy(BlendParams(**params))
    outcomes = count_blend_selections(monkeypatch)
    twin_items_outside_the_head = 0
    for seed in range(6):
        ctx = _wide_context(seed)
        assert ctx.twins is not None
        for n in (10, 30):
            monkeypatch.setattr(blend, "HEAD_SIZE", N_WIDE)  # every arm
            expected = _answers(strategy, ctx, n, draw_seed=seed)
            monkeypatch.setattr(blend, "HEAD_SIZE", 32)
            assert _answers(strategy, ctx, n, draw_seed=seed) == expected, (seed, n)
            # The comparison is only worth something if twin-liked items outside the head did reach the answer.
            head = strategy._bandit(replace(ctx, rng=np.random.default_rng(seed), draws=None)).head
            twin_items_outside_the_head += sum(1 for i, _ in expected if ctx.twins.liked[i] > 0 and not head[i])
    assert outcomes.universe > 0
    assert twin_items_outside_the_head > 0


@pytest.mark.parametrize("last", [0, 1, 3])
def test_gather_copies_slices_or_computes_indices_with_the_same_result(
    last: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(last)
    dense = (rng.random((40, 30)) < 0.3) * rng.integers(1, 4, size=(40, 30))
    csc = sp.csc_matrix(dense.astype(np.int8))
    csc.sort_indices()
    majors = np.array([3, 0, 29, 3, 17, 5], dtype=np.int64)
    sliced = twins_module._gather(csc, majors, last)
    monkeypatch.setattr(twins_module, "SLICED_GATHER_MAX", 0)
    computed = twins_module._gather(csc, majors, last)
    for a, b in zip(sliced, computed, strict=True):
        np.testing.assert_array_equal(a, b)
    owner, minor, value = sliced
    for position, major in enumerate(majors.tolist()):
        rows = np.flatnonzero(dense[:, major])
        rows = rows[-last:] if last else rows
        np.testing.assert_array_equal(minor[owner == position], rows)
        np.testing.assert_array_equal(value[owner == position], dense[rows, major])


def test_exploration_skips_under_shown_items_twins_were_shown_without_liking() -> None:
    n = N
    stats = _stats(n)
    impressions = stats.impressions.copy()
    impressions[15:] = 2.0  # items 15..19 are under-shown, with the same evidence
    stats = ItemStats(np.minimum(stats.likes, impressions), stats.dislikes, impressions)
    # Sure twins were shown 15..18 and liked none of them: only item 19 is worth an exploration slot.
    twins = _dense({}, {15: 1.0, 16: 1.0, 17: 1.0, 18: 1.0})
    strategy = _strategy(explore_slots=1.0, explore_below=10)
    for seed in range(10):
        ctx = replace(_context(twins, seed=seed), stats=stats)
        explored = [c.index for c in strategy.recommend(ctx, 5) if c.source == "explore"]
        assert explored == [19], (seed, explored)


def test_twin_weight_scales_the_twins_mass() -> None:
    twins = _dense({12: 0.3}, {12: 0.3})
    # At weight 1: P(like) = 0.3 + 0.7 x ~0.12 beats item 0's ~0.3, and the twins name the item.
    full = _strategy().recommend(_context(twins), 5)
    assert (full[0].index, full[0].source) == (12, "twins")
    # At 0.5 the mass is halved: 0.15 + 0.85 x ~0.12 ranks below the best arms.
    assert _ranked(_strategy(twin_weight=0.5), _context(twins))[0] == 0
