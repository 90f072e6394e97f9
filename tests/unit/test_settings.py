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
