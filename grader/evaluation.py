"""Judging each answered list against the user's history: hits, NDCG, diversity and contract violations.

Rules, per list, walking it in order:
- an id already seen earlier in the same list is a duplicate (error, never a hit);
- an id outside the catalog is unknown (error, never a hit);
- a catalog item already shown to this user by an earlier call is re-shown (error, never a hit);
- any other item is new to the user; it is a hit when it is relevant and sits in the first k positions;
- the length is wrong when it differs from k while the user still had at least k unseen catalog items (or
  when it exceeds k at any time: a short list is the only honest answer once the catalog runs out).
A call without a usable answer (no response, non-200, malformed body) has no hits and counts in every mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grader.catalog import Catalog
from grader.metrics import list_diversity, ndcg_at_k, precision_at_k
from grader.simulation import SimulatedUser
from grader.traces import CallTrace, UserTrace


@dataclass(frozen=True, slots=True)
class ListJudgement:
    hits: int
    precision: float
    ndcg: float
    diversity: float | None
    # Catalog items among the list's first k that it showed the user for the first time (what coverage counts).
    new_items: tuple[str, ...]
    wrong_length: bool
    duplicates: int
    unknown_ids: int
    reshown: int


@dataclass(frozen=True, slots=True)
class CallOutcome:
    arrival: int
    index: int
    group: str | None
    started_at: float | None
    latency_ms: float | None
    status: int | None
    hits: int
    precision: float
    ndcg: float
    diversity: float | None
    new_items: tuple[str, ...]
    no_response: bool
    non_200: bool
    invalid_body: bool
    wrong_length: bool
    duplicates: int
    unknown_ids: int
    reshown: int
    interact_failed: bool
    error: str | None = None  # why the call failed, as the client saw it (no response, a body it could not read)


def judge_list(
    items: Sequence[str], shown_before: set[str], relevant: frozenset[str], catalog: Catalog, k: int
) -> ListJudgement:
    """One list judged against what the user had been shown before it (``shown_before`` is not modified)."""
    seen_in_list: set[str] = set()
    relevance: list[bool] = []
    new_items: list[str] = []
    duplicates = unknown = reshown = 0
    for position, item_id in enumerate(items):
        is_hit = False
        if item_id in seen_in_list:
            duplicates += 1
        elif item_id not in catalog:
            unknown += 1
        elif item_id in shown_before:
            reshown += 1
        elif position < k:  # coverage counts what the grader scores: the first k items
            new_items.append(item_id)
            is_hit = item_id in relevant
        seen_in_list.add(item_id)
        if position < k:
            relevance.append(is_hit)
    unseen_catalog = len(catalog) - len(shown_before)
    wrong_length = len(items) > k or (unseen_catalog >= k and len(items) != k)
    hits = sum(relevance)
    return ListJudgement(
        hits=hits,
        precision=precision_at_k(hits, k),
        ndcg=ndcg_at_k(relevance, len(relevant - shown_before), k),
        # Unknown ids have no genres: they would count as unlike everything and raise the list's diversity.
        diversity=list_diversity([catalog.genres_of(item_id) for item_id in items[:k] if item_id in catalog]),
        new_items=tuple(new_items),
        wrong_length=wrong_length,
        duplicates=duplicates,
        unknown_ids=unknown,
        reshown=reshown,
    )


def _failed_call(arrival: int, call: CallTrace) -> CallOutcome:
    return CallOutcome(
        arrival=arrival,
        index=call.index,
        group=call.group,
        started_at=call.started_at,
        latency_ms=call.latency_ms,
        status=call.status,
        hits=0,
        precision=0.0,
        ndcg=0.0,
        diversity=None,
        new_items=(),
        no_response=call.status is None,
        non_200=call.status is not None and call.status != 200,
        invalid_body=call.status == 200 and not call.body_ok,
        wrong_length=False,
        duplicates=0,
        unknown_ids=0,
        reshown=0,
        interact_failed=call.interact_failed,
        error=call.error,
    )


def evaluate_user(user: SimulatedUser, trace: UserTrace, catalog: Catalog, k: int) -> list[CallOutcome]:
    """Every call of one user judged in order (what counts as re-shown depends on the calls before)."""
    shown: set[str] = set()
    outcomes = []
    for call in sorted(trace.calls, key=lambda c: c.index):
        if not call.ok:
            outcomes.append(_failed_call(user.arrival, call))
            continue
        judged = judge_list(call.item_ids, shown, user.relevant, catalog, k)
        shown.update(item_id for item_id in call.item_ids if item_id in catalog)  # a list too long showed them all
        outcomes.append(
            CallOutcome(
                arrival=user.arrival,
                index=call.index,
                group=call.group,
                started_at=call.started_at,
                latency_ms=call.latency_ms,
                status=call.status,
                hits=judged.hits,
                precision=judged.precision,
                ndcg=judged.ndcg,
                diversity=judged.diversity,
                new_items=judged.new_items,
                no_response=False,
                non_200=False,
                invalid_body=False,
                wrong_length=judged.wrong_length,
                duplicates=judged.duplicates,
                unknown_ids=judged.unknown_ids,
                reshown=judged.reshown,
                interact_failed=call.interact_failed,
            )
        )
    return outcomes


def evaluate_lists(user: SimulatedUser, lists: Sequence[Sequence[str]], catalog: Catalog, k: int) -> list[CallOutcome]:
    """Lists produced offline (the reference recommenders) judged with exactly the rules above."""
    calls = tuple(
        CallTrace(
            session=0,
            index=i,
            started_at=0.0,
            latency_ms=None,
            status=200,
            item_ids=tuple(items),
            body_ok=True,
            group=None,
        )
        for i, items in enumerate(lists)
    )
    return evaluate_user(user, UserTrace(user.arrival, user.user_id, calls), catalog, k)
