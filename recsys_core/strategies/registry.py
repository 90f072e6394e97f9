"""Strategies by name, built from plain parameters (what an experiment config holds)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from recsys_core.algorithms.bandit import BetaThompson
from recsys_core.strategies.bandit import ThompsonStrategy
from recsys_core.strategies.base import Strategy
from recsys_core.strategies.blend import BlendParams, BlendStrategy
from recsys_core.strategies.bpr import BPRStrategy


class StrategyConfigError(ValueError):
    """A strategy name or parameter the registry does not accept."""


class BanditParams(BaseModel):
    # allow_inf_nan=False: pydantic reads "Infinity"/"NaN" strings as floats, which would pass the sign checks.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    alpha_per_dislike: float = 0.0
    beta_per_dislike: float = 1.0
    beta_per_silent_impression: float = 0.0

    def build(self) -> BetaThompson:
        return BetaThompson(**self.model_dump())


def _thompson(params: Mapping[str, Any]) -> Strategy:
    return ThompsonStrategy(BanditParams(**params).build())


def _bpr(params: Mapping[str, Any]) -> Strategy:
    return BPRStrategy(fallback=_thompson(params))


def _blend(params: Mapping[str, Any]) -> Strategy:
    return BlendStrategy(BlendParams(**params))


STRATEGY_BUILDERS: Mapping[str, Callable[[Mapping[str, Any]], Strategy]] = MappingProxyType(
    {
        "thompson": _thompson,
        "bpr": _bpr,
        "blend": _blend,
    }
)


def build_strategy(name: str, params: Mapping[str, Any] | None = None) -> Strategy:
    builder = STRATEGY_BUILDERS.get(name)
    if builder is None:
        raise StrategyConfigError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGY_BUILDERS))}")
    try:
        return builder(dict(params or {}))
    except (ValidationError, TypeError, ValueError) as error:
        raise StrategyConfigError(f"invalid parameters for strategy {name!r}: {error}") from error
