"""Run the offline replay for several strategy configurations and print one line each.

``python -m tuning.sweep sweep.json`` where the file holds {"base": {...params}, "runs": {"label": {...}}, ...}.
The offline replay only chooses what to measure; the figures in BENCHMARKS.md come from real grader runs.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from grader.offline import OfflineConfig, _load_dataset, simulate
from recsys_core.settings import Settings


def _run(args: tuple[str, OfflineConfig]) -> tuple[str, dict[str, Any]]:
    label, config = args
    return label, simulate(_load_dataset(Settings()), config)


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    base = OfflineConfig(**spec.get("config", {}))
    jobs = []
    for label, params in spec["runs"].items():
        config_overrides = params.pop("_config", {})
        jobs.append((label, replace(base, params={**spec.get("base", {}), **params}, **config_overrides)))
    with ProcessPoolExecutor(max_workers=int(spec.get("workers", 2))) as pool:
        for label, result in pool.map(_run, jobs):
            m, calls = result["metrics"], [round(v, 3) for v in result["by_call"].values()]
            arrival = [round(v, 3) for v in result["by_arrival"].values()]
            print(
                f"{label:28s} P={m['precision_at_10']:.4f} N={m['ndcg_at_10']:.4f} D={m['diversity']:.3f} "
                f"C={m['coverage']:.3f} Q={result['quality_points']:.1f} calls={calls} arrival={arrival}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
