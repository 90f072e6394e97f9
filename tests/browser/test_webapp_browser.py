"""The debug page in real headless Chromium (Debian's), against a real stack."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from recsys_core.keys import GlobalKeys
from tests.browser.conftest import MALICIOUS_TITLE, Catalog
from tests.browser.helpers import eventually
from tests.support.stack import ServiceStack, free_port

if TYPE_CHECKING:  # the module itself is imported below, skipping the file when it is missing
    from playwright.sync_api import Browser, Page, Route

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# Found on PATH, as `make browser` looks for it (`command -v chromium`); Playwright gets the absolute path.
CHROMIUM = "chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 15_000
# A training window of 5 events, so that the status panel says the pipeline trains on "the latest 5".
STACK_ENV = {"TRAINING_MAX_EVENTS": "5"}
CARD_IDS_JS = "() => [...document.querySelectorAll('#recs .card')].map(card => card.dataset.itemId)"
# True once the page shows a full list of cards none of which is in `old`.
NEW_CARDS_JS = """(old) => {
  const ids = [...document.querySelectorAll('#recs .card')].map(card => card.dataset.itemId);
  return ids.length === 10 && ids.every(id => !old.includes(id));
}"""

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    executable = shutil.which(CHROMIUM)
    if executable is None:
        missing = f"no {CHROMIUM} on PATH: install Debian's chromium (`make browser`) to run the browser tests"
        if os.environ.get("CI"):
            # In CI a missing browser is a failure: a skip there would let the browser tests silently not run.
            pytest.fail(f"{missing} (CI is set, so they must not be skipped)", pytrace=False)
        pytest.skip(missing)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page_problems() -> list[str]:
    """Uncaught script errors and console errors of the test's page (a test may clear expected ones)."""
    return []


@pytest.fixture
def page(chromium: Browser, page_problems: list[str]) -> Iterator[Page]:
    """A fresh page; any uncaught script error or console error left in ``page_problems`` fails the test."""
    context = chromium.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda error: page_problems.append(f"page error: {error}"))
    page.on("console", lambda message: page_problems.append(message.text) if message.type == "error" else None)
    yield page
    context.close()
    assert not page_problems, page_problems


def card_ids(page: Page) -> list[str]:
    return page.evaluate(CARD_IDS_JS)


def start_new_user(page: Page, webapp_url: str) -> None:
    page.goto(webapp_url)
    page.click("#new-user")
    sync_api.expect(page.locator("#recs .card")).to_have_count(10)


