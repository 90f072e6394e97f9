"""Judging lists and users' call sequences, and aggregating them."""

from __future__ import annotations

import pytest

from grader.aggregate import ErrorCounts, per_user_table, summarize, windows_by_arrival
from grader.catalog import Catalog, CatalogItem
from grader.evaluation import evaluate_user, judge_list
from grader.simulation import SimulatedUser
from grader.traces import CallTrace, UserTrace

K = 10


def _catalog(size: int = 12) -> Catalog:
    genres = [("Action",), ("Comedy",), ()]
    return Catalog(tuple(CatalogItem(f"i{n}", n, f"Item {n}", genres[n % 3]) for n in range(size)))


def _user(relevant: set[str], arrival: int = 0) -> SimulatedUser:
    return SimulatedUser(arrival, f"user-{arrival}", 1, frozenset(relevant), frozenset())


def _call(index: int, items: list[str], status: int | None = 200, group: str | None = None) -> CallTrace:
    return CallTrace(index // 2, index, 0.0, 5.0 if status else None, status, tuple(items), status == 200, group)


def test_judge_list_hand_computed() -> None:
    catalog = _catalog()
    items = ["i0", "i1", "i0", "x", "i5", "i3", "i4", "i6", "i7", "i8"]
    judged = judge_list(items, {"i1"}, frozenset({"i0", "i1", "i2", "i5"}), catalog, K)
    assert (judged.duplicates, judged.unknown_ids, judged.reshown) == (1, 1, 1)
    # i0 at position 0 and i5 at position 4; i1 was shown before, the second i0 is a duplicate.
    assert judged.hits == 2
    assert judged.precision == 0.2
    # DCG = 1 + 1/log2(6); three relevant items (i0, i2, i5) were unseen: IDCG = 1 + 1/log2(3) + 1/2
    assert judged.ndcg == pytest.approx(1.3868528072345416 / 2.1309297535714578)
    assert judged.ndcg == pytest.approx(0.6508205185601091)
    assert judged.new_items == ("i0", "i5", "i3", "i4", "i6", "i7", "i8")
    assert not judged.wrong_length


def test_wrong_length_depends_on_what_is_left_unseen() -> None:
    catalog = _catalog()
    nine = [f"i{n}" for n in range(9)]
    # 12 unseen items: 9 is too short.
    assert judge_list(nine, set(), frozenset(), catalog, K).wrong_length
    # Only 5 unseen: a list of those 5 is right.
    shown = {f"i{n}" for n in range(7)}
    assert not judge_list([f"i{n}" for n in range(7, 12)], shown, frozenset(), catalog, K).wrong_length
    # Longer than k is always wrong; positions beyond k never hit.
    judged = judge_list([f"i{n}" for n in range(11)], set(), frozenset({"i10"}), catalog, K)
    assert judged.wrong_length and judged.hits == 0


def test_a_list_longer_than_k_adds_to_coverage_only_its_first_k_but_shows_every_item() -> None:
    catalog = _catalog(40)
    user = _user(set())
    too_long = [f"i{n}" for n in range(15)]
    trace = UserTrace(0, user.user_id, (_call(0, too_long), _call(1, ["i12", *[f"i{n}" for n in range(20, 29)]])))
    first, second = evaluate_user(user, trace, catalog, K)

    assert first.wrong_length and first.new_items == tuple(too_long[:K])
    assert second.reshown == 1, "i12 was shown (past position k) by the first list"
    assert summarize([first, second], len(catalog), K).unique_items == 19


def test_unknown_ids_do_not_count_as_diverse() -> None:
    catalog = _catalog()
    same_genre = ["i0", "i3", "i6", "i9"]  # all Action
    assert judge_list(same_genre, set(), frozenset(), catalog, K).diversity == 0.0
    with_unknown = judge_list([*same_genre, "x1", "x2"], set(), frozenset(), catalog, K)
    assert with_unknown.unknown_ids == 2 and with_unknown.diversity == 0.0


def test_evaluate_user_tracks_history_across_calls() -> None:
    catalog = _catalog(40)
    user = _user({"i0", "i12", "i25"})
    first = [f"i{n}" for n in range(10)]
    third = ["i5", *[f"i{n}" for n in range(20, 29)]]
    trace = UserTrace(0, user.user_id, (_call(0, first), _call(1, [], status=500), _call(2, third)))
    outcomes = evaluate_user(user, trace, catalog, K)

    assert [o.hits for o in outcomes] == [1, 0, 1]
    assert outcomes[0].ndcg == pytest.approx(1 / 2.1309297535714578)
    assert outcomes[1].non_200 and outcomes[1].ndcg == 0.0 and outcomes[1].diversity is None
    # i5 was shown by the first call; i25 sits at position 6 with two relevant items (i12, i25) unseen.
    assert outcomes[2].reshown == 1
    assert outcomes[2].ndcg == pytest.approx((1 / 3) / (1 + 0.6309297535714575))

    summary = summarize(outcomes, len(catalog), K)
    assert (summary.calls, summary.slots, summary.hits) == (3, 30, 2)
    assert summary.precision == pytest.approx(2 / 30)
    assert summary.unique_items == 19
    assert summary.coverage == pytest.approx(19 / 40)
    assert summary.errors == ErrorCounts(non_200=1, reshown=1)
    assert summary.latency.count == 3
    assert summary.lists_with_diversity == 2


def test_failed_calls_are_classified() -> None:
    catalog = _catalog()
    user = _user(set())
    bad_body = CallTrace(0, 1, 0.0, 3.0, 200, (), False, None)
    trace = UserTrace(0, user.user_id, (_call(0, [], status=None), bad_body))
    errors = summarize(evaluate_user(user, trace, catalog, K), len(catalog), K).errors
    assert errors == ErrorCounts(no_response=1, invalid_body=1)


def test_per_user_table_and_windows() -> None:
    catalog = _catalog(40)
    users = [_user({"i0"}, arrival=0), _user(set(), arrival=1), _user({"i1", "i2"}, arrival=2)]
    ten = [f"i{n}" for n in range(10)]
    outcomes = [
        o
        for user in users
        for o in evaluate_user(user, UserTrace(user.arrival, user.user_id, (_call(0, ten),)), catalog, K)
    ]
    values = per_user_table(outcomes)
    assert values["precision"] == {0: 0.1, 1: 0.0, 2: 0.2}
    # user 2: hits at positions 1 and 2 -> (1/log2(3) + 1/2) / (1 + 1/log2(3))
    assert values["ndcg"] == pytest.approx({0: 1.0, 1: 0.0, 2: 0.6934264036172708})
    windows = windows_by_arrival(outcomes, total_users=3, windows=2)
    assert [(w.first_user, w.last_user, w.calls) for w in windows] == [(0, 1, 2), (2, 2, 1)]
    assert windows[0].precision == pytest.approx(0.05)
