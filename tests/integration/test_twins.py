"""Twins end to end: a user who answers like an earlier one is shown what that earlier user liked."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from recsys_core.algorithms.twins import TwinLift
from recsys_core.keys import GlobalKeys
from recsys_io.redis_client import as_str
from tests.integration.helpers import add_items, eventually, interact, new_id, recs
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration


def _a_run_with_two_users(client: httpx.Client, stack: ServiceStack) -> tuple[str, str, list[str], list[str], str]:
    """A fresh run of 300 items, shown once to an earlier user and once to a user before anybody answers (so the
    bandit cannot steer either list). Returns the earlier user, the user, the user's list, two items of the
    earlier user's list, and a hidden gem: an item neither was shown."""
    client.get(f"{stack.recs_url}/cleanup")
    items = [new_id("item-") for _ in range(300)]
    add_items(client, stack.recs_url, items, [["Drama"]] * 300)
    earlier, user = new_id("earlier-"), new_id("user-")
    first = recs(client, stack.recs_url, earlier).json()["item_ids"]
    seen = recs(client, stack.recs_url, user).json()["item_ids"]
    hidden_gem = next(i for i in items if i not in first and i not in seen)
    return earlier, user, seen, first[:2], hidden_gem


def _like(client: httpx.Client, stack: ServiceStack, user: str, items: list[str]) -> None:
    interact(client, stack.collector_url, user, items, ["like"] * len(items))


def _published_liked_masses(stack: ServiceStack, user: str) -> dict[str, float]:
    """The liked mass per item of the user's twins, once the pipeline published them (within 5 s)."""
    sync = stack.redis
    keys = GlobalKeys(stack.prefix)
    twins_key = keys.for_generation(int(sync.get(keys.generation) or 0)).user_twins(user)
    text, waited = eventually(lambda: as_str(sync.get(twins_key) or b"") or None, timeout_s=5.0, interval_s=0.02)
    print(f"twins of {user} published within {waited * 1000:.0f} ms:\n{text}")
    parsed = TwinLift.from_text(text)
    return dict(zip(parsed.item_ids, parsed.liked.tolist(), strict=True))


def test_a_user_who_answers_like_an_earlier_one_gets_what_it_liked(
    stack_factory: Callable[..., ServiceStack],
) -> None:
    # A strong prior: two shared likes on a 300-item catalog make the earlier user a near-certain twin.
    stack: ServiceStack = stack_factory(TWINS_PRIOR="0.5").start()
    with httpx.Client(timeout=30) as client:
        earlier, user, seen, shared, hidden_gem = _a_run_with_two_users(client, stack)
        # The earlier user likes two of what it was shown and one film it found elsewhere; the user the same two.
        _like(client, stack, earlier, [*shared, hidden_gem])
        _like(client, stack, user, shared)
        masses = _published_liked_masses(stack, user)
        assert masses.get(hidden_gem, 0.0) > 0.5
        assert not set(seen) & set(masses), "items the user was shown are never in the lift"

        answer = recs(client, stack.recs_url, user)
        sources = answer.headers["x-recommendation-sources"]
        print(f"next /recs: {answer.json()['item_ids'][:3]}..., sources {sources}")
        assert answer.json()["item_ids"][0] == hidden_gem
        assert sources.split(",")[0] == "twins"
        # The pipeline linked the user to the earlier one (a near-certain twin): the debug view names it.
        debug_url = f"{stack.recs_url}/debug/users/{user}"
        twin, _ = eventually(lambda: client.get(debug_url).json()["twin"], timeout_s=5.0, interval_s=0.05)
        assert twin == earlier


def test_a_restarted_pipeline_still_knows_who_answered_what(
    stack_factory: Callable[..., ServiceStack],
) -> None:
    # The twin book lives in the pipeline's memory: a restart refills it from what Redis holds for the run.
    stack: ServiceStack = stack_factory(TWINS_PRIOR="0.5").start()
    with httpx.Client(timeout=30) as client:
        earlier, user, _, shared, hidden_gem = _a_run_with_two_users(client, stack)
        _like(client, stack, earlier, [*shared, hidden_gem])

        def book_size() -> int:
            return int(client.get(f"{stack.pipeline_url}/status").json()["twins"]["users_in_book"])

        eventually(lambda: book_size() >= 1 or None, timeout_s=5.0, interval_s=0.05)
        pipeline = stack.services["pipeline"]
        pipeline.stop()
        pipeline.start()
        size, waited = eventually(lambda: book_size() or None, timeout_s=30.0, interval_s=0.1)
        print(f"after the restart the twin book held {size} user(s) within {waited:.2f} s")
        assert size == 1

        _like(client, stack, user, shared)
        assert _published_liked_masses(stack, user).get(hidden_gem, 0.0) > 0.5

        # The pair is linked (each is the other's near-certain twin); a second restart links them again.
        def linked() -> int:
            return int(client.get(f"{stack.pipeline_url}/status").json()["twins"]["users_linked"])

        before, _ = eventually(lambda: linked() or None, timeout_s=5.0, interval_s=0.05)
        pipeline.stop()
        pipeline.start()
        after, waited = eventually(lambda: linked() or None, timeout_s=30.0, interval_s=0.1)
        print(f"linked users: {before} before the second restart, {after} within {waited:.2f} s after it")
        assert after == before
