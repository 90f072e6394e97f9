"""A/B experiments come from configuration: a broken one is refused at start-up with the reason."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from tests.integration.helpers import add_items, catalog, eventually, interact, new_id
from tests.support.replies import stream
from tests.support.stack import ROOT, ServiceStack

pytestmark = pytest.mark.integration

TWO_GROUPS = {
    "name": "exp-int",
    "groups": [
        {"name": "C", "strategy": "blend", "share": 0.5},
        {"name": "T1", "strategy": "thompson", "share": 0.5},
    ],
}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"name": "x", "groups": [{"name": "C", "strategy": "blend", "share": 0.7}]}, "must add up to 1"),
        ({"name": "x", "groups": [{"name": "C", "strategy": "magic", "share": 1.0}]}, "unknown strategy 'magic'"),
        (
            {"name": "x", "groups": [{"name": "C", "strategy": "blend", "share": 1.0, "params": {"nope": 1}}]},
            "unexpected keyword argument 'nope'",
        ),
    ],
)
@pytest.mark.parametrize("service", ["recommendations", "pipeline"])
def test_a_broken_experiment_is_refused_at_start_up(
    stack_factory: Callable[..., ServiceStack], service: str, config: dict[str, object], expected: str
) -> None:
    stack = stack_factory()
    env = stack.env(EXPERIMENT_CONFIG=json.dumps(config))
    result = subprocess.run(
        [sys.executable, "-m", service], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


def test_groups_are_stable_recorded_with_recommendations_and_events(stack_factory: Callable[..., ServiceStack]) -> None:
    stack = stack_factory(EXPERIMENT_CONFIG=json.dumps(TWO_GROUPS)).start()
    with httpx.Client(timeout=30) as client:
        client.get(f"{stack.recs_url}/cleanup")
        assert client.get(f"{stack.recs_url}/experiments").json()["name"] == "exp-int"
        ids, genres = catalog(80)
        add_items(client, stack.recs_url, ids, genres)
        groups: dict[str, str] = {}
        for _ in range(40):
            user = new_id()
            first = client.get(f"{stack.recs_url}/recs/{user}")
            again = client.get(f"{stack.recs_url}/recs/{user}")
            assert first.headers["x-experiment-group"] == again.headers["x-experiment-group"]
            groups[user] = first.headers["x-experiment-group"]
            interact(client, stack.collector_url, user, first.json()["item_ids"][:1], ["like"])
        assert set(groups.values()) == {"C", "T1"}
        eventually(lambda: client.get(f"{stack.recs_url}/status").json()["events_stored"] >= 40, 10)
    # Every recommendation and every stored event carries the user's group.
    recs_log = stream(stack.redis.xrange(stack.run_key("recs:log")))
    assert len(recs_log) == 80  # two /recs calls for each of the 40 users
    for _, fields in recs_log:
        assert fields[b"group"].decode() == groups[fields[b"user"].decode()]
    events = stream(stack.redis.xrange(stack.run_key("events")))
    assert len(events) == 40
    for _, fields in events:
        assert fields[b"group"].decode() == groups[fields[b"user"].decode()]
    # /experiments reports each group's answers, impressions and likes of this run as they happen.
    with httpx.Client(timeout=30) as client:
        live = {g["name"]: g for g in client.get(f"{stack.recs_url}/experiments").json()["live"]}
    for name in ("C", "T1"):
        users = sum(1 for group in groups.values() if group == name)
        group = live[name]
        counts = (group["users"], group["recs"], group["impressions"], group["likes"], group["dislikes"])
        assert counts == (users, 2 * users, 20 * users, users, 0)
        assert group["like_rate"] == pytest.approx(1 / 20)
        # Every user of the group liked 1 of 20: per user there is no spread, so neither is there in the rate.
        assert group["like_rate_95"] == pytest.approx([1 / 20, 1 / 20], abs=1e-6)
    assert live["C"]["vs_control"] is None
    assert live["T1"]["vs_control"] == pytest.approx({"difference": 0.0, "low": 0.0, "high": 0.0}, abs=1e-6)
