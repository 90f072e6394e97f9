"""Reference points computed from the same simulated users with the same number of calls each.

- The oracle knows every user's taste: each call shows the user's relevant unseen items first (catalog
  order), then fills up with unseen items (catalog order). No system can beat its precision.
- Perfect popularity is the best non-personal list: every catalog item ranked by how many simulated users
  like it (exact counts, ties in catalog order); each call shows the user the next k items of that ranking
  they have not been shown.
Both are judged by ``grader.evaluation`` with exactly the rules the system under test is judged by.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from grader.aggregate import MetricSummary, summarize
from grader.catalog import Catalog
from grader.evaluation import CallOutcome, evaluate_lists
from grader.simulation import SimulatedUser


def _take_unseen(source: Iterator[str], shown: set[str], count: int) -> list[str]:
    """The next ``count`` items of ``source`` not in ``shown``; they are added to ``shown``."""
    taken: list[str] = []
    while len(taken) < count:
        item_id = next(source, None)
        if item_id is None:
            break
        if item_id not in shown:
            taken.append(item_id)
            shown.add(item_id)
    return taken


def oracle_lists(user: SimulatedUser, catalog: Catalog, calls: int, k: int) -> list[list[str]]:
    # Iterators can persist across calls: an item skipped once was shown, and stays shown.
    relevant = iter(sorted(user.relevant, key=catalog.positions.__getitem__))
    filler = (item.item_id for item in catalog.items)
    shown: set[str] = set()
    lists = []
    for _ in range(calls):
        chosen = _take_unseen(relevant, shown, k)
        chosen += _take_unseen(filler, shown, k - len(chosen))
        lists.append(chosen)
    return lists


def popularity_ranking(users: Sequence[SimulatedUser], catalog: Catalog) -> list[str]:
    """Catalog items by the number of simulated users who like them, most liked first, ties in catalog order."""
    likes = Counter(item_id for user in users for item_id in user.relevant)
    return sorted(catalog.positions, key=lambda item_id: (-likes[item_id], catalog.positions[item_id]))


def popularity_lists(ranking: Sequence[str], calls: int, k: int) -> list[list[str]]:
    source = iter(ranking)
    shown: set[str] = set()
    return [_take_unseen(source, shown, k) for _ in range(calls)]


@dataclass(frozen=True, slots=True)
class References:
    oracle: MetricSummary
    popularity: MetricSummary
    oracle_outcomes: tuple[CallOutcome, ...]
    popularity_outcomes: tuple[CallOutcome, ...]


def compute_references(
    users: Sequence[SimulatedUser],
    catalog: Catalog,
    calls_per_user: int,
    k: int,
    calls_made: Mapping[int, int] | None = None,
) -> References:
    """``calls_made`` (by arrival), for a load that stopped early: each user gets the calls they made, and the
    popularity ranking counts only the users who made one."""
    if calls_made is not None:
        users = [user for user in users if calls_made.get(user.arrival, 0) > 0]
    ranking = popularity_ranking(users, catalog)
    # Every user sees the same non-personal sequence, so it is judged once per user but built once.
    popular = popularity_lists(ranking, calls_per_user, k)
    oracle: list[CallOutcome] = []
    popularity: list[CallOutcome] = []
    for user in users:
        calls = calls_per_user if calls_made is None else min(calls_per_user, calls_made[user.arrival])
        oracle += evaluate_lists(user, oracle_lists(user, catalog, calls, k), catalog, k)
        popularity += evaluate_lists(user, popular[:calls], catalog, k)
    return References(
        oracle=summarize(oracle, len(catalog), k),
        popularity=summarize(popularity, len(catalog), k),
        oracle_outcomes=tuple(oracle),
        popularity_outcomes=tuple(popularity),
    )


def share_of(value: float, reference: float) -> float | None:
    """``value`` as a percentage of ``reference`` (None when the reference is 0)."""
    return 100.0 * value / reference if reference else None
