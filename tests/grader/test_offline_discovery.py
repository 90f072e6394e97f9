"""The offline replay's discovery count: which of the perfect-popularity items the strategy found."""

from __future__ import annotations

import random

from grader.catalog import Catalog, CatalogItem
from grader.offline import _discovery, _UserRun
from grader.reference import popularity_ranking
from grader.simulation import SimulatedUser

CATALOG = Catalog(tuple(CatalogItem(f"i{n:02d}", n, f"Item {n}", ()) for n in range(30)))
TOP = [f"i{n:02d}" for n in range(10)]


def test_discovery_counts_items_shown_to_one_percent_of_users_and_those_dropped_early() -> None:
    users = [SimulatedUser(n, f"u{n}", n, frozenset(TOP), frozenset()) for n in range(200)]
    runs = []
    for user in users:
        run = _UserRun(user, random.Random(0))
        # Everybody is shown i00..i04; i05 only by the first user; i06..i09 never.
        run.lists.append([*TOP[:5], "i20", "i21", "i22", "i23", "i05" if user.arrival == 0 else "i24"])
        runs.append(run)

    discovery = _discovery(runs, popularity_ranking(users, CATALOG), calls_per_user=1)

    assert discovery == {"perfect_popularity_items": 10.0, "found": 5.0, "shown_at_most_5_times": 5.0}


def test_an_item_shown_to_exactly_one_percent_counts_as_found() -> None:
    users = [SimulatedUser(n, f"u{n}", n, frozenset(TOP), frozenset()) for n in range(200)]
    runs = []
    for user in users:
        run = _UserRun(user, random.Random(0))
        extra = "i00" if user.arrival < 2 else "i29"  # i00 shown to 2 of 200 users
        run.lists.append([extra, *(f"i{n}" for n in range(11, 20))])
        runs.append(run)

    discovery = _discovery(runs, popularity_ranking(users, CATALOG), calls_per_user=1)

    assert discovery["found"] == 1.0
    assert discovery["shown_at_most_5_times"] == 10.0
