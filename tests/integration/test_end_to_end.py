"""The whole flow on real Redis, RabbitMQ and MLflow: collector -> queue -> pipeline -> Redis -> recs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import mlflow
import pytest

from recsys_core.algorithms.factors import FactorModel
from recsys_core.keys import GlobalKeys
from recsys_io.redis_client import as_str
from tests.integration.helpers import add_items, catalog, eventually, interact, new_id, recs
from tests.support.replies import blob
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration


def test_full_flow_like_to_bandit_to_bpr(stack_factory: Callable[..., ServiceStack]) -> None:
    # The first serving path: BPR for users the model knows, Thompson samples otherwise.
    stack = stack_factory(DEFAULT_STRATEGY="bpr").start()
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{stack.recs_url}/cleanup").status_code == 200
        first_ids, first_genres = catalog(120)
        second_ids, second_genres = catalog(120)
        add_items(client, stack.recs_url, first_ids, first_genres)
        assert add_items(client, stack.recs_url, second_ids, second_genres)["catalog_size"] == 240
        all_ids = set(first_ids) | set(second_ids)

        user = new_id("user-")
        first = recs(client, stack.recs_url, user).json()["item_ids"]
        assert len(first) == 10 and len(set(first)) == 10 and set(first) <= all_ids

        liked = first[:3]
        interact(client, stack.collector_url, user, liked, ["like"] * 3)
        # The client's own time, when it sends one, is the event's time (else the collector stamps its receive time).
        body = {"user_id": user, "item_ids": [first[3]], "actions": ["dislike"], "timestamp": 1234.5}
        assert client.post(f"{stack.collector_url}/interact", json=body).status_code == 200

        def like_visible() -> dict[str, float] | None:
            arm = client.get(f"{stack.recs_url}/debug/items/{liked[0]}").json()
            return arm if arm["likes"] >= 1 else None

        arm, seconds = eventually(like_visible, timeout_s=2.0)
        print(f"like visible in the bandit state /recs reads after {seconds * 1000:.0f} ms")
        assert arm["impressions"] >= 1

        # Other users' likes give BPR something to learn from.
        for _ in range(5):
            other = new_id("user-")
            shown = recs(client, stack.recs_url, other).json()["item_ids"]
            interact(client, stack.collector_url, other, shown[:4], ["like"] * 4)
        eventually(lambda: client.get(f"{stack.pipeline_url}/status").json()["events_applied"] >= 24, 5)
        keys = GlobalKeys(stack.prefix)
        run = keys.for_generation(int(stack.redis.get(keys.generation) or 0))
        stored_times = {
            entry["item_id"]: entry["ts"]
            for entry in map(json.loads, stack.redis.lrange(run.user_history(user), 0, -1))
        }
        assert stored_times[first[3]] == 1234.5
        assert all(stored_times[item] > 1e9 for item in liked)  # stamped by the collector: now

        version_before = client.get(f"{stack.recs_url}/status").json()["model_version"]
        outcome = client.post(f"{stack.pipeline_url}/retrain").json()
        assert outcome["trained"], outcome
        status = client.get(f"{stack.recs_url}/status").json()
        assert status["model_version"] == outcome["model_version"] > version_before
        assert status["model"]["likes"] == 23  # 3 + 5*4 likes; the dislike is not a positive

        # Replicas load the item side only; each user's factors are a field of the version's hash in Redis.
        served = FactorModel.from_bytes(blob(stack.redis.get(run.model_blob(outcome["model_version"]))))
        assert served.user_ids.size == 0 and served.item_factors.shape[0] == 240
        assert stack.redis.hexists(run.model_user_factors(outcome["model_version"]), user)

        answer = recs(client, stack.recs_url, user)
        assert "bpr" in answer.headers["x-recommendation-sources"].split(",")
        seen = set(first) | set(answer.json()["item_ids"])
        assert len(seen) == 20
        for _ in range(20):
            items = recs(client, stack.recs_url, user).json()["item_ids"]
            assert len(items) == 10 and not (set(items) & seen), "an item was shown twice"
            seen |= set(items)
        # 22 calls x 10 > 220 items: the last answers run out; nothing repeats and nothing unknown appears.
        assert seen <= all_ids

    # Every retrain is an MLflow run with its published version as a tag.
    experiment = mlflow.MlflowClient(stack.mlflow_url).get_experiment_by_name(stack.tag)
    assert experiment is not None
    runs = mlflow.MlflowClient(stack.mlflow_url).search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.model_version = '{outcome['model_version']}'",
    )
    assert len(runs) == 1
    assert runs[0].data.metrics["likes"] == 23
    assert runs[0].data.params["factors"] == "64"


def test_catalog_exhaustion_returns_fewer_never_repeats(stack: ServiceStack) -> None:
    with httpx.Client(timeout=30) as client:
        client.get(f"{stack.recs_url}/cleanup")
        ids, genres = catalog(25)
        add_items(client, stack.recs_url, ids, genres)
        user = new_id()
        answers = [recs(client, stack.recs_url, user).json()["item_ids"] for _ in range(4)]
        assert [len(a) for a in answers] == [10, 10, 5, 0]
        flat = [i for a in answers for i in a]
        assert sorted(flat) == sorted(ids)
        assert recs(client, stack.recs_url, new_id(), k=3).json()["item_ids"].__len__() == 3


def test_late_items_become_recommendable_without_restart(stack: ServiceStack) -> None:
    with httpx.Client(timeout=30) as client:
        client.get(f"{stack.recs_url}/cleanup")
        early, early_genres = catalog(10)
        add_items(client, stack.recs_url, early, early_genres)
        user = new_id()
        assert set(recs(client, stack.recs_url, user).json()["item_ids"]) == set(early)
        late, late_genres = catalog(10)
        add_items(client, stack.recs_url, late, late_genres)
        # The late items get arms (and can be liked) without any restart.
        assert set(recs(client, stack.recs_url, user).json()["item_ids"]) == set(late)
        interact(client, stack.collector_url, user, late[:2], ["like", "like"])
        eventually(lambda: client.get(f"{stack.recs_url}/debug/items/{late[0]}").json()["likes"] >= 1, 2.0)
        # A repeated id updates its genres instead of duplicating the item.
        result = add_items(client, stack.recs_url, [late[0]], [["Western"]])
        assert result == {"added": 0, "updated": 1, "catalog_size": 20}
        assert client.get(f"{stack.recs_url}/debug/items/{late[0]}").json()["genres"] == ["Western"]


def test_feedback_on_an_item_added_later_counts_once_it_is_in_the_catalog(stack: ServiceStack) -> None:
    """Events may arrive before the batch of /add_items that names their item (batches come in any order): they
    are accepted and stored, the item is never recommended while unknown, and its evidence is there when it comes."""
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{stack.recs_url}/cleanup").status_code == 200
        ids, genres = catalog(30)
        add_items(client, stack.recs_url, ids, genres)
        late = new_id("late-")
        for n in range(4):
            interact(client, stack.collector_url, new_id("user-"), [late, ids[n]], ["like", "dislike"])
        eventually(lambda: client.get(f"{stack.pipeline_url}/status").json()["events_applied"] == 8, 10)
        assert client.get(f"{stack.recs_url}/debug/items/{late}").status_code == 404
        shown = recs(client, stack.recs_url, new_id("user-"), k=30).json()["item_ids"]
        assert late not in shown and len(shown) == 30

        add_items(client, stack.recs_url, [late], [["Drama"]])
        arm, _ = eventually(
            lambda: (a := client.get(f"{stack.recs_url}/debug/items/{late}").json())["likes"] == 4 and a, 10
        )
        assert arm["dislikes"] == 0
        assert late in recs(client, stack.recs_url, new_id("user-"), k=31).json()["item_ids"]


def test_retries_with_one_idempotency_key_are_stored_once(stack: ServiceStack) -> None:
    """A client that got a 503 (the event may still have been stored) retries with the same key: once."""
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{stack.recs_url}/cleanup").status_code == 200
        ids, genres = catalog(20)
        add_items(client, stack.recs_url, ids, genres)
        user, other = new_id("user-"), new_id("user-")
        body = {"user_id": user, "item_ids": ids[:2], "actions": ["like", "dislike"]}
        key = {"Idempotency-Key": "retry-1"}
        answers = [client.post(f"{stack.collector_url}/interact", json=body, headers=key) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert len({a.json()["message_id"] for a in answers}) == 1, "every retry names the same message"
        # The key is scoped to its user: another user's event with the same key is another event.
        other_body = {**body, "user_id": other}
        assert client.post(f"{stack.collector_url}/interact", json=other_body, headers=key).status_code == 200
        # Without a key each call is its own event.
        assert client.post(f"{stack.collector_url}/interact", json=body).status_code == 200

        def counters() -> dict[str, int] | None:
            status = client.get(f"{stack.pipeline_url}/status").json()
            return status if status["events_applied"] >= 6 else None

        eventually(counters, timeout_s=10)
        bad = client.post(f"{stack.collector_url}/interact", json=body, headers={"Idempotency-Key": "no spaces"})
        assert bad.status_code == 422 and bad.json()["detail"].startswith("header.Idempotency-Key:"), bad.text
    time.sleep(1.0)  # a late duplicate would show by now
    counts = {as_str(k): int(v) for k, v in stack.redis.hgetall(stack.run_key("counters")).items()}
    keys = GlobalKeys(stack.prefix)
    run = keys.for_generation(int(stack.redis.get(keys.generation) or 0))
    history = stack.redis.lrange(run.user_history(user), 0, -1)
    print(f"3 retries + 1 other user + 1 keyless call: counters {counts}")
    assert counts["messages"] == 3 and counts["events"] == 6, counts
    assert counts["duplicates"] == 2, counts
    assert len(history) == 4  # the user's keyed event once (2 answers) and the keyless one (2 answers)
