"""What a run leaves behind: ``summary.json``, ``report.html`` and a table in the terminal."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from jinja2 import Environment
from rich.console import Console
from rich.table import Table

from grader import plots
from grader.ab import outcomes_by_group
from grader.aggregate import failure_causes, windows_by_arrival
from grader.grading import GradeResult
from grader.reference import share_of
from grader.simulation import DISLIKE_THRESHOLD, LIKE_THRESHOLD
from grader.stats import WelchInterval
from grader.templates import REPORT_TEMPLATE
from grader.traces import UNASSIGNED

DEFINITIONS: Mapping[str, str] = MappingProxyType(
    {
        "relevant": f"a movie the MovieLens rater scored >= {LIKE_THRESHOLD}; liked when shown "
        f"(scored <= {DISLIKE_THRESHOLD}: disliked when shown)",
        "hit": "a relevant catalog item in the first 10 positions, shown to that user for the first time",
        "precision@10": "mean over all calls (failed ones included) of hits / 10",
        "NDCG@10": "binary relevance; the ideal DCG assumes min(10, relevant items still unseen by the user before "
        "the call) hits on top; a call whose ideal DCG is 0 contributes 0; mean over all calls",
        "diversity": "mean over answered lists of the mean pairwise Jaccard dissimilarity of genre sets (items "
        "without genres: empty set, dissimilarity 1 to a non-empty set, 0 to another empty set)",
        "coverage": "distinct catalog items recommended / catalog size (per A/B group: grows with the group's "
        "size, so compare groups of similar shares)",
        "latency": "wall time of every /recs call until its answer (any status) or until the client gave up (a "
        "timeout counts as the time waited: a service that hangs must not look fast); failed calls are errors too",
        "errors": "no_response, non_200, invalid_body, wrong_length and interact_failures count calls; "
        "duplicates, unknown_ids and reshown count list entries",
        "wrong_length": "a list whose length is not 10 while the user had at least 10 unseen catalog items, "
        "or longer than 10",
        "oracle": "each call shows the user's relevant unseen items first, then other unseen items",
        "perfect popularity": "one list ranked by how many simulated users like each item; each call shows the "
        "next 10 items the user has not been shown",
        "A/B effect": "treatment mean − control mean of per-user values, Welch 95% interval "
        "(Welch–Satterthwaite df); significant when the interval excludes 0. When every user of both groups has "
        "the same value the standard error is 0: the difference is reported but not estimable, never significant",
        "A/B groups": "a user is in the group named by the X-Experiment-Group header of their first answer that had "
        "one; a user whose calls all came back without it is placed by the service's GET "
        "/experiments/assignment/{user_id} after the load, and their failed calls count (precision and NDCG 0). Users "
        "still without a group are listed as (none) and left out of the effects. Every configured group is listed, "
        "with a note when it had no users or no answered call; the control is the group named C, else the first",
        "CUPED": "the same difference after regressing out, per user, what perfect popularity and the oracle "
        "score for that user (covariates that do not depend on the group): unbiased, with a narrower interval",
    }
)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _finite(value: object) -> object:
    """JSON has no NaN/Infinity: such numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def summary_dict(result: GradeResult) -> dict[str, Any]:
    summary, refs = result.summary, result.references
    relevant_counts = [len(user.relevant) for user in result.users]
    summary_json = _finite(
        {
            "started_at": _iso(result.started_at),
            "finished_at": _iso(result.finished_at),
            "load_duration_s": result.load_duration_s,
            "parameters": result.config.public_parameters(),
            "simulation": {
                "like_threshold": LIKE_THRESHOLD,
                "dislike_threshold": DISLIKE_THRESHOLD,
                "distinct_movielens_users": len({user.source_user for user in result.users}),
                "users_without_relevant_items": sum(1 for count in relevant_counts if count == 0),
                "mean_relevant_items_per_user": sum(relevant_counts) / max(1, len(relevant_counts)),
            },
            "catalog_size": len(result.catalog),
            "score": result.score.as_dict(),
            "metrics": summary.as_dict(),
            "errors": summary.errors.as_dict(),
            "failure_causes": failure_causes(result.outcomes),
            "aborted": result.aborted,
            "reference": {
                "oracle": refs.oracle.as_dict(),
                "popularity": refs.popularity.as_dict(),
                "precision_pct_of_oracle": share_of(summary.precision, refs.oracle.precision),
                "precision_pct_of_popularity": share_of(summary.precision, refs.popularity.precision),
                "ndcg_pct_of_oracle": share_of(summary.ndcg, refs.oracle.ndcg),
                "ndcg_pct_of_popularity": share_of(summary.ndcg, refs.popularity.ndcg),
            },
            "experiment": result.experiment.as_dict() if result.experiment else None,
            "groups": result.comparison.as_dict() if result.comparison else None,
            "over_time": [window.as_dict() for window in result.windows],
            "definitions": dict(DEFINITIONS),
        }
    )
    return cast(dict[str, Any], summary_json)


def _format_number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}"