def test_like_refreshes_recommendations_history_and_status(
    webapp_stack: ServiceStack, catalog: Catalog, page: Page, artifacts_dir: Path
) -> None:
    start_new_user(page, webapp_stack.url("webapp"))
    first = card_ids(page)
    assert len(set(first)) == 10 and set(first) <= set(catalog.ids)
    titles = page.locator("#recs .card h3").all_text_contents()
    assert titles == [catalog.titles[item_id] for item_id in first]
    assert page.locator("#group").text_content() not in ("", "–")
    sync_api.expect(page.locator("#status-catalog-size")).to_have_text(str(len(catalog.ids)))

    liked = next(item_id for item_id in first if item_id != catalog.malicious_id)
    page.locator(f'#recs .card[data-item-id="{liked}"] button.like').click()

    # A new /recs call: ten new items, none of them shown before.
    page.wait_for_function(NEW_CARDS_JS, arg=first)
    second = card_ids(page)
    assert len(set(second)) == 10 and not set(second) & set(first)

    # The like went collector -> queue -> pipeline -> Redis and is listed by title once stored.
    stored = page.locator("#history li.entry:not(.pending)", has_text=catalog.titles[liked])
    sync_api.expect(stored).to_have_count(1)
    sync_api.expect(stored.locator(".action")).to_have_text("Like")

    # Other users' likes and a retrain: the status panel shows the model, its metrics and the MLflow run.
    version = _train_a_model(webapp_stack)
    sync_api.expect(page.locator("#status-model")).to_contain_text(f"v{version}")
    sync_api.expect(page.locator("#status-metrics")).to_contain_text("likes")
    run_link = page.locator("#status-mlflow a")
    assert webapp_stack.mlflow_url is not None
    sync_api.expect(run_link).to_have_attribute(
        "href", re.compile(f"^{re.escape(webapp_stack.mlflow_url)}/#/experiments/")
    )
    sync_api.expect(page.locator("#status-pipeline")).to_contain_text("alive")
    # 10 events against a window of 5 (the stack's TRAINING_MAX_EVENTS): the pipeline says what it trains on.
    sync_api.expect(page.locator("#status-pipeline")).to_contain_text("training on the latest 5", timeout=15_000)
    # Users answered: the pipeline keeps their answers for twin matching and says so.
    sync_api.expect(page.locator("#status-pipeline")).to_contain_text(re.compile(r"twins: [1-9]\d* users"))
    # The experiment's live outcome: the (only) group's like rate over what it has shown in this run.
    sync_api.expect(page.locator("#status-experiment")).to_contain_text(
        re.compile(r"like rate \d+\.\d\d% \[\d+\.\d\d%–\d+\.\d\d%\] of [\d,]+ shown to [\d,]+ users")
    )
    sync_api.expect(page.locator("#error")).to_be_hidden()
    page.mouse.move(0, 0)  # no hover highlight on a card in the screenshot
    page.screenshot(path=str(artifacts_dir / "webapp.png"), full_page=True)


def test_malicious_title_is_rendered_as_text(
    webapp_stack: ServiceStack, catalog: Catalog, page: Page, artifacts_dir: Path
) -> None:
    start_new_user(page, webapp_stack.url("webapp"))
    card = page.locator(f'#recs .card[data-item-id="{catalog.malicious_id}"]')
    shown: list[str] = []
    # Page through the catalog until the hostile item is recommended (it has to be: nothing repeats).
    while card.count() == 0:
        shown += card_ids(page)
        assert len(shown) < len(catalog.ids), "the malicious item was never recommended"
        page.click("#more")
        page.wait_for_function(NEW_CARDS_JS, arg=shown)

    sync_api.expect(card.locator("h3")).to_have_text(MALICIOUS_TITLE)
    assert page.locator("#recs img, #recs script").count() == 0
    page.screenshot(path=str(artifacts_dir / "webapp-escaping.png"), full_page=True)

    card.locator("button.like").click()
    stored = page.locator("#history li.entry:not(.pending) .entry-title")
    sync_api.expect(stored).to_have_text([MALICIOUS_TITLE])
    assert page.locator("#history img, #history script").count() == 0
    assert page.evaluate("() => window.__xss") is None


def test_a_like_answered_after_the_user_changed_stays_with_its_user(
    webapp_stack: ServiceStack, catalog: Catalog, page: Page
) -> None:
    """Switch users while a like is on its way: the new user's history must not list it as "sending…"."""
    held: list[Route] = []
    page.route("**/api/feedback", lambda route: held.append(route))  # the like waits here until let go
    start_new_user(page, webapp_stack.url("webapp"))
    first_user = page.locator("#user-id").input_value()
    page.locator("#recs .card button.like").first.click()
    page.wait_for_function("() => document.body.classList.contains('busy')")
    assert len(held) == 1

    page.click("#new-user")
    page.wait_for_function(f"() => document.querySelector('#user-id').value !== {first_user!r}")
    sync_api.expect(page.locator("#recs .card")).to_have_count(10)
    held[0].continue_()
    page.wait_for_timeout(500)  # the answer arrives and is handled (or ignored)

    sync_api.expect(page.locator("#history li.entry")).to_have_count(0)
    sync_api.expect(page.locator("#recs .card button.like").first).to_be_enabled()


