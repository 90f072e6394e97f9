"""Why an item was recommended, in words, from the source the recommendations service reports for it.

A source is a bare name ("bpr") or a name with the item it derives from ("neighbour:<item_id>"); the part
after the first colon is that anchor item, whose title the UI shows ("because you liked <title>").
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

REASONS: Mapping[str, str] = MappingProxyType(
    {
        "bandit": "popular with others (Thompson sampling)",
        "bpr": "BPR matches your taste",
        "explore": "exploration",
        "fill": "filler (unseen)",
        "taste": "matches your genre taste",
        "fallback": "fallback: Redis unavailable",
    }
)
NEIGHBOUR = "neighbour"
UNKNOWN = "unknown"


def split_source(token: str) -> tuple[str, str | None]:
    """("neighbour", "item-7") for "neighbour:item-7"; ("bpr", None) for "bpr"; ("unknown", None) for ""."""
    name, separator, anchor = token.strip().partition(":")
    return (name or UNKNOWN), (anchor if separator and anchor else None)


def describe(source: str, anchor_title: str | None = None) -> str:
    if source == NEIGHBOUR:
        return f"because you liked {anchor_title}" if anchor_title else "similar to an item you liked"
    if source == UNKNOWN:
        return "reason not reported"
    return REASONS.get(source, f"source: {source}")
