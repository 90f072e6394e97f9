"""One router per concern, joined in ``webapp.app``."""
