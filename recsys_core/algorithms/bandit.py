"""Thompson sampling over per-item Beta posteriors.

The evidence is counted per item: likes, dislikes and impressions (how often /recs showed the item). How each
kind of evidence moves the posterior is a parameter, because it is an empirical question:

* the HardML seed bandit: ``alpha = 1 + likes``, ``beta = 1 + dislikes`` (impressions ignored);
* like rate per impression: every impression without a like is a failure;
* a dislike also says the user *watched* the film, so it may count for the item's global appeal.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, fields
from numbers import Real
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


@dataclass(frozen=True, slots=True)
class ItemStats:
    """Per-item evidence aligned with the catalog index (arrays may be shorter than the catalog)."""

    likes: np.ndarray
    dislikes: np.ndarray
    impressions: np.ndarray

    @classmethod
    def empty(cls, n_items: int = 0) -> ItemStats:
        zeros = np.zeros(n_items, dtype=np.float32)
        return cls(zeros, zeros.copy(), zeros.copy())

    def __len__(self) -> int:
        return int(self.likes.size)

    def padded(self, n_items: int) -> ItemStats:
        """The same evidence over ``n_items`` arms: items added after the snapshot get empty arms."""
        if n_items == len(self):
            return self
        if n_items < len(self):
            return ItemStats(self.likes[:n_items], self.dislikes[:n_items], self.impressions[:n_items])

        def grow(values: np.ndarray) -> np.ndarray:
            out = np.zeros(n_items, dtype=np.float32)
            out[: values.size] = values
            return out

        return ItemStats(grow(self.likes), grow(self.dislikes), grow(self.impressions))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, likes=self.likes, dislikes=self.dislikes, impressions=self.impressions)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> ItemStats:
        with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
            return cls(
                arrays["likes"].astype(np.float32),
                arrays["dislikes"].astype(np.float32),
                arrays["impressions"].astype(np.float32),
            )


def require_finite(params: DataclassInstance) -> None:
    """Refuse a dataclass of parameters with a field that is not a finite number, naming the field.

    NaN passes every ``<``/``<=`` check and infinity passes the sign checks, and either breaks every request
    later (NaN posteriors, overflowing slot counts): refused where the parameters are built instead.
    """
    for parameter in fields(params):
        value = getattr(params, parameter.name)
        if not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"{parameter.name} must be a finite number, got {value!r}")


@dataclass(frozen=True, slots=True)
class BetaThompson:
    """How evidence maps to a Beta posterior; ``sample`` draws one posterior sample for every arm."""

    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    alpha_per_dislike: float = 0.0
    beta_per_dislike: float = 1.0
    # Weight of an impression that got neither a like nor a dislike (0 = the seed bandit, 1 = like rate).
    beta_per_silent_impression: float = 0.0

    def __post_init__(self) -> None:
        require_finite(self)
        if self.prior_alpha <= 0 or self.prior_beta <= 0:
            raise ValueError("Beta priors must be positive")
        weights = (self.alpha_per_dislike, self.beta_per_dislike, self.beta_per_silent_impression)
        if min(weights) < 0:
            raise ValueError("evidence weights must not be negative")

    def posterior(self, stats: ItemStats, n_items: int) -> tuple[np.ndarray, np.ndarray]:
        arms = stats.padded(n_items)
        silent = np.maximum(arms.impressions - arms.likes - arms.dislikes, 0.0)
        alpha = self.prior_alpha + arms.likes + self.alpha_per_dislike * arms.dislikes
        beta = self.prior_beta + self.beta_per_dislike * arms.dislikes + self.beta_per_silent_impression * silent
        return alpha.astype(np.float64), beta.astype(np.float64)

    def mean(self, stats: ItemStats, n_items: int) -> np.ndarray:
        alpha, beta = self.posterior(stats, n_items)
        return alpha / (alpha + beta)

    def sample(self, stats: ItemStats, n_items: int, rng: np.random.Generator) -> np.ndarray:
        """One joint posterior sample: each request draws its own, so concurrent users see different lists."""
        alpha, beta = self.posterior(stats, n_items)
        return rng.beta(alpha, beta)


def group_prior_means(
    groups: np.ndarray,
    successes: np.ndarray,
    impressions: np.ndarray,
    base_mean: float,
    per_item_cap: float,
    shrinkage: float,
) -> np.ndarray:
    """Per arm, a prior mean learned from the arms of its group (an empirical-Bayes prior on item metadata).

    The group's rate is the *typical* rate of its shown arms, not the impression-weighted one: each arm counts
    with at most ``per_item_cap`` impressions, so a few well-shown hits do not make their whole group look
    good. ``shrinkage`` pseudo-impressions at ``base_mean`` keep a group near the base until it has evidence.
    """
    n_groups = int(groups.max()) + 1 if groups.size else 0
    shown = impressions > 0
    rate = np.divide(successes, impressions, out=np.zeros(impressions.size), where=shown)
    weight = np.minimum(impressions, per_item_cap)
    total = np.bincount(groups, weights=weight * rate, minlength=n_groups)
    evidence = np.bincount(groups, weights=weight, minlength=n_groups)
    means = np.clip((total + shrinkage * base_mean) / (evidence + shrinkage), 1e-4, 0.5)
    return means[groups]
