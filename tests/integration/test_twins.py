"""Twins end to end: a user who answers like an earlier one is shown what that earlier user liked."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from recsys_core.algorithms.twins import TwinLift
from recsys_core.keys import GlobalKeys
from tests.integration.helpers import add_items, eventually, interact, new_id, recs
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration


def test_a_user_who_answers_like_an_earlier_one_gets_what_it_liked(
    stack_factory: Callable[..., ServiceStack],
) -> None:
    # A strong prior: two shared likes on a 300-item catalog make the earlier user a near-certain twin.
    stack: ServiceStack = stack_factory(TWINS_PRIOR="0.5").start()
    with httpx.Client(timeout=30) as client:
        client.get(f"{stack.recs_url}/cleanup")
        items = [new_id("item-") for _ in range(300)]
        add_items(client, stack.recs_url, items, [["Drama"]] * 300)

        earlier = new_id("earlier-")
        first = recs(client, stack.recs_url, earlier).json()["item_ids"]
        shared = first[:2]
        hidden_gem = next(i for i in items if i not in first)
        # The earlier user likes two of what it was shown and one film it found elsewhere.
        interact(client, stack.collector_url, earlier, [*shared, hidden_gem], ["like"] * 3)

        user = new_id("user-")
        seen = recs(client, stack.recs_url, user).json()["item_ids"]
        assert hidden_gem not in seen or pytest.skip("the bandit showed the hidden gem by chance")
        interact(client, stack.collector_url, user, shared, ["like"] * 2)
        liked_at = time.monotonic()

        sync = stack.redis
        keys = GlobalKeys(stack.prefix)
        generation = int(sync.get(keys.generation) or 0)
        twins_key = keys.for_generation(generation).user_twins(user)

        def published() -> str | None:
            text = sync.get(twins_key)
            return text.decode() if text else None

        lift, _ = eventually(published, timeout_s=5.0, interval_s=0.02)
        print(f"twins of {user} published {(time.monotonic() - liked_at) * 1000:.0f} ms after the likes:\n{lift}")
        parsed = TwinLift.from_text(lift)
        masses = dict(zip(parsed.item_ids, parsed.liked.tolist(), strict=True))
        assert masses.get(hidden_gem, 0.0) > 0.5
        assert not set(seen) & set(masses), "items the user was shown are never in the lift"

        answer = recs(client, stack.recs_url, user)
        sources = answer.headers["x-recommendation-sources"]
        print(f"next /recs: {answer.json()['item_ids'][:3]}..., sources {sources}")
        assert answer.json()["item_ids"][0] == hidden_gem
        assert sources.split(",")[0] == "twins"


def test_a_restarted_pipeline_still_knows_who_answered_what(
    stack_factory: Callable[..., ServiceStack],
) -> None:
    # The twin book lives in the pipeline's memory: a restart refills it from what Redis holds for the run.
    stack: ServiceStack = stack_factory(TWINS_PRIOR="0.5").start()
    with httpx.Client(timeout=30) as client:
        client.get(f"{stack.recs_url}/cleanup")
        items = [new_id("item-") for _ in range(300)]
        add_items(client, stack.recs_url, items, [["Drama"]] * 300)
        earlier = new_id("earlier-")
        first = recs(client, stack.recs_url, earlier).json()["item_ids"]
        shared = first[:2]
        hidden_gem = next(i for i in items if i not in first)
        interact(client, stack.collector_url, earlier, [*shared, hidden_gem], ["like"] * 3)

        def book_size() -> int:
            return int(client.get(f"{stack.pipeline_url}/status").json()["twins"]["users_in_book"])

        eventually(lambda: book_size() >= 1 or None, timeout_s=5.0, interval_s=0.05)
        pipeline = stack.services["pipeline"]
        pipeline.stop()
        pipeline.start()
        size, waited = eventually(lambda: book_size() or None, timeout_s=30.0, interval_s=0.1)
        print(f"after the restart the twin book held {size} user(s) within {waited:.2f} s")
        assert size == 1

        user = new_id("user-")
        seen = recs(client, stack.recs_url, user).json()["item_ids"]
        assert hidden_gem not in seen or pytest.skip("the bandit showed the hidden gem by chance")
        interact(client, stack.collector_url, user, shared, ["like"] * 2)
        sync = stack.redis
        keys = GlobalKeys(stack.prefix)
        twins_key = keys.for_generation(int(sync.get(keys.generation) or 0)).user_twins(user)
        lift, _ = eventually(lambda: (sync.get(twins_key) or b"").decode() or None, timeout_s=5.0, interval_s=0.02)
        parsed = TwinLift.from_text(lift)
        masses = dict(zip(parsed.item_ids, parsed.liked.tolist(), strict=True))
        print(f"{user}'s twins after the restart: {masses}")
        assert masses.get(hidden_gem, 0.0) > 0.5
