"""Random search over blend parameters with the offline replay, several seeds per configuration.

``python -m tuning.random_search space.json results.jsonl`` appends one JSON line per configuration (mean and
per-seed metrics). The offline replay only chooses what to measure; claims come from real grader runs.
"""

from __future__ import annotations

import json
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from grader.offline import OfflineConfig, _load_dataset, simulate
from recsys_core.settings import Settings


def _run(args: tuple[dict[str, Any], dict[str, Any], int]) -> dict[str, Any]:
    params, config, seed = args
    result = simulate(_load_dataset(Settings()), OfflineConfig(params=params, seed=seed, **config))
    return {"seed": seed, "metrics": result["metrics"], "by_call": result["by_call"]}


def main() -> int:
    space = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    rng = random.Random(space.get("search_seed", 0))
    seeds = space.get("seeds", [42, 7])
    with ProcessPoolExecutor(max_workers=space.get("workers", 2)) as pool:
        for _ in range(space.get("trials", 50)):
            params = {**space.get("fixed", {}), **{k: rng.choice(v) for k, v in space["choices"].items()}}
            results = list(pool.map(_run, [(params, space.get("config", {}), s) for s in seeds]))
            mean = {k: float(np.mean([r["metrics"][k] for r in results])) for k in results[0]["metrics"]}
            line = {"params": params, "mean": mean, "runs": results}
            with out.open("a") as handle:
                handle.write(json.dumps(line) + "\n")
            print(
                f"P={mean['precision_at_10']:.4f} C={mean['coverage']:.3f} D={mean['diversity']:.3f} {params}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
