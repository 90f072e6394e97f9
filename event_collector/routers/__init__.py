"""One router per concern, joined in ``event_collector.app``."""
