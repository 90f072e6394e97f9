"""``python -m benchmarks.twin_lift_scale``: what one twin lift costs as the pipeline's book grows.

A synthetic book shaped like a grader run's (not MovieLens): every user was shown 40 items, 20 of them among the
100 items the bandit exploits (liked 30% of the time) and 20 from the rest of a 9,742-item catalog (liked 2%).
For each book size it prints the matrix build time and the mean time of one lift for a new user of the same
shape, with every viewer of an item looked at and with only its latest ``max_viewers_per_item``. In-process,
one thread, no Redis: it measures the algorithm, not the pipeline.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from recsys_core.algorithms.twins import ReactionBook, TwinParams

N_ITEMS = 9_742
HEAD = 100
SHOWN_FROM_HEAD = 20
SHOWN_FROM_TAIL = 20


def synthetic_user(rng: np.random.Generator, item_ids: list[str]) -> tuple[list[str], list[str]]:
    head = rng.choice(HEAD, SHOWN_FROM_HEAD, replace=False)
    tail = rng.choice(np.arange(HEAD, N_ITEMS), SHOWN_FROM_TAIL, replace=False)
    shown = np.concatenate([head, tail])
    liked = shown[rng.random(shown.size) < np.where(shown < HEAD, 0.3, 0.02)]
    return [item_ids[i] for i in shown], [item_ids[i] for i in liked]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.twin_lift_scale", description=__doc__)
    parser.add_argument("--users", type=int, nargs="+", default=[3_000, 15_000, 50_000])
    parser.add_argument("--caps", type=int, nargs="+", default=[0, 2_000, 500], help="max_viewers_per_item values")
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    item_ids = [f"item-{n}" for n in range(N_ITEMS)]
    print("| users in the book | matrix build s | " + " | ".join(f"lift ms, cap {cap}" for cap in args.caps) + " |")
    print("|---" * (2 + len(args.caps)) + "|")
    for n_users in args.users:
        book = ReactionBook(max_users=n_users)
        for user in range(n_users):
            shown, liked = synthetic_user(rng, item_ids)
            book.record(f"user-{user}", shown, liked, [])
        started = time.perf_counter()
        matrix = book.matrix()
        build_s = time.perf_counter() - started
        queries = [synthetic_user(rng, item_ids) for _ in range(args.queries)]
        lifts_ms = []
        for cap in args.caps:
            params = TwinParams(max_viewers_per_item=cap)
            started = time.perf_counter()
            for shown, liked in queries:
                matrix.lift("query", shown, liked, [], params)
            lifts_ms.append((time.perf_counter() - started) / len(queries) * 1000)
        print(f"| {n_users:,} | {build_s:.2f} | " + " | ".join(f"{ms:.1f}" for ms in lifts_ms) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
