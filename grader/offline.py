"""An offline replay of the grading protocol against the core strategies, for fast parameter sweeps.

It is not the grader: no HTTP, no Redis, no processes. It replays the same simulated users with the same
concurrency, and pauses drawn from the same ranges (not the same values: its random stream is its own), on a
virtual clock, and models the deployment's delays — bandit evidence becomes
visible after ``snapshot_delay_s`` (pipeline + snapshot publish + reload), co-like neighbours are recomputed
every ``co_likes_interval_s``, BPR is retrained every ``retrain_interval_s`` — so strategies can be compared
in seconds instead of minutes. Every figure that is claimed comes from real grader runs; this only chooses
which ones are worth running.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from grader.catalog import Catalog, build_catalog
from grader.config import K
from grader.evaluation import CallOutcome, evaluate_lists
from grader.metrics import coverage
from grader.reference import popularity_lists, popularity_ranking
from grader.scoring import hardml_score
from grader.simulation import Dataset, SimulatedUser, react, sample_users
from pipeline.state import InteractionLog
from pipeline.training import fit_model
from recsys_core.algorithms.bandit import ItemStats
from recsys_core.algorithms.co_likes import co_like_neighbours
from recsys_core.algorithms.factors import BPRParams, FactorModel
from recsys_core.algorithms.twins import DenseTwinLift, ReactionBook, ReactionMatrix, TwinParams
from recsys_core.catalog import CatalogView
from recsys_core.movielens import load_movies, load_ratings, locate
from recsys_core.settings import Settings
from recsys_core.strategies.base import (
    DrawCache,
    ItemNeighbours,
    RecommendationContext,
    UserProfile,
    rank_with_fill,
)
from recsys_core.strategies.registry import build_strategy

CALL_LATENCY_S = 0.01


@dataclass(frozen=True, slots=True)
class OfflineConfig:
    strategy: str = "blend"
    params: dict[str, Any] = field(default_factory=dict)
    users: int = 3000
    seed: int = 42
    distinct_raters: bool = False  # as the grader's RunConfig
    concurrency: int = 50
    sessions: int = 2
    calls_per_session: int = 2
    pause_in_session: tuple[float, float] = (0.1, 0.3)
    pause_between_sessions: tuple[float, float] = (1.0, 2.0)
    snapshot_delay_s: float = 0.3
    # How often the pipeline publishes the bandit snapshot /recs ranks on (its draws are shared until the next).
    snapshot_interval_s: float = 0.2
    co_likes_interval_s: float = 2.0
    co_likes_neighbours: int = 20
    retrain_interval_s: float = 30.0
    train_seconds: float = 2.0
    train: bool = True
    neighbour_min_likes: int = 1  # as BPRParams
    candidates_per_slot: int = 3
    # Match each user against earlier users' reactions (the twin lift); {} of TwinParams overrides.
    twins: bool = True
    twin_params: dict[str, Any] = field(default_factory=dict)
    # How often the pipeline refreshes the matrix of everybody's reactions that twins are looked up in.
    twin_interval_s: float = 0.5
    # The pipeline computes a user's twins when their feedback is stored: ready this long after the answer
    # (grader run 37: 86% of the publications within 0.1 s of the collector receiving the feedback).
    twin_delay_s: float = 0.1
    # On each matrix rebuild the pipeline matches again the users who answered within this window
    # (``TWINS_ACTIVE_S``); 0: a user's lift is computed only when their feedback arrives.
    twins_active_s: float = 0.0


@dataclass(slots=True)
class _UserRun:
    user: SimulatedUser
    rng: random.Random
    call: int = 0
    shown: set[str] = field(default_factory=set)
    history: list[tuple[str, str]] = field(default_factory=list)
    lists: list[list[str]] = field(default_factory=list)
    # (ready at, lift): the twins the pipeline publishes after each answer, newest last
    twins: list[tuple[float, DenseTwinLift | None]] = field(default_factory=list)
    twins_matrix_at: float = -1.0  # when the matrix the newest lift was computed on was built
    answered_at: float = -1.0  # when the user's latest feedback was sent

    def twins_at(self, now: float) -> DenseTwinLift | None:
        ready = [lift for at, lift in self.twins if at <= now]
        return ready[-1] if ready else None


@dataclass(slots=True)
class _World:
    """What the deployment would hold: visible evidence, pending evidence, models."""

    catalog: CatalogView
    likes: np.ndarray
    dislikes: np.ndarray
    impressions: np.ndarray
    # (visible_at, seq, index, kind, amount): evidence the pipeline has not published yet
    pending: list[tuple[float, int, int, int, float]] = field(default_factory=list)
    log: InteractionLog = field(default_factory=InteractionLog)
    model: FactorModel | None = None
    pending_model: tuple[float, FactorModel] | None = None
    co_likes: ItemNeighbours | None = None
    next_retrain: float = 0.0
    next_co_likes: float = 0.0
    seq: int = 0

    def queue(self, visible_at: float, index: int, kind: int, amount: float = 1.0) -> None:
        self.seq += 1
        heapq.heappush(self.pending, (visible_at, self.seq, index, kind, amount))

    def settle(self, now: float) -> None:
        arrays = (self.likes, self.dislikes, self.impressions)
        while self.pending and self.pending[0][0] <= now:
            _, _, index, kind, amount = heapq.heappop(self.pending)
            arrays[kind][index] += amount
        if self.pending_model is not None and self.pending_model[0] <= now:
            self.model = self.pending_model[1]
            self.pending_model = None


def _load_dataset(settings: Settings) -> Dataset:
    path = locate(settings)
    return Dataset(load_movies(path), load_ratings(path))


def _catalog_view(catalog: Catalog) -> CatalogView:
    ids = [item.item_id for item in catalog.items]
    return CatalogView.build(1, ids, {item.item_id: item.genres for item in catalog.items})


def _profile(view: CatalogView, run: _UserRun) -> UserProfile:
    latest: dict[str, str] = {}
    for item_id, action in run.history:
        latest.pop(item_id, None)
        latest[item_id] = action
    return UserProfile(
        shown=view.mask_of(run.shown),
        liked=view.indices_of(i for i, a in latest.items() if a == "like"),
        disliked=view.indices_of(i for i, a in latest.items() if a == "dislike"),
        recent_actions=np.array([1 if a == "like" else -1 for _, a in run.history], dtype=np.int8),
    )


def _retrain(world: _World, now: float, config: OfflineConfig, version: int) -> None:
    columns = world.log.columns()
    params = BPRParams(neighbour_min_likes=config.neighbour_min_likes)
    output = fit_model(columns, list(world.catalog.item_ids), params, holdout_fraction=0.0, evaluate=False)
    if output is None:
        return
    model = FactorModel(
        version=version,
        user_ids=output.user_ids,
        user_factors=output.user_factors,
        item_ids=np.array(world.catalog.item_ids),
        item_factors=output.item_factors,
        neighbour_indices=output.neighbour_indices,
        neighbour_sims=output.neighbour_sims,
    )
    world.pending_model = (now + config.train_seconds, model)


def _refresh_co_likes(world: _World, config: OfflineConfig) -> None:
    columns = world.log.columns()
    likes = columns.actions == 1
    index = world.catalog.index
    item_idx = np.array([index[i] for i in columns.item_ids], dtype=np.int64)[columns.items[likes]]
    world.co_likes = co_like_neighbours(
        columns.users[likes].astype(np.int64), item_idx, len(world.catalog), config.co_likes_neighbours
    )


def simulate(dataset: Dataset, config: OfflineConfig) -> dict[str, Any]:
    started = time.perf_counter()
    catalog = build_catalog(dataset.movies, config.seed)
    view = _catalog_view(catalog)
    users = sample_users(dataset.ratings, catalog, config.users, config.seed, config.distinct_raters)
    strategy = build_strategy(config.strategy, config.params)
    n_items = len(view)
    world = _World(
        view,
        likes=np.zeros(n_items, np.float32),
        dislikes=np.zeros(n_items, np.float32),
        impressions=np.zeros(n_items, np.float32),
    )
    world.next_retrain = config.retrain_interval_s
    world.next_co_likes = config.co_likes_interval_s
    np_rng = np.random.default_rng(config.seed)
    calls_per_user = config.sessions * config.calls_per_session
    runs: list[_UserRun] = []
    twin_params = TwinParams(**config.twin_params)
    book = ReactionBook(max_users=len(users))
    matrix, matrix_at, next_matrix = book.matrix(), 0.0, 0.0
    # The refreshes a rematch window can reach back to (the pipeline matches active users on each one).
    recent_matrices: deque[tuple[float, ReactionMatrix]] = deque(
        maxlen=int(config.twins_active_s / config.twin_interval_s) + 3
    )
    clock: list[tuple[float, int, int]] = []  # (time, arrival, run index)
    next_user = 0

    def start_user(at: float) -> None:
        nonlocal next_user
        if next_user < len(users):
            user = users[next_user]
            runs.append(_UserRun(user, random.Random(f"{config.seed}:{user.user_id}")))
            heapq.heappush(clock, (at, user.arrival, len(runs) - 1))
            next_user += 1

    for slot in range(min(config.concurrency, len(users))):
        start_user(slot * 0.001)
    version = 0
    stats, draws, next_snapshot = ItemStats.empty(n_items), DrawCache(), 0.0
    while clock:
        now, _, run_index = heapq.heappop(clock)
        world.settle(now)
        if config.train and now >= world.next_retrain:
            version += 1
            _retrain(world, now, config, version)
            world.next_retrain = now + config.retrain_interval_s
        if config.co_likes_interval_s > 0 and now >= world.next_co_likes:
            _refresh_co_likes(world, config)
            world.next_co_likes = now + config.co_likes_interval_s
        run = runs[run_index]
        if config.twins and now >= next_matrix:
            matrix, matrix_at, next_matrix = book.matrix(), now, now + config.twin_interval_s
            recent_matrices.append((matrix_at, matrix))
        if config.twins and run.history and config.twins_active_s > 0:
            # The pipeline recomputes the twins of recently active users on every matrix refresh: what the user
            # sees now is the lift of the latest refresh that came after their last lift, within the window of
            # their answer, and early enough to be published by now.
            newest_visible = min(now - config.twin_delay_s, run.answered_at + config.twins_active_s)
            eligible = [(at, m) for at, m in recent_matrices if run.twins_matrix_at < at <= newest_visible]
            if eligible:
                at, rematrix = eligible[-1]
                run.twins.append((at + config.twin_delay_s, _twins(rematrix, book, run, view, twin_params)))
                run.twins_matrix_at = at
        if now >= next_snapshot:
            stats = ItemStats(world.likes.copy(), world.dislikes.copy(), world.impressions.copy())
            draws, next_snapshot = DrawCache(), now + config.snapshot_interval_s
        ctx = RecommendationContext(
            user_id=run.user.user_id,
            catalog=view,
            stats=stats,
            model=world.model,
            profile=_profile(view, run),
            rng=np_rng,
            k=K,
            co_likes=world.co_likes,
            draws=draws,
            user_vector=world.model.user_vector(run.user.user_id) if world.model is not None else None,
            twins=run.twins_at(now),
        )
        wanted = K * config.candidates_per_slot
        ranked = rank_with_fill(strategy, ctx, wanted)
        shown = [view.item_ids[c.index] for c in ranked[:K]]
        run.lists.append(shown)
        run.shown.update(shown)
        answered_at = now + CALL_LATENCY_S
        for item_id in shown:
            world.queue(answered_at + config.snapshot_delay_s, view.index[item_id], 2)
        reaction = react(run.user, shown)
        if config.twins and reaction:  # no answer, no /interact: the pipeline hears nothing
            latest_answers = dict(run.history)
            latest_answers.update(zip(reaction.item_ids, reaction.actions, strict=True))
            book.record(
                run.user.user_id,
                run.shown,
                [i for i, a in latest_answers.items() if a == "like"],
                [i for i, a in latest_answers.items() if a == "dislike"],
            )
        run.call += 1
        for item_id, action in zip(reaction.item_ids, reaction.actions, strict=True):
            run.history.append((item_id, action))
            world.log.append(run.user.user_id, item_id, action, answered_at)
            world.queue(answered_at + config.snapshot_delay_s, view.index[item_id], 0 if action == "like" else 1)
        if config.twins and reaction:
            run.twins.append((answered_at + config.twin_delay_s, _twins(matrix, book, run, view, twin_params)))
            run.twins_matrix_at = matrix_at
            run.answered_at = answered_at
        if run.call >= calls_per_user:
            start_user(answered_at)
            continue
        pause = config.pause_in_session if run.call % config.calls_per_session else config.pause_between_sessions
        heapq.heappush(clock, (answered_at + run.rng.uniform(*pause), run.user.arrival, run_index))
    return _summarise(runs, catalog, config, time.perf_counter() - started, now)


def _twins(
    matrix: ReactionMatrix, book: ReactionBook, run: _UserRun, view: CatalogView, params: TwinParams
) -> DenseTwinLift | None:
    """The lift the pipeline would publish for ``run``, linking the user to a likely twin as it would."""
    latest = dict(run.history)
    liked = [i for i, a in latest.items() if a == "like"]
    disliked = [i for i, a in latest.items() if a == "dislike"]
    if not liked and not disliked:
        return None
    lift = matrix.lift(run.user.user_id, run.shown, liked, disliked, params)
    if lift is None:
        return None
    if lift.sure_twin is not None:
        book.link(run.user.user_id, lift.sure_twin)
    return DenseTwinLift.over(lift, view.index, len(view))


def _summarise(
    runs: Sequence[_UserRun], catalog: Catalog, config: OfflineConfig, wall_s: float, virtual_s: float
) -> dict[str, Any]:
    outcomes = [o for run in runs for o in evaluate_lists(run.user, run.lists, catalog, K)]
    per_user_precision = [
        float(np.mean([o.precision for o in evaluate_lists(run.user, run.lists, catalog, K)])) for run in runs
    ]
    unique = {item for run in runs for items in run.lists for item in items}
    diversities = [o.diversity for o in outcomes if o.diversity is not None]
    metrics = {
        "precision_at_10": float(np.mean([o.precision for o in outcomes])),
        "ndcg_at_10": float(np.mean([o.ndcg for o in outcomes])),
        "diversity": float(np.mean(diversities)) if diversities else 0.0,
        "coverage": coverage(len(unique), len(catalog)),
    }
    calls_per_user = config.sessions * config.calls_per_session
    by_call = _precision_by_call(outcomes, calls_per_user)
    quintile = max(len(runs) // 5, 1)
    by_arrival = {
        f"precision_users_{q + 1}/5": float(
            np.mean([o.precision for o in outcomes if q * quintile <= o.arrival < (q + 1) * quintile])
        )
        for q in range(5)
    }
    ranking = popularity_ranking([run.user for run in runs], catalog)
    discovery = _discovery(runs, ranking, calls_per_user)
    popular = popularity_lists(ranking, calls_per_user, K)
    popular_outcomes = [o for run in runs for o in evaluate_lists(run.user, popular, catalog, K)]
    perfect_popularity_by_call = _precision_by_call(popular_outcomes, calls_per_user)
    score = hardml_score(
        metrics["precision_at_10"], metrics["ndcg_at_10"], metrics["diversity"], metrics["coverage"], None
    )
    return {
        "config": asdict(config),
        "metrics": metrics,
        "by_call": by_call,
        "perfect_popularity_by_call": perfect_popularity_by_call,
        "by_arrival": by_arrival,
        "discovery": discovery,
        "quality_points": score.quality_points,
        "per_user_precision_mean": float(np.mean(per_user_precision)),
        "wall_seconds": wall_s,
        "virtual_seconds": virtual_s,
    }


def _precision_by_call(outcomes: Sequence[CallOutcome], calls_per_user: int) -> dict[str, float]:
    return {
        f"precision_call_{i + 1}": float(np.mean([o.precision for o in outcomes if o.index == i]))
        for i in range(calls_per_user)
    }


def _discovery(runs: Sequence[_UserRun], ranking: Sequence[str], calls_per_user: int) -> dict[str, float]:
    """How many of the items the perfect-popularity list shows (the first ``calls_per_user * K`` of its
    ``ranking``) the bandit found.

    "Found" means shown to at least 1% of the users: an item shown a handful of times early on and never again
    was tried and dropped, usually after a few showings without a like.
    """
    top = ranking[: calls_per_user * K]
    shown = Counter(item for run in runs for items in run.lists for item in items)
    counts = np.array([shown[item] for item in top], dtype=np.float64)
    return {
        "perfect_popularity_items": float(len(top)),
        "found": float(np.sum(counts >= 0.01 * len(runs))),
        "shown_at_most_5_times": float(np.sum(counts <= 5)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.offline", description=__doc__)
    parser.add_argument("--strategy", default="blend")
    parser.add_argument("--params", default="{}", help="JSON object of strategy parameters")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--distinct-raters", action="store_true", help="no visitor repeats a MovieLens rater")
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--calls-per-session", type=int, default=2)
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--co-likes-interval", type=float, default=2.0)
    parser.add_argument("--no-twins", action="store_true")
    parser.add_argument("--twin-params", default="{}")
    args = parser.parse_args(argv)
    config = OfflineConfig(
        strategy=args.strategy,
        params=json.loads(args.params),
        users=args.users,
        seed=args.seed,
        distinct_raters=args.distinct_raters,
        sessions=args.sessions,
        calls_per_session=args.calls_per_session,
        train=not args.no_train,
        co_likes_interval_s=args.co_likes_interval,
        twins=not args.no_twins,
        twin_params=json.loads(args.twin_params),
    )
    result = simulate(_load_dataset(Settings()), config)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
