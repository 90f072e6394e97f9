"""The webapp's own JSON API and page shell, against real backends (and deliberately broken ones)."""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterator

import httpx
import pytest

from recsys_core.schemas import MAX_ID_LENGTH
from tests.browser.conftest import MALICIOUS_TITLE, Catalog
from tests.browser.helpers import eventually
from tests.support.stack import ServiceStack, free_port
from webapp.explain import describe, split_source

pytestmark = pytest.mark.integration


def new_user() -> str:
    return f"user-{uuid.uuid4()}"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def test_recs_carry_titles_genres_why_and_group(
    webapp_stack: ServiceStack, catalog: Catalog, client: httpx.Client
) -> None:
    user = new_user()
    page = client.get(f"{webapp_stack.url('webapp')}/api/recs/{user}")
    assert page.status_code == 200, page.text
    body = page.json()
    items = body["items"]
    assert len(items) == 10 and len({item["item_id"] for item in items}) == 10
    for item in items:
        assert item["title"] == catalog.titles[item["item_id"]]  # raw text: escaping is the page's job
        assert sorted(item["genres"]) == sorted(catalog.genres[item["item_id"]])  # the catalog keeps a set
        source, anchor = split_source(item["source"])
        anchor_title = catalog.titles.get(anchor) if anchor else None
        assert item["why"] == describe(source, anchor_title) and item["because_item_id"] == anchor
    debug = client.get(f"{webapp_stack.recs_url}/debug/users/{user}").json()
    assert body["group"] == debug["group"]
    assert {item["item_id"]: item["source"] for item in items} == {k: v["source"] for k, v in debug["sources"].items()}
    assert body["fallback"] is False and body["warnings"] == []

    # Each call is a new /recs call: nothing repeats for this user.
    again = client.get(f"{webapp_stack.url('webapp')}/api/recs/{user}").json()["items"]
    assert not {i["item_id"] for i in again} & {i["item_id"] for i in items}


def test_feedback_reaches_the_collector_and_lands_in_the_history(
    webapp_stack: ServiceStack, catalog: Catalog, client: httpx.Client
) -> None:
    webapp = webapp_stack.url("webapp")
    user = new_user()
    liked = catalog.malicious_id  # any catalog item may be liked; this one also checks titles stay raw in JSON
    disliked = catalog.ids[0]
    for item_id, action in ((liked, "like"), (disliked, "dislike")):
        answer = client.post(f"{webapp}/api/feedback", json={"user_id": user, "item_id": item_id, "action": action})
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "accepted" and answer.json()["collector_status"] == 200

    def stored() -> list[dict[str, object]] | None:
        history = client.get(f"{webapp_stack.recs_url}/debug/users/{user}").json()["history"]
        return history if len(history) == 2 else None

    history = eventually(stored, timeout_s=10)
    assert [(h["item_id"], h["action"]) for h in history] == [(disliked, "dislike"), (liked, "like")]

    mine = client.get(f"{webapp}/api/users/{user}").json()
    assert [(h["title"], h["action"]) for h in mine["history"]] == [
        (catalog.titles[disliked], "dislike"),
        (MALICIOUS_TITLE, "like"),
    ]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"user_id": "u1", "item_id": "i1", "action": "love"}, "body.action"),
        ({"user_id": "bad id", "item_id": "i1", "action": "like"}, "body.user_id"),
        ({"user_id": "u1", "action": "like"}, "body.item_id"),
    ],
)
def test_bad_feedback_is_a_clear_422(
    webapp_stack: ServiceStack, client: httpx.Client, body: dict[str, str], fragment: str
) -> None:
    answer = client.post(f"{webapp_stack.url('webapp')}/api/feedback", json=body)
    assert answer.status_code == 422
    assert fragment in answer.json()["detail"]


