"""The HardML score: four quality metrics worth 10 points each plus a latency bonus worth 10, out of 50.

Each metric earns points linearly between its floor (0 points) and its full mark (10 points), clipped. The
latency bonus goes linearly from 0 points at 800 ms mean latency to 10 points at 80 ms, and only counts when
the four quality metrics together earn at least 30 points (a fast but useless service gets no bonus).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType

POINTS_PER_METRIC = 10.0
BONUS_THRESHOLD = 30.0


@dataclass(frozen=True, slots=True)
class Scale:
    floor: float
    full: float


# metric -> (value earning 0 points, value earning full points)
METRIC_SCALES: Mapping[str, Scale] = MappingProxyType(
    {
        "precision": Scale(0.02, 0.15),
        "ndcg": Scale(0.02, 0.07),
        "diversity": Scale(0.1, 0.4),
        "coverage": Scale(0.1, 0.8),
    }
)
# Lower is better: the floor is the slow end.
LATENCY_SCALE = Scale(floor=800.0, full=80.0)
MAX_SCORE = POINTS_PER_METRIC * (len(METRIC_SCALES) + 1)


def linear_points(value: float | None, scale: Scale, max_points: float = POINTS_PER_METRIC) -> float:
    """Points for ``value`` on a linear scale; works for decreasing scales too (floor > full)."""
    if value is None:
        return 0.0
    fraction = (value - scale.floor) / (scale.full - scale.floor)
    return max_points * min(1.0, max(0.0, fraction))


@dataclass(frozen=True, slots=True)
class ComponentScore:
    value: float | None
    floor: float
    full: float
    points: float


@dataclass(frozen=True, slots=True)
class Score:
    components: dict[str, ComponentScore]
    latency: ComponentScore
    bonus_eligible: bool

    @property
    def quality_points(self) -> float:
        return sum(c.points for c in self.components.values())

    @property
    def bonus_points(self) -> float:
        return self.latency.points if self.bonus_eligible else 0.0

    @property
    def total(self) -> float:
        return self.quality_points + self.bonus_points

    def as_dict(self) -> dict[str, object]:
        return {
            "components": {name: asdict(c) for name, c in self.components.items()},
            "latency_bonus": {
                **asdict(self.latency),
                "eligible": self.bonus_eligible,
                "counted_points": self.bonus_points,
            },
            "quality_points": self.quality_points,
            "bonus_threshold": BONUS_THRESHOLD,
            "total": self.total,
            "max": MAX_SCORE,
        }


def hardml_score(
    precision: float, ndcg: float, diversity: float | None, coverage: float, mean_latency_ms: float | None
) -> Score:
    values = {"precision": precision, "ndcg": ndcg, "diversity": diversity, "coverage": coverage}
    components = {
        name: ComponentScore(values[name], scale.floor, scale.full, linear_points(values[name], scale))
        for name, scale in METRIC_SCALES.items()
    }
    latency = ComponentScore(
        mean_latency_ms, LATENCY_SCALE.floor, LATENCY_SCALE.full, linear_points(mean_latency_ms, LATENCY_SCALE)
    )
    quality = sum(c.points for c in components.values())
    # A tiny tolerance: 30 points reached through float arithmetic must not miss the bonus by 1e-15.
    return Score(components, latency, bonus_eligible=quality >= BONUS_THRESHOLD - 1e-9)
