"""The wire contracts: what AddItemsRequest / InteractRequest accept and refuse, and with which messages."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from recsys_core.schemas import (
    MAX_DISTINCT_GENRES_PER_BATCH,
    MAX_GENRES_PER_ITEM,
    MAX_ID_LENGTH,
    AddItemsRequest,
    EventBatch,
    EventMessage,
    InteractRequest,
)


def _messages(error: pytest.ExceptionInfo[ValidationError]) -> str:
    return " | ".join(str(e["msg"]) for e in error.value.errors())


def _interact(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"user_id": "user-1", "item_ids": ["a", "b"], "actions": ["like", "dislike"]}
    body.update(overrides)
    return body


# --- AddItemsRequest ---------------------------------------------------------------------------------------


def test_add_items_accepts_aligned_genres_and_titles() -> None:
    request = AddItemsRequest(item_ids=["a", "b"], genres=[["Drama"], []], titles=["A", ""])
    assert request.item_ids == ["a", "b"]
    assert request.genres == [["Drama"], []]
    assert request.titles == ["A", ""]


def test_add_items_genres_none_is_allowed() -> None:
    request = AddItemsRequest(item_ids=["a", "b", "c"])
    assert request.genres is None
    assert request.titles is None
    assert AddItemsRequest(item_ids=["a"], genres=None).genres is None


def test_add_items_genre_length_mismatch_mentions_both_lengths() -> None:
    with pytest.raises(ValidationError) as error:
        AddItemsRequest(item_ids=["a", "b", "c"], genres=[["Drama"], ["Comedy"]])
    message = _messages(error)
    assert "genres has 2 entries" in message
    assert "item_ids has 3" in message


def test_add_items_title_length_mismatch_mentions_both_lengths() -> None:
    with pytest.raises(ValidationError) as error:
        AddItemsRequest(item_ids=["a"], titles=["x", "y"])
    message = _messages(error)
    assert "titles has 2 entries" in message
    assert "item_ids has 1" in message


def test_add_items_too_many_genres_names_the_position() -> None:
    genres = [["g"], [f"g{i}" for i in range(MAX_GENRES_PER_ITEM + 1)]]
    with pytest.raises(ValidationError) as error:
        AddItemsRequest(item_ids=["a", "b"], genres=genres)
    assert f"item at position 1 has more than {MAX_GENRES_PER_ITEM} genres" in _messages(error)


def test_add_items_refuses_a_batch_with_too_many_distinct_genres() -> None:
    """Each replica holds an items x genres matrix: a flood of distinct genres must be a 422, not an OOM."""
    limit = MAX_DISTINCT_GENRES_PER_BATCH
    ids = [f"i{n}" for n in range(limit + 1)]
    assert AddItemsRequest(item_ids=ids[:limit], genres=[[f"g{n}"] for n in range(limit)])
    with pytest.raises(ValidationError) as error:
        AddItemsRequest(item_ids=ids, genres=[[f"g{n}"] for n in range(limit + 1)])
    assert f"the batch names {limit + 1} distinct genres; at most {limit} are allowed" in _messages(error)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"actions": ["like", "like"]}, "1 item ids with 2 actions"),
        ({"item_ids": [], "actions": []}, "0 item ids with 0 actions"),
        ({"timestamp": float("inf")}, "timestamps must be finite"),
        ({"received_at": float("nan")}, "timestamps must be finite"),
    ],
)
def test_an_event_message_the_pipeline_could_not_store_does_not_parse(overrides: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "generation": 0,
        "user_id": "u",
        "item_ids": ["a"],
        "actions": ["like"],
        "timestamp": 1.0,
        "received_at": 1.0,
    }
    with pytest.raises(ValidationError) as error:
        EventMessage(**{**fields, **overrides})
    assert message in _messages(error)


def test_add_items_exactly_max_genres_is_fine() -> None:
    genres = [[f"g{i}" for i in range(MAX_GENRES_PER_ITEM)]]
    accepted = AddItemsRequest(item_ids=["a"], genres=genres).genres
    assert accepted is not None and len(accepted[0]) == MAX_GENRES_PER_ITEM


def test_add_items_empty_list_and_empty_genre_rejected() -> None:
    with pytest.raises(ValidationError):
        AddItemsRequest(item_ids=[])
    with pytest.raises(ValidationError):
        AddItemsRequest(item_ids=["a"], genres=[[""]])


@pytest.mark.parametrize(
    "item_id",
    [
        "",
        "has space",
        "slash/inside",
        "tab\tin",
        "trailing-newline\n",
        "кириллица",
        "x" * (MAX_ID_LENGTH + 1),
        ".",
        "..",
        "...",
    ],
)
def test_add_items_bad_ids_rejected(item_id: str) -> None:
    with pytest.raises(ValidationError):
        AddItemsRequest(item_ids=["ok", item_id])


@pytest.mark.parametrize(
    "item_id", [str(uuid.UUID(int=7)), "x" * MAX_ID_LENGTH, "a.b_c:d@e+f-g", "0", "user@example.com", ".hidden", "v1."]
)
def test_add_items_good_ids_accepted(item_id: str) -> None:
    assert AddItemsRequest(item_ids=[item_id]).item_ids == [item_id]


def test_add_items_ids_are_strict_strings() -> None:
    with pytest.raises(ValidationError):
        AddItemsRequest.model_validate({"item_ids": [123]})


def test_add_items_extra_fields_ignored() -> None:
    request = AddItemsRequest.model_validate({"item_ids": ["a"], "unexpected": 1})
    assert not hasattr(request, "unexpected")


# --- InteractRequest ---------------------------------------------------------------------------------------


def test_interact_valid_request() -> None:
    request = InteractRequest.model_validate(_interact(timestamp=1_700_000_000.5))
    assert request.user_id == "user-1"
    assert request.actions == ["like", "dislike"]
    assert request.timestamp == 1_700_000_000.5


def test_interact_timestamp_optional_and_zero_allowed() -> None:
    assert InteractRequest.model_validate(_interact()).timestamp is None
    assert InteractRequest.model_validate(_interact(timestamp=0)).timestamp == 0.0


def test_interact_length_mismatch_mentions_both_lengths() -> None:
    with pytest.raises(ValidationError) as error:
        InteractRequest.model_validate(_interact(item_ids=["a", "b", "c"], actions=["like"]))
    message = _messages(error)
    assert "actions has 1 entries" in message
    assert "item_ids has 3" in message


def test_interact_unknown_action_rejected_at_its_position() -> None:
    with pytest.raises(ValidationError) as error:
        InteractRequest.model_validate(_interact(actions=["like", "love"]))
    errors = error.value.errors()
    assert [tuple(e["loc"]) for e in errors] == [("actions", 1)]
    assert "'like' or 'dislike'" in errors[0]["msg"]


@pytest.mark.parametrize("field", ["item_ids", "actions"])
def test_interact_empty_lists_rejected(field: str) -> None:
    body = _interact(item_ids=[], actions=[]) if field == "item_ids" else _interact(actions=[])
    with pytest.raises(ValidationError) as error:
        InteractRequest.model_validate(body)
    assert field in {e["loc"][0] for e in error.value.errors() if e["loc"]}


@pytest.mark.parametrize("timestamp", [-1.0, -1e-9, float("-inf"), float("inf"), float("nan")])
def test_interact_bad_timestamp_rejected(timestamp: float) -> None:
    with pytest.raises(ValidationError):
        InteractRequest.model_validate(_interact(timestamp=timestamp))


@pytest.mark.parametrize("timestamp", [float("inf"), float("nan")], ids=["inf", "nan"])
def test_interact_infinite_timestamp_message(timestamp: float) -> None:
    with pytest.raises(ValidationError) as error:
        InteractRequest.model_validate(_interact(timestamp=timestamp))
    assert "finite number" in _messages(error), "not 'greater than or equal to 0': NaN is no number at all"


def test_interact_bad_user_id_rejected() -> None:
    with pytest.raises(ValidationError):
        InteractRequest.model_validate(_interact(user_id="has space"))
    with pytest.raises(ValidationError):
        InteractRequest.model_validate(_interact(user_id=""))


# --- EventBatch (the collector's group commit) --------------------------------------------------------------


def test_an_event_batch_round_trips_and_is_never_empty() -> None:
    events = [
        EventMessage(generation=3, user_id=f"u{n}", item_ids=["a"], actions=["like"], timestamp=1.0, received_at=2.0)
        for n in range(3)
    ]
    assert EventBatch.model_validate_json(EventBatch(events=events).model_dump_json()).events == events
    with pytest.raises(ValidationError):
        EventBatch(events=[])


@pytest.mark.parametrize(
    "genre", [" ", "   ", "\u0000x", "a\tb", "new\nline"], ids=["space", "spaces", "nul", "tab", "nl"]
)
def test_blank_or_control_character_genres_are_refused(genre: str) -> None:
    with pytest.raises(ValidationError):
        AddItemsRequest.model_validate({"item_ids": ["a"], "genres": [[genre]]})


@pytest.mark.parametrize("genre", ["Sci-Fi", "(no genres listed)", "Film-Noir", "Комедия", "a b"])
def test_printable_genres_are_accepted(genre: str) -> None:
    assert AddItemsRequest.model_validate({"item_ids": ["a"], "genres": [[genre]]}).genres == [[genre]]


def test_a_timestamp_in_milliseconds_is_refused_with_a_hint() -> None:
    with pytest.raises(ValidationError) as error:
        InteractRequest.model_validate(_interact(timestamp=time.time() * 1000))
    assert "not milliseconds" in _messages(error)
    # A client clock an hour ahead is tolerated.
    assert InteractRequest.model_validate(_interact(timestamp=time.time() + 3600)).timestamp is not None
