"""Online personalisation: a user's likes change their very next /recs, within a second."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from tests.integration.helpers import add_items, eventually, interact, new_id, recs
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

# The taste component at a weight that lets one user's three likes outweigh a fresh bandit's noise; the
# production default is tuned for the whole protocol (README, BENCHMARKS.md), this test checks the mechanism.
TASTE_EXPERIMENT = {
    "name": "taste-test",
    "groups": [
        {
            "name": "C",
            "strategy": "blend",
            "share": 1.0,
            "params": {"taste_weight": 6.0, "neighbour_weight": 0.0, "explore_slots": 0.0, "exploit_pessimism": 0.0},
        }
    ],
}


def test_likes_of_one_genre_make_it_dominate_the_next_recs(stack_factory: Callable[..., ServiceStack]) -> None:
    stack: ServiceStack = stack_factory(EXPERIMENT_CONFIG=json.dumps(TASTE_EXPERIMENT)).start()
    with httpx.Client(timeout=30) as client:
        client.get(f"{stack.recs_url}/cleanup")
        horror = [new_id("horror-") for _ in range(100)]
        comedy = [new_id("comedy-") for _ in range(100)]
        add_items(client, stack.recs_url, horror + comedy, [["Horror"]] * 100 + [["Comedy"]] * 100)
        # The population likes comedies.
        for _ in range(3):
            other = new_id("other-")
            shown = recs(client, stack.recs_url, other).json()["item_ids"]
            liked = [i for i in shown if i.startswith("comedy-")]
            if liked:
                interact(client, stack.collector_url, other, liked, ["like"] * len(liked))

        user = new_id("user-")
        first = recs(client, stack.recs_url, user).json()["item_ids"]
        extra = [i for i in horror if i not in first][:3]
        # This user likes horror (three films, whichever were shown or not) and dislikes the comedies shown.
        disliked = [i for i in first if i.startswith("comedy-")]
        interact(client, stack.collector_url, user, extra + disliked, ["like"] * 3 + ["dislike"] * len(disliked))
        liked_at = time.monotonic()

        def likes_stored() -> list[dict[str, object]] | None:
            history = client.get(f"{stack.recs_url}/debug/users/{user}").json()["history"]
            if sum(1 for h in history if h["action"] == "like") < 3:
                return None  # the likes are not stored yet
            return history

        eventually(likes_stored, timeout_s=1.0, interval_s=0.02)
        answer = recs(client, stack.recs_url, user)
        elapsed = time.monotonic() - liked_at
        items = answer.json()["item_ids"]
        share = sum(1 for i in items if i.startswith("horror-")) / len(items)
        sources = answer.headers["x-recommendation-sources"]
        print(f"next /recs {elapsed * 1000:.0f} ms after the likes: {share:.0%} horror, sources {sources}")
        assert elapsed < 1.0
        assert share >= 0.8
        assert "taste" in sources
