"""Run the offline replay for several strategy configurations and print one line (or table row) each.

``python -m tuning.sweep tuning/specs/components.json [--markdown]`` where the spec holds
``{"config": {...OfflineConfig fields}, "base": {...params}, "seeds": [42, 7], "runs": {"label": {...}}}``;
a run may override config fields under ``"_config"``. Each configuration is replayed once per seed and the
mean is reported. The offline replay only chooses what to measure; claims come from real grader runs.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from grader.offline import OfflineConfig, _load_dataset, simulate
from recsys_core.settings import Settings

METRICS = ("precision_at_10", "ndcg_at_10", "diversity", "coverage")


def _run(job: tuple[str, OfflineConfig]) -> tuple[str, dict[str, Any]]:
    label, config = job
    return label, simulate(_load_dataset(Settings()), config)


def _jobs(spec: dict[str, Any]) -> list[tuple[str, OfflineConfig]]:
    base = OfflineConfig(**spec.get("config", {}))
    jobs = []
    for label, run in spec["runs"].items():
        params = dict(run)
        overrides = params.pop("_config", {})
        # "base" holds parameters of the spec's strategy; a run of another strategy starts from its defaults.
        other_strategy = overrides.get("strategy", base.strategy) != base.strategy
        merged = params if other_strategy else {**spec.get("base", {}), **params}
        for seed in spec.get("seeds", [base.seed]):
            config = replace(base, params=merged, **{"seed": seed, **overrides})
            jobs.append((label, config))
    return jobs


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tuning.sweep", description=__doc__)
    parser.add_argument("spec", type=Path)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table of the means")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    results: dict[str, list[dict[str, Any]]] = {}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for label, result in pool.map(_run, _jobs(spec)):
            results.setdefault(label, []).append(result)
            if not args.markdown:
                m = result["metrics"]
                calls = [round(v, 3) for v in result["by_call"].values()]
                print(
                    f"{label:28s} seed={result['config']['seed']:<4} P={m['precision_at_10']:.4f} "
                    f"N={m['ndcg_at_10']:.4f} D={m['diversity']:.3f} C={m['coverage']:.3f} calls={calls} "
                    f"found={result['discovery']['found']:.0f}",
                    flush=True,
                )
    if args.markdown:
        seeds = ", ".join(str(s) for s in spec.get("seeds", [OfflineConfig().seed]))
        print(
            "| configuration | precision@10 | NDCG@10 | diversity | coverage | perfect-popularity items found "
            f"| perfect popularity's precision@10 | precision per seed ({seeds}) |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for label, runs in results.items():
            means = {k: float(np.mean([r["metrics"][k] for r in runs])) for k in METRICS}
            per_seed = ", ".join(f"{r['metrics']['precision_at_10']:.3f}" for r in runs)
            found = float(np.mean([r["discovery"]["found"] for r in runs]))
            listed = int(runs[0]["discovery"]["perfect_popularity_items"])
            # Every user makes the same number of calls: the mean over calls is the run's precision.
            perfect = float(np.mean([np.mean(list(r["perfect_popularity_by_call"].values())) for r in runs]))
            print(
                f"| {label} | {means['precision_at_10']:.4f} | {means['ndcg_at_10']:.4f} | "
                f"{means['diversity']:.3f} | {means['coverage']:.3f} | {found:.1f} of {listed} | {perfect:.4f} "
                f"| {per_seed} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
