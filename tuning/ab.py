"""Grade a fresh, isolated stack, with or without an experiment: ``python -m tuning.ab [--experiment FILE] [options]``.

Starts pipeline, recommendations and collector as real processes under their own Redis prefix, queue names and
ports (the same harness as the tests), with the experiment as ``EXPERIMENT_FILE`` and the production retrain
schedule, runs ``python -m grader run`` against them with the remaining arguments, then stops the stack and
deletes its keys and queues. This is how the A/B tables in BENCHMARKS.md were produced, e.g.::

    python -m tuning.ab --experiment tuning/experiments/personal.json --out reports/ab-personal
    python -m tuning.ab --experiment tuning/experiments/personal.json --calls-per-session 4 \\
        --out reports/ab-personal-8
    python -m tuning.ab --out reports/final        # the default strategy alone (the headline grader run)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from devstack.stack import ServiceStack
from grader.cli import main as grader_main
from recsys_core.experiments import load_experiment
from recsys_core.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuning.ab", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--experiment",
        type=Path,
        default=None,
        help="experiment file (JSON or YAML); none: what the environment configures",
    )
    parser.add_argument("--retrain-interval", type=float, default=30.0, help="seconds between retrains (default 30)")
    parser.add_argument("--keep-logs", type=Path, default=None, help="folder for the services' logs")
    args, grader_args = parser.parse_known_args(argv)

    env = {"RETRAIN_INTERVAL_S": str(args.retrain_interval)}
    if args.experiment is not None:
        experiment = args.experiment.resolve()
        # Refuse a bad file (shares, unknown strategy or parameter) before starting anything, as a service would.
        try:
            load_experiment(experiment, None, Settings().default_strategy)
        except (OSError, ValueError) as error:  # ExperimentConfigError and pydantic's errors are ValueErrors
            parser.error(f"--experiment {args.experiment}: {error}")
        # An inline EXPERIMENT_CONFIG in the caller's environment would win over the file: blank it.
        env.update(EXPERIMENT_FILE=str(experiment), EXPERIMENT_CONFIG="")
    # Without --keep-logs the services' logs go to a temporary folder that is removed with the stack.
    keep = args.keep_logs is not None
    with ServiceStack(log_dir=args.keep_logs, tag_prefix="ab", extra_env=env, keep_logs=keep) as stack:
        stack.start()
        print(f"stack {stack.tag}: recs {stack.recs_url}, events {stack.collector_url}", flush=True)
        status = grader_main(["run", "--recs", stack.recs_url, "--events", stack.collector_url, *grader_args])
        _print_twins_delay(stack)
        return status


def _print_twins_delay(stack: ServiceStack) -> None:
    """How soon after a user's feedback their twins were published (the pipeline's histogram), for the record."""
    try:
        text = httpx.get(f"{stack.pipeline_url}/metrics", timeout=5).text
    except httpx.HTTPError as error:
        print(f"pipeline metrics unavailable: {error}")
        return
    buckets = {}
    for line in text.splitlines():
        if line.startswith("pipeline_twins_publish_delay_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets[bound] = float(line.rsplit(" ", 1)[1])
    total = buckets.get("+Inf", 0.0)
    if not total:
        print("twins: none published")
        return
    shares = ", ".join(f"<= {b} s: {count / total:.1%}" for b, count in buckets.items() if b != "+Inf")
    print(f"twins published after the feedback ({total:.0f} publications): {shares}")


if __name__ == "__main__":
    sys.exit(main())
