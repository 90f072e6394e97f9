"""The webapp's pure parts: "why" texts, payload assembly, and how backend failures are mapped (no servers)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from recsys_core.settings import Settings
from webapp.backends import BackendError, Backends, RecsAnswer
from webapp.explain import describe, split_source
from webapp.upstream import CatalogEntry, Experiment, PipelineStatus, RecsStatus
from webapp.views import anchor_ids, recs_page, safe_http_url, status_page


@pytest.mark.parametrize(
    ("source", "anchor_title", "why"),
    [
        ("bandit", None, "popular with others (Thompson sampling)"),
        ("bpr", None, "BPR matches your taste"),
        ("neighbour", "Heat (1995)", "because you liked Heat (1995)"),
        ("neighbour", None, "similar to an item you liked"),
        ("explore", None, "exploration"),
        ("fill", None, "filler (unseen)"),
        ("taste", None, "matches your genre taste"),
        ("fallback", None, "fallback: Redis unavailable"),
        ("brand-new", None, "source: brand-new"),
        ("unknown", None, "reason not reported"),
    ],
)
def test_why_texts(source: str, anchor_title: str | None, why: str) -> None:
    assert describe(source, anchor_title) == why


def test_split_source() -> None:
    assert split_source("bpr") == ("bpr", None)
    assert split_source("neighbour:item:7") == ("neighbour", "item:7")  # ids may contain colons
    assert split_source("") == ("unknown", None)
    assert split_source("neighbour:") == ("neighbour", None)


def test_recs_page_aligns_sources_titles_and_anchors() -> None:
    answer = RecsAnswer(item_ids=["a", "b", "c"], sources=["neighbour:liked", "bpr"], group="B", fallback=False)
    assert anchor_ids(answer) == ["liked"]
    catalog = {
        "a": CatalogEntry(item_id="a", title="Alpha", genres=["Drama"]),
        "liked": CatalogEntry(item_id="liked", title="<b>Liked</b>"),
    }
    page = recs_page("u", answer, catalog)
    assert [(i.item_id, i.title, i.source) for i in page.items] == [
        ("a", "Alpha", "neighbour"),
        ("b", None, "bpr"),
        ("c", None, "unknown"),  # fewer sources than items: never shifted onto the wrong item
    ]
    assert page.items[0].why == "because you liked <b>Liked</b>"  # raw text; the page escapes it
    assert page.items[0].because_item_id == "liked"
    assert page.group == "B"


def test_status_page_ages_metrics_and_links() -> None:
    status = RecsStatus(
        catalog_size=5,
        events_stored=3,
        bandit_arms=5,
        model_version=2,
        model={"version": 2, "published_at": 990.0, "likes": 7, "offline_ndcg_at_10": 0.25, "note": "x"},
        pipeline={
            "last_trained_at": "995.5",
            "retrain_seconds": "1.5",
            "training_seconds": "0.75",
            "mlflow_run_id": "abc",
            "mlflow_run_url": "javascript:alert(1)",
        },
        pipeline_alive=True,
        experiment="exp",
    )
    experiment = Experiment.model_validate({"name": "exp", "groups": [{"name": "A", "strategy": "bpr", "share": 1}]})
    pipeline = PipelineStatus.model_validate(
        {
            "events_applied": 3,
            "events_in_training_window": 2,
            "twins": {"users_in_book": 5, "users_linked": 2, "lifts_published": 9},
        }
    )
    page = status_page(status, experiment, pipeline, now=1000.0, mlflow_url="http://m:8080")
    assert page.model is not None and page.model.age_seconds == 10.0
    assert page.model.metrics == {"likes": 7.0, "offline_ndcg_at_10": 0.25}
    assert page.training is not None and page.training.seconds_ago == 4.5
    assert page.training.metrics == {"training_seconds": 0.75}
    assert page.training.mlflow_run_url is None  # never an href with a script scheme
    assert page.pipeline.reachable and page.pipeline.events_applied == 3
    assert page.pipeline.events_in_training_window == 2
    assert page.pipeline.twins_users == 5 and page.pipeline.twins_published == 9
    assert page.pipeline.twins_linked == 2
    assert page.experiment.groups[0].strategy == "bpr"

    bare = status_page(RecsStatus(catalog_size=0), None, None, now=1.0, mlflow_url=None, warnings=["w"])
    assert bare.model is None and bare.training is None and not bare.pipeline.reachable and bare.warnings == ["w"]
    # What /status reports on a fresh stack or after /cleanup: version 0, no model.
    fresh = status_page(RecsStatus(catalog_size=0, model_version=0), None, None, now=1.0, mlflow_url=None)
    assert fresh.model is None
    # The live outcome of each group reaches the page; a group /experiments has no figures for yet stays bare.
    two = Experiment.model_validate(
        {
            "name": "ab",
            "groups": [
                {"name": "C", "strategy": "blend", "share": 0.5},
                {"name": "T", "strategy": "bpr", "share": 0.5},
            ],
            "live": [
                {"name": "C", "impressions": 100, "likes": 5, "like_rate": 0.05, "like_rate_95": [0.02, 0.11]},
                {"name": "X", "impressions": 1},
            ],
        }
    )
    ab = status_page(RecsStatus(catalog_size=0), two, None, now=1.0, mlflow_url=None).experiment.groups
    assert ab[0].like_rate == 0.05 and ab[0].like_rate_95 == (0.02, 0.11) and ab[0].impressions == 100
    assert ab[1].like_rate is None and ab[1].vs_control is None
    # PIPELINE_URL pointing at a standby pipeline process: the page says so instead of empty counters.
    standby = PipelineStatus.model_validate({"role": "standby", "lease_token": "h:1:x", "leader": "h:2:y"})
    page = status_page(RecsStatus(catalog_size=0), None, standby, now=1.0, mlflow_url=None)
    assert page.pipeline.reachable and page.pipeline.role == "standby" and page.pipeline.events_applied is None


def test_safe_http_url() -> None:
    assert safe_http_url("https://mlflow.example/#/runs/1") == "https://mlflow.example/#/runs/1"
    assert safe_http_url("javascript:alert(1)") is None
    assert safe_http_url("/relative") is None
    assert safe_http_url(None) is None


def _backends(handler: httpx.MockTransport) -> Backends:
    return Backends(httpx.AsyncClient(transport=handler), Settings(recs_url="http://recs", collector_url="http://col"))


@pytest.mark.parametrize(
    ("respond", "status", "upstream"),
    [
        (lambda _: httpx.Response(404, json={"detail": "no such route"}), 502, 404),
        (lambda _: httpx.Response(500, text="boom"), 502, 500),
        (lambda _: httpx.Response(503, json={"detail": "RabbitMQ down"}), 503, 503),
        (lambda _: httpx.Response(200, json={"unexpected": True}), 502, 200),
    ],
)
async def test_backend_failures_are_mapped(
    respond: Callable[[httpx.Request], httpx.Response], status: int, upstream: int
) -> None:
    backends = _backends(httpx.MockTransport(respond))
    with pytest.raises(BackendError) as caught:
        await backends.recs("u", 10)
    assert caught.value.status_code == status and caught.value.upstream_status == upstream
    assert caught.value.service == "recommendations"


async def test_timeouts_are_504() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("too slow", request=request)

    with pytest.raises(BackendError) as caught:
        await _backends(httpx.MockTransport(slow)).interact("u", "i", "like")
    assert caught.value.status_code == 504 and caught.value.service == "event collector"


async def test_an_answer_that_does_not_decode_is_a_502_not_a_500() -> None:
    def corrupt(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"not gzip at all", headers={"Content-Encoding": "gzip"})

    with pytest.raises(BackendError) as caught:
        await _backends(httpx.MockTransport(corrupt)).recs("u", 2)
    assert caught.value.status_code == 502 and caught.value.service == "recommendations"


async def test_recs_headers_are_read() -> None:
    def answer(_: httpx.Request) -> httpx.Response:
        headers = {"X-Experiment-Group": "B", "X-Recommendation-Sources": "bandit,fill", "X-Fallback": "redis"}
        return httpx.Response(200, json={"item_ids": ["a", "b"]}, headers=headers)

    recs = await _backends(httpx.MockTransport(answer)).recs("u", 2)
    assert recs == RecsAnswer(item_ids=["a", "b"], sources=["bandit", "fill"], group="B", fallback=True)
