"""Settings refuse values the services could not run with, at start-up rather than at the first request."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from event_collector.publisher import EventPublisher
from recsys_core.settings import Settings


@pytest.mark.parametrize("variable", ["AMQP_PUBLISH_MAX_IN_FLIGHT", "HTTP_KEEP_ALIVE_S"])
def test_a_count_below_one_is_refused(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, "0")
    with pytest.raises(ValidationError, match=variable.lower()):
        Settings()


def test_the_publisher_needs_room_for_one_message_in_flight() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        EventPublisher(Settings().amqp_url, "events", timeout_s=1.0, max_in_flight=0)
    assert Settings.model_fields["amqp_publish_max_in_flight"].default == 4  # the README's default


# Each would start a service that silently does nothing useful: e.g. AMQP_PUBLISH_TIMEOUT_S=0 kept the collector
# from ever connecting (never ready), MAX_BODY_BYTES=-5 refused every body, RECS_WORKERS=0 served nothing.
REFUSED = [
    ("REDIS_TIMEOUT_S", "0"),
    ("AMQP_PUBLISH_TIMEOUT_S", "0"),
    ("AMQP_PUBLISH_TIMEOUT_S", "-1"),
    ("MAX_BODY_BYTES", "-5"),
    ("MAX_BODY_BYTES", "0"),
    ("RECS_WORKERS", "0"),
    ("RECS_PORT", "0"),
    ("COLLECTOR_PORT", "70000"),
    ("DEFAULT_K", "0"),
    ("DEFAULT_K", "101"),
    ("PREFETCH_COUNT", "0"),
    ("CONSUME_BATCH_SIZE", "0"),
    ("CONSUME_BATCH_WAIT_S", "-0.1"),
    ("BANDIT_PUBLISH_INTERVAL_S", "0"),
    ("CO_LIKES_INTERVAL_S", "0"),
    ("CO_LIKES_NEIGHBOURS", "0"),
    ("HOLDOUT_FRACTION", "0"),
    ("HOLDOUT_FRACTION", "1"),
    ("BPR_FACTORS", "0"),
    ("BPR_ITERATIONS", "0"),
    ("BPR_LEARNING_RATE", "0"),
    ("BPR_REGULARIZATION", "-0.01"),
    ("BPR_THREADS", "0"),
    ("BPR_NEIGHBOUR_MIN_LIKES", "-1"),
    ("CANDIDATES_PER_SLOT", "0"),
    # Slower than half the 1.5 s a collector stamps after its last announcement: a slow Redis would make 503s.
    ("GENERATION_POLL_INTERVAL_S", "0.6"),
]
# Zeros that mean something (README's configuration table): they must stay accepted.
MEANINGFUL_ZEROS = [
    "MALLOC_ARENA_MAX",
    "BACKGROUND_NICENESS",
    "TRAINING_MAX_EVENTS",
    "TWINS_MAX_USERS",
    "TWINS_ACTIVE_S",
    "TWINS_MAX_VIEWERS_PER_ITEM",
    "BPR_NEIGHBOUR_MIN_LIKES",
    "BPR_REGULARIZATION",
    "MIN_NEW_EVENTS_TO_RETRAIN",
    "CONSUME_BATCH_WAIT_S",
]


@pytest.mark.parametrize(("variable", "value"), REFUSED)
def test_a_value_that_would_disable_a_service_is_refused(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.lower()):
        Settings(_env_file=None)


@pytest.mark.parametrize("variable", MEANINGFUL_ZEROS)
def test_a_zero_with_a_meaning_is_accepted(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, "0")
    assert getattr(Settings(_env_file=None), variable.lower()) == 0
