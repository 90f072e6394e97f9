"""Bad input gets a clear 4xx on both services; an empty catalog answers 200 []."""

from __future__ import annotations

import httpx
import pytest

from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"user_id": "u", "item_ids": ["a", "b"], "actions": ["like"]}, "same length"),
        ({"user_id": "u", "item_ids": ["a"], "actions": ["love"]}, "'like' or 'dislike'"),
        ({"user_id": "u", "item_ids": [], "actions": []}, "at least 1"),
        ({"item_ids": ["a"], "actions": ["like"]}, "user_id"),
        ({"user_id": "u", "item_ids": ["a"], "actions": ["like"], "timestamp": "soon"}, "timestamp"),
        ({"user_id": "has space", "item_ids": ["a"], "actions": ["like"]}, "user_id"),
    ],
)
def test_interact_rejects_bad_input(stack: ServiceStack, body: dict[str, object], expected: str) -> None:
    response = httpx.post(f"{stack.collector_url}/interact", json=body, timeout=10)
    assert response.status_code == 422
    assert expected in response.json()["detail"]


def _post_raw(url: str, content: bytes, content_type: str | None) -> httpx.Response:
    """``content`` as the body, under ``content_type`` (None: no Content-Type header at all)."""
    headers = {"content-type": content_type} if content_type else {}
    return httpx.post(url, content=content, headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("content", "content_type", "expected"),
    [
        (b'{"user_id": "u", "item_ids": ["a"], "actions": ["like"]', "application/json", "body: Invalid JSON"),
        (b"", "application/json", "body: Invalid JSON"),
        (b'{"user_id": "u", "item_ids": ["a"], "actions": ["like"]}', "text/plain", "Content-Type: application/json"),
        (b'{"user_id": "u", "item_ids": ["a"], "actions": ["like"]}', None, "Content-Type: application/json"),
        (b'["not", "an", "object"]', "application/json", "body: Input should be an object"),
    ],
)
def test_interact_rejects_bodies_that_are_not_a_json_object(
    stack: ServiceStack, content: bytes, content_type: str | None, expected: str
) -> None:
    # /interact reads its body itself (not through FastAPI): the same 422 for everything that is not JSON.
    response = _post_raw(f"{stack.collector_url}/interact", content, content_type)
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]
    assert response.json()["errors"][0]["loc"][0] == "body"


@pytest.mark.parametrize(
    ("content", "content_type", "expected"),
    [
        (b'{"item_ids": ["n1"]}', "application/x-www-form-urlencoded", "Content-Type: application/json"),
        (b'{"item_ids": ["n1"]}', None, "Content-Type: application/json"),
        (b'{"item_ids": ["n1"],}', "application/json", "body: Invalid JSON"),
    ],
    ids=["form", "no-content-type", "broken-json"],
)
def test_add_items_says_when_the_body_is_not_json(
    stack: ServiceStack, content: bytes, content_type: str | None, expected: str
) -> None:
    """As /interact does: a body that is fine JSON under the wrong content type is told so, not "not a dict"."""
    response = _post_raw(f"{stack.recs_url}/add_items", content, content_type)
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"], response.text


def test_interact_documents_the_body_it_reads(stack: ServiceStack) -> None:
    spec = httpx.get(f"{stack.collector_url}/openapi.json", timeout=10).json()
    operation = spec["paths"]["/interact"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert operation["requestBody"]["required"] is True
    assert sorted(schema["required"]) == ["actions", "item_ids", "user_id"]
    assert schema["properties"]["actions"]["items"]["enum"] == ["like", "dislike"]
    assert set(operation["responses"]) >= {"200", "422", "503"}
    assert "HTTPValidationError" in operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"item_ids": ["a", "b"], "genres": [["x"]]}, "genres has 1 entries but item_ids has 2"),
        ({"item_ids": [], "genres": []}, "at least 1"),
        ({"item_ids": "abc"}, "item_ids"),
        ({"item_ids": ["a"], "genres": [[1]]}, "genres"),
    ],
)
def test_add_items_rejects_bad_input(stack: ServiceStack, body: dict[str, object], expected: str) -> None:
    response = httpx.post(f"{stack.recs_url}/add_items", json=body, timeout=10)
    assert response.status_code == 422
    assert expected in response.json()["detail"]


def test_recs_validation_and_empty_catalog(stack: ServiceStack) -> None:
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{stack.recs_url}/cleanup").status_code == 200
        assert client.post(f"{stack.recs_url}/cleanup").status_code == 200  # idempotent, POST too
        assert client.get(f"{stack.recs_url}/recs/new-user").json() == {"item_ids": []}
        for k in ("0", "101", "ten"):
            response = client.get(f"{stack.recs_url}/recs/u", params={"k": k})
            assert response.status_code == 422
            assert "k" in response.json()["detail"]
        # What Python's int() would take is not a query parameter: "5_0" would have been 50.
        for k in ("5.0", " 5", "+5", "5_0", "٣"):
            response = client.get(f"{stack.recs_url}/recs/u", params={"k": k})
            assert response.status_code == 422, k
            assert "whole number written in digits" in response.json()["detail"], response.text
        repeated = client.get(f"{stack.recs_url}/recs/u", params=[("k", "10"), ("k", "3")])
        assert repeated.status_code == 422 and "more than once" in repeated.json()["detail"]
        assert client.get(f"{stack.recs_url}/recs/u", params={"k": "007"}).status_code == 200
        assert client.get(f"{stack.recs_url}/recs/{'x' * 200}").status_code == 422
        not_json = client.post(
            f"{stack.recs_url}/add_items", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 422
        assert client.get(f"{stack.recs_url}/healthcheck").status_code == 200
        assert client.get(f"{stack.collector_url}/healthcheck").status_code == 200