def _format_percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def render_html(result: GradeResult, summary: Mapping[str, Any]) -> str:
    group_windows = {}
    if result.comparison is not None:
        grouped = outcomes_by_group(result.traces, result.outcomes)
        group_windows = {
            name: windows_by_arrival(outcomes, len(result.users))
            for name, outcomes in grouped.items()
            if name != UNASSIGNED
        }
    refs = result.references
    figures = {
        "over_time": plots.metrics_over_time(
            result.windows,
            group_windows,
            {
                "oracle": (refs.oracle.precision, refs.oracle.ndcg),
                "popularity": (refs.popularity.precision, refs.popularity.ndcg),
            },
        ),
        "latency": plots.latency_histogram([o.latency_ms for o in result.outcomes if o.latency_ms is not None]),
        "effects": plots.effects(result.comparison.effects) if result.comparison else None,
    }
    environment = Environment(autoescape=True, keep_trailing_newline=True)
    template = environment.from_string(REPORT_TEMPLATE)
    return template.render(s=summary, plots=figures, fmt=_format_number, pct=_format_percent)


def default_out_dir(root: Path) -> Path:
    """A fresh timestamped folder under ``root`` (a suffix keeps two runs in the same second apart)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = root / stamp
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = root / f"{stamp}-{suffix}"
    return candidate


def write_reports(result: GradeResult, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summary_dict(result)
    summary_path = out_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8")
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(result, summary), encoding="utf-8")
    return summary_path, html_path


def _format_interval(interval: WelchInterval) -> str:
    if not interval.estimable:
        return "no variance"
    return f"[{_format_number(interval.low)}, {_format_number(interval.high)}]"


def _format_significant(interval: WelchInterval) -> str:
    return "[green]yes[/]" if interval.significant else "no"


def print_terminal_report(console: Console, result: GradeResult) -> None:
    summary, score, refs = result.summary, result.score, result.references
    table = Table(title=f"HardML score: {score.total:.2f} / {score.as_dict()['max']:.0f}")
    for column in ("metric", "system", "oracle", "popularity", "points"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, component in score.components.items():
        table.add_row(
            name,
            _format_number(component.value),
            _format_number(getattr(refs.oracle, name)),
            _format_number(getattr(refs.popularity, name)),
            f"{component.points:.2f}",
        )
    bonus = f"{score.bonus_points:.2f}" if score.bonus_eligible else f"[dim]({score.latency.points:.2f})[/]"
    table.add_row("mean latency ms", _format_number(summary.latency.mean_ms, 1), "", "", bonus)
    console.print(table)
    latency = summary.latency
    console.print(
        f"latency ms: p50 {_format_number(latency.p50_ms, 1)}, p95 {_format_number(latency.p95_ms, 1)}, "
        f"p99 {_format_number(latency.p99_ms, 1)}; precision = "
        f"{_format_percent(share_of(summary.precision, refs.oracle.precision))} of the oracle, "
        f"{_format_percent(share_of(summary.precision, refs.popularity.precision))} of perfect popularity; "
        f"{summary.hits} hits in {summary.slots} slots"
    )
    errors = Table(title="errors")
    errors.add_column("kind")
    errors.add_column("count", justify="right")
    for name, count in summary.errors.as_dict().items():
        errors.add_row(name, f"[red]{count}[/]" if count else "0")
    console.print(errors)
    causes = failure_causes(result.outcomes)
    if causes:
        listed = ", ".join(f"{cause} {count}" for cause, count in causes.items())
        console.print(f"failed /recs calls by cause: {listed}")
    if result.aborted:
        console.print(f"[bold red]aborted:[/] {result.aborted}")
    if result.comparison is not None:
        _print_groups(console, result)


def _print_groups(console: Console, result: GradeResult) -> None:
    comparison = result.comparison
    assert comparison is not None  # only called with a comparison; narrows the type
    groups = Table(title=f"A/B groups (control: {comparison.control})")
    for column in ("group", "users", "precision", "NDCG", "diversity", "coverage", "latency ms", "errors"):
        groups.add_column(column, justify="left" if column == "group" else "right")
    for name, s in comparison.groups.items():
        if s.users == 0:  # a configured group nobody was placed in: no metric, not zeros
            groups.add_row(name, "0", "—", "—", "—", "—", "—", "0")
            continue
        groups.add_row(
            name,
            str(s.users),
            _format_number(s.precision),
            _format_number(s.ndcg),
            _format_number(s.diversity),
            _format_number(s.coverage),
            _format_number(s.latency.mean_ms, 1),
            str(s.errors.total),
        )
    console.print(groups)
    if not comparison.control_observed:
        console.print(f"[bold yellow]warning:[/] the control {comparison.control} was not observed (no users)")
    for name, note in comparison.group_notes.items():
        console.print(f"group {name}: {note}")
    for note in comparison.notes:
        console.print(f"[yellow]note:[/] {note}")
    if comparison.users_switching_group:
        console.print(f"[bold red]{comparison.users_switching_group} users were served by more than one group[/]")
    effects = Table(title="effects vs control (Welch 95%; CUPED-adjusted where the references give covariates)")
    columns = ("treatment", "metric", "difference", "interval", "significant", "CUPED", "CUPED interval", "significant")
    for column in columns:
        effects.add_column(column, justify="left" if column in ("treatment", "metric") else "right")
    for effect in comparison.effects:
        interval = effect.interval
        if interval is None:
            effects.add_row(effect.treatment, effect.metric, "—", effect.reason or "too few users", "", "", "", "")
            continue
        adjusted = effect.adjusted.interval if effect.adjusted else None
        effects.add_row(
            effect.treatment,
            effect.metric,
            _format_number(interval.diff),
            _format_interval(interval),
            _format_significant(interval),
            # The adjusted estimate beside its interval: the raw difference can sit outside the CUPED interval.
            _format_number(adjusted.diff) if adjusted else "—",
            _format_interval(adjusted) if adjusted else "—",
            _format_significant(adjusted) if adjusted else "",
        )
    console.print(effects)