def test_a_linked_twin_is_named_and_opens_with_a_click(
    webapp_stack: ServiceStack, catalog: Catalog, page: Page
) -> None:
    """The pipeline's link (written here straight into the run's links hash) shows in the history panel."""
    user, twin = f"user-{uuid.uuid4()}", f"twin-{uuid.uuid4()}"
    keys = GlobalKeys(webapp_stack.prefix)
    run = keys.for_generation(int(webapp_stack.redis.get(keys.generation) or 0))
    webapp_stack.redis.hset(run.twin_links, user, twin)
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{webapp_stack.recs_url}/debug/users/{user}").json()["twin"] == twin
        assert client.get(f"{webapp_stack.url('webapp')}/api/users/{twin}").json()["twin"] is None

    page.goto(f"{webapp_stack.url('webapp')}/?user_id={user}")
    sync_api.expect(page.locator("#twin")).to_be_visible()
    sync_api.expect(page.locator("#twin-user")).to_have_text(twin)
    page.click("#twin-user")
    sync_api.expect(page.locator("#user-id")).to_have_value(twin)
    sync_api.expect(page.locator("#twin")).to_be_hidden()  # the twin itself is linked to nobody
    assert page.url.endswith(f"?user_id={twin}")


def test_backend_down_shows_an_error_not_a_blank_page(
    webapp_stack: ServiceStack, page: Page, page_problems: list[str], artifacts_dir: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    webapp = webapp_stack.start_service(
        "webapp", port=free_port(), label="webapp-down", RECS_URL=dead, COLLECTOR_URL=dead, PIPELINE_URL=dead
    )
    page.goto(f"{webapp.url}/?user_id=user-{uuid.uuid4()}")
    sync_api.expect(page.locator("#error")).to_be_visible()
    sync_api.expect(page.locator("#error")).to_contain_text("recommendations is unreachable")
    sync_api.expect(page.locator("#status-error")).to_contain_text("Status unavailable")
    sync_api.expect(page.locator("h1")).to_contain_text("Recommendations")
    page.screenshot(path=str(artifacts_dir / "webapp-backend-down.png"), full_page=True)
    # The browser logs each failed /api call; those are expected here, anything else is not.
    assert all("status of 503" in problem for problem in page_problems), page_problems
    page_problems.clear()


def _train_a_model(stack: ServiceStack) -> int:
    with httpx.Client(timeout=30) as client:
        applied = client.get(f"{stack.pipeline_url}/status").json()["events_applied"]
        for _ in range(3):
            user = f"user-{uuid.uuid4()}"
            shown = client.get(f"{stack.recs_url}/recs/{user}").json()["item_ids"][:3]
            body = {"user_id": user, "item_ids": shown, "actions": ["like"] * 3}
            assert client.post(f"{stack.collector_url}/interact", json=body).status_code == 200
        eventually(lambda: client.get(f"{stack.pipeline_url}/status").json()["events_applied"] >= applied + 9, 10)
        outcome = client.post(f"{stack.pipeline_url}/retrain").json()
        assert outcome["trained"], outcome
        return int(outcome["model_version"])


def test_the_shown_count_follows_the_lists_and_a_double_click_loads_once(
    webapp_stack: ServiceStack, catalog: Catalog, page: Page
) -> None:
    recs_calls: list[str] = []
    page.on("request", lambda request: recs_calls.append(request.url) if "/api/recs/" in request.url else None)
    user = f"user-{uuid.uuid4()}"
    page.goto(webapp_stack.url("webapp"))
    page.fill("#user-id", user)
    page.dblclick("#load-user")  # one list: a second call would mark ten items shown that nobody saw
    sync_api.expect(page.locator("#recs .card")).to_have_count(10)
    sync_api.expect(page.locator("#shown-count")).to_have_text("10 items shown")
    page.wait_for_timeout(300)
    assert len(recs_calls) == 1, recs_calls
    sync_api.expect(page.locator("#more")).to_have_text("Show 10 more")
    page.click("#more")
    sync_api.expect(page.locator("#shown-count")).to_have_text("20 items shown")
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{webapp_stack.url('webapp')}/api/users/{user}").json()["shown_count"] == 20


def test_a_user_id_is_trimmed_before_it_is_checked(webapp_stack: ServiceStack, page: Page) -> None:
    page.goto(webapp_stack.url("webapp"))
    user = f"user-{uuid.uuid4()}"
    page.fill("#user-id", f"  {user}  ")
    page.click("#load-user")
    sync_api.expect(page.locator("#user-id")).to_have_value(user)
    sync_api.expect(page.locator("#recs .card")).to_have_count(10)


def test_after_a_like_from_the_keyboard_the_focus_is_on_the_new_list(
    webapp_stack: ServiceStack, catalog: Catalog, page: Page
) -> None:
    start_new_user(page, webapp_stack.url("webapp"))
    first = card_ids(page)
    like = page.locator("#recs .card button.like").first
    assert (like.get_attribute("aria-label") or "").startswith("Like "), "the button names its film"
    like.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(NEW_CARDS_JS, arg=first)
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'recs'")
    page.keyboard.press("Tab")  # from the list, straight into its first card
    assert page.evaluate("() => document.activeElement.closest('#recs .card') !== null")


def test_a_like_the_pipeline_stores_late_is_shown_stored_when_it_lands(
    webapp_stack: ServiceStack, catalog: Catalog, page: Page
) -> None:
    """A slow pipeline (here: the stored history is hidden from the page for longer than the fast polling
    lasts): the entry says the collector accepted it, and turns stored once the history has it."""
    hide_history = [True]

    def history(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        if hide_history[0]:
            body["history"] = []
        route.fulfill(response=response, json=body)

    page.route("**/api/users/*", history)
    start_new_user(page, webapp_stack.url("webapp"))
    liked = card_ids(page)[0]
    page.locator(f'#recs .card[data-item-id="{liked}"] button.like').click()
    pending = page.locator("#history li.entry.pending")
    sync_api.expect(pending).to_have_count(1)
    sync_api.expect(pending.locator(".entry-time")).to_have_text("accepted · waiting for the pipeline…")
    page.wait_for_timeout(14_000)  # longer than the page used to poll before it gave up (40 × 0.3 s)
    hide_history[0] = False
    stored = page.locator("#history li.entry:not(.pending)", has_text=catalog.titles[liked])
    sync_api.expect(stored).to_have_count(1, timeout=10_000)
    sync_api.expect(pending).to_have_count(0)


def test_status_figures_are_marked_stale_while_the_status_fails(
    webapp_stack: ServiceStack, page: Page, page_problems: list[str]
) -> None:
    failing = [False]
    page.route(
        "**/api/status",
        lambda route: route.fulfill(status=503, json={"detail": "down"}) if failing[0] else route.continue_(),
    )
    page.goto(webapp_stack.url("webapp"))
    sync_api.expect(page.locator("#status-updated")).to_contain_text("updated ")
    assert "stale" not in (page.locator("#status-panel").get_attribute("class") or "")
    failing[0] = True
    sync_api.expect(page.locator("#status-panel")).to_have_class(re.compile(r"\bstale\b"), timeout=10_000)
    sync_api.expect(page.locator("#status-updated")).to_contain_text("figures as of")
    failing[0] = False
    sync_api.expect(page.locator("#status-panel")).not_to_have_class(re.compile(r"\bstale\b"), timeout=10_000)
    assert all("status of 503" in problem for problem in page_problems), page_problems
    page_problems.clear()


def test_the_page_fits_a_phone_screen(webapp_stack: ServiceStack, chromium: Browser) -> None:
    context = chromium.new_context(viewport={"width": 375, "height": 740})
    try:
        phone = context.new_page()
        phone.goto(webapp_stack.url("webapp"))
        widths = phone.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], f"the page is {widths[0]} px wide on a {widths[1]} px screen"
        assert phone.locator("#new-user").is_visible()
        box = phone.locator("#new-user").bounding_box()
        assert box is not None and box["x"] + box["width"] <= widths[1]
    finally:
        context.close()