def test_status_panel_data_before_and_after_a_retrain(
    webapp_stack: ServiceStack, catalog: Catalog, client: httpx.Client
) -> None:
    webapp = webapp_stack.url("webapp")
    status = client.get(f"{webapp}/api/status").json()
    assert status["catalog_size"] == len(catalog.ids) == status["bandit_arms"]
    assert status["pipeline"]["alive"] is True and status["pipeline"]["reachable"] is True
    assert status["experiment"]["groups"], status["experiment"]
    assert status["warnings"] == []

    # The stack is shared by the module: count from what earlier tests already stored.
    applied_before = client.get(f"{webapp_stack.pipeline_url}/status").json()["events_applied"]
    for _ in range(3):
        user = new_user()
        shown = client.get(f"{webapp}/api/recs/{user}").json()["items"][:3]
        for item in shown:
            client.post(f"{webapp}/api/feedback", json={"user_id": user, "item_id": item["item_id"], "action": "like"})
    eventually(
        lambda: client.get(f"{webapp_stack.pipeline_url}/status").json()["events_applied"] >= applied_before + 9, 10
    )
    outcome = client.post(f"{webapp_stack.pipeline_url}/retrain").json()
    assert outcome["trained"], outcome

    status = client.get(f"{webapp}/api/status").json()
    assert status["model"]["version"] == outcome["model_version"]
    assert 0 <= status["model"]["age_seconds"] < 60
    assert status["model"]["metrics"]["likes"] >= 9
    training = status["training"]
    assert training["seconds_ago"] < 60 and training["retrain_seconds"] > 0
    assert "training_seconds" in training["metrics"]
    assert training["mlflow_run_url"].startswith(webapp_stack.mlflow_url)
    assert training["mlflow_run_id"] in training["mlflow_run_url"]


def test_dead_backends_are_clear_503s_and_the_page_still_renders(webapp_stack: ServiceStack) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    webapp = webapp_stack.start_service(
        "webapp", port=free_port(), label="webapp-dead", RECS_URL=dead, COLLECTOR_URL=dead, PIPELINE_URL=dead
    ).url
    with httpx.Client(timeout=30) as client:
        recs = client.get(f"{webapp}/api/recs/u1")
        assert recs.status_code == 503 and recs.headers["retry-after"] == "1"
        assert recs.json()["service"] == "recommendations"
        assert "recommendations is unreachable" in recs.json()["detail"]

        feedback = client.post(f"{webapp}/api/feedback", json={"user_id": "u1", "item_id": "i1", "action": "like"})
        assert feedback.status_code == 503
        assert feedback.json()["service"] == "event collector"

        assert client.get(f"{webapp}/api/status").status_code == 503
        assert client.get(f"{webapp}/api/users/u1").status_code == 503
        page = client.get(f"{webapp}/")
        assert page.status_code == 200 and 'id="error"' in page.text


def test_wrong_answers_are_502_and_a_dead_pipeline_only_a_warning(webapp_stack: ServiceStack, catalog: Catalog) -> None:
    # The "collector" is the recommendations service, which has no /interact: a 404 behind the proxy.
    webapp = webapp_stack.start_service(
        "webapp",
        port=free_port(),
        label="webapp-miswired",
        COLLECTOR_URL=webapp_stack.recs_url,
        PIPELINE_URL=f"http://127.0.0.1:{free_port()}",
    ).url
    with httpx.Client(timeout=30) as client:
        feedback = client.post(f"{webapp}/api/feedback", json={"user_id": "u1", "item_id": "i1", "action": "like"})
        assert feedback.status_code == 502
        assert feedback.json()["upstream_status"] == 404
        assert "event collector answered 404" in feedback.json()["detail"]

        status = client.get(f"{webapp}/api/status")
        assert status.status_code == 200
        assert status.json()["catalog_size"] == len(catalog.ids)
        assert status.json()["pipeline"]["reachable"] is False
        assert any("pipeline is unreachable" in warning for warning in status.json()["warnings"])


def test_the_page_escapes_what_it_renders_and_forbids_inline_script(webapp_stack: ServiceStack) -> None:
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    with httpx.Client(timeout=30) as client:
        page = client.get(f"{webapp_stack.url('webapp')}/", params={"user_id": hostile})
        assert page.status_code == 200
        assert "<script>alert(1)" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]

        valid = client.get(f"{webapp_stack.url('webapp')}/", params={"user_id": "user-42"})
        assert 'value="user-42"' in valid.text
        assert client.get(f"{webapp_stack.url('webapp')}/static/app.js").status_code == 200
        assert client.get(f"{webapp_stack.url('webapp')}/healthcheck").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("user_id", "reason"),
    [
        ("..", "it is only dots"),
        ("x" * (MAX_ID_LENGTH + 1), f"it has {MAX_ID_LENGTH + 1} characters, at most {MAX_ID_LENGTH} are allowed"),
        ("a b", "use letters, digits and . _ : @ + - only"),
    ],
    ids=["dots", "too-long", "space"],
)
def test_an_ignored_user_id_says_why(webapp_stack: ServiceStack, user_id: str, reason: str) -> None:
    with httpx.Client(timeout=10) as client:
        page = client.get(f"{webapp_stack.url('webapp')}/", params={"user_id": user_id})
    assert page.status_code == 200
    assert html.unescape(page.text).count(f": {reason} (") == 1, page.text
