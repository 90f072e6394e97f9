"""Keyword overrides of the strategies' parameter dataclasses, typed field by field.

Tests build parameters from dicts of overrides (merged with a flat bandit, or parametrised). A ``dict[str, float]``
would claim a float for the int and bool fields too; these TypedDicts give each key its field's type, and mypy
checks them against the dataclass wherever one is unpacked into it (a renamed or retyped field is an error there).
"""

from __future__ import annotations

from typing import TypedDict


class BlendOverrides(TypedDict, total=False):
    """Any fields of ``recsys_core.strategies.blend.BlendParams``."""

    prior_strength: float
    prior_mean: float
    group_prior_shrinkage: float
    group_prior_item_cap: float
    alpha_per_dislike: float
    beta_per_dislike: float
    beta_per_silent_impression: float
    exploit_pessimism: float
    taste_weight: float
    taste_smoothing: float
    taste_dislike_weight: float
    neighbour_weight: float
    dislike_neighbour_weight: float
    neighbour_recency_decay: float
    bpr_weight: float
    twin_weight: float
    dislike_streak: int
    explore_slots: float
    explore_below: int
    diversity_weight: float
    genre_cap: int
    posterior_draws: int


class TwinOverrides(TypedDict, total=False):
    """Any fields of ``recsys_core.algorithms.twins.TwinParams``."""

    prior: float
    noise: float
    max_candidates: int
    max_viewers_per_item: int
    match_dislikes: bool
    min_weight: float
    min_mass: float
    max_items: int
    link_weight: float
