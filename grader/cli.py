"""``python -m grader run --recs URL --events URL [options]``: grade a running deployment."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from grader.config import PauseRange, RunConfig
from grader.deployment import GradingAborted
from grader.grading import grade
from grader.report import default_out_dir, print_terminal_report, write_reports
from grader.runner import INTERRUPTED
from recsys_core.settings import PROJECT_ROOT, Settings

EXIT_ABORTED = 2
EXIT_STOPPED_EARLY = 1  # the load stopped after a streak of failed calls; the reports were written
EXIT_INTERRUPTED = 130  # after a first Ctrl-C the reports are written; after a second there are none


def _pause(values: Sequence[str]) -> PauseRange:
    return PauseRange(float(values[0]), float(values[1]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grader", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="load the catalog, simulate users, score the deployment")
    run.add_argument("--recs", required=True, help="recommendations service URL, e.g. http://127.0.0.1:5001")
    run.add_argument("--events", required=True, help="event collector URL, e.g. http://127.0.0.1:5000")
    run.add_argument("--users", type=int, default=3000, help="simulated users (default 3000)")
    run.add_argument("--concurrency", type=int, default=50, help="users active at once (default 50)")
    run.add_argument("--processes", type=int, default=1, help="worker processes sharing the load (default 1)")
    run.add_argument("--seed", type=int, default=42, help="seed of item ids, users and pauses (default 42)")
    run.add_argument(
        "--distinct-raters",
        action="store_true",
        help="draw each MovieLens rater at most once, so no visitor repeats an earlier one's answers "
        "(at most 610 users with ml-latest-small; default: drawn with replacement)",
    )
    run.add_argument("--calls-per-session", type=int, default=2, help="/recs calls per session (default 2)")
    run.add_argument("--sessions", type=int, default=2, help="sessions per user (default 2)")
    run.add_argument(
        "--pause-in-session",
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=("0.1", "0.3"),
        help="random pause between calls of a session, seconds (default 0.1 0.3)",
    )
    run.add_argument(
        "--pause-between-sessions",
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=("1", "2"),
        help="random pause between sessions, seconds (default 1 2)",
    )
    run.add_argument("--batch-size", type=int, default=1000, help="items per /add_items call (default 1000)")
    run.add_argument("--timeout", type=float, default=10.0, help="HTTP request timeout, seconds (default 10)")
    run.add_argument(
        "--abort-after-failures",
        type=int,
        default=200,
        help="stop the load after this many /recs calls in a row got no 200, and report what was measured "
        "(default 200; 0: never)",
    )
    run.add_argument(
        "--admin-token",
        default=None,
        help="bearer token for /cleanup and /add_items (default: ADMIN_TOKEN from the settings)",
    )
    run.add_argument(
        "--out", type=Path, default=None, help="report folder (default: a new timestamped folder under reports/)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar or log lines")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        recs_url=args.recs.rstrip("/"),
        events_url=args.events.rstrip("/"),
        users=args.users,
        concurrency=args.concurrency,
        processes=args.processes,
        seed=args.seed,
        distinct_raters=args.distinct_raters,
        calls_per_session=args.calls_per_session,
        sessions=args.sessions,
        pause_in_session=_pause(args.pause_in_session),
        pause_between_sessions=_pause(args.pause_between_sessions),
        add_items_batch=args.batch_size,
        request_timeout_s=args.timeout,
        abort_after_failures=args.abort_after_failures,
        admin_token=args.admin_token if args.admin_token is not None else Settings().admin_token,
        out_dir=args.out,
        show_progress=not args.no_progress,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    console = Console()
    try:
        result = asyncio.run(grade(config, console=console if config.show_progress else None))
    except (GradingAborted, ValueError) as exc:  # ValueError: the users asked for cannot be drawn (--distinct-raters)
        console.print(f"[bold red]cannot grade:[/] {exc}")
        return EXIT_ABORTED
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return EXIT_INTERRUPTED
    out_dir = config.out_dir or default_out_dir(PROJECT_ROOT / "reports")
    summary_path, html_path = write_reports(result, out_dir)
    print_terminal_report(console, result)
    console.print(f"summary: {summary_path}\nreport:  {html_path}")
    if result.aborted == INTERRUPTED:
        return EXIT_INTERRUPTED
    return EXIT_STOPPED_EARLY if result.aborted else 0
