"""One router per concern, joined in ``recommendations.app``."""
