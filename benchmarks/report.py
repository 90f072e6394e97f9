"""Machine facts, result files and the generated section of BENCHMARKS.md (the rest of that file is hand-written)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MARKDOWN = ROOT / "BENCHMARKS.md"
START_MARKER = "<!-- bench:start -->"
END_MARKER = "<!-- bench:end -->"


def replace_section(text: str, body: str, start: str = START_MARKER, end: str = END_MARKER) -> str:
    """``text`` with everything between the markers replaced by ``body``; markers appended when absent.

    Text outside the markers is kept byte for byte. A lone or reversed marker is an error rather than a guess.
    """
    has_start, has_end = start in text, end in text
    block = f"{start}\n{body.strip()}\n{end}"
    if not has_start and not has_end:
        separator = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return f"{text}{separator}{block}\n"
    if has_start != has_end:
        raise ValueError(f"BENCHMARKS.md has only one of {start!r} / {end!r}; fix it by hand")
    if text.count(start) > 1 or text.count(end) > 1:
        raise ValueError("BENCHMARKS.md has more than one generated section")
    head, _, rest = text.partition(start)
    if end not in rest:
        raise ValueError(f"{end!r} comes before {start!r} in BENCHMARKS.md")
    _, _, tail = rest.partition(end)
    return f"{head}{block}{tail}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))}, Linux {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _wrk_version() -> str | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0].split(" Copyright")[0].strip() if text else "wrk"


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def is_dirty(porcelain: str) -> bool:
    """Whether ``git status --porcelain --untracked-files=all`` output shows code the run would not be at its commit:
    any tracked change, or an untracked ``.py`` file (a module the services or benchmarks may import)."""
    for line in porcelain.splitlines():
        if not line.strip():
            continue
        if not line.startswith("?? "):
            return True
        if line[3:].strip().strip('"').endswith(".py"):
            return True
    return False


def source_state() -> str:
    """The commit the code is at, with " (uncommitted changes)" when the work tree differs from it.

    Read once per invocation (``cli.main``): a run of several benchmarks must not record two commits because one
    landed meanwhile (say a docs commit), nor look clean for one benchmark and dirty for the next."""
    commit = _git("rev-parse", "HEAD")
    # The benchmarks' own outputs do not count: one `--only a b` run rewrites them between its benchmarks.
    status = _git(
        "status",
        "--porcelain",
        "--untracked-files=all",
        "--",
        ".",
        ":(exclude)BENCHMARKS.md",
        ":(exclude)benchmarks/results",
    )
    return commit + (" (uncommitted changes)" if is_dirty(status) else "")


def machine_info(command: str, git_commit: str) -> dict[str, Any]:
    """This machine now; ``git_commit`` is ``source_state()`` as read at the start of the invocation."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": _os_name(),
        "python": sys.version.split()[0],
        "date": now_iso(),
        "git_commit": git_commit,
        "command": command,
        "wrk": _wrk_version(),
        "uptime_load": load_average(),
    }


def write_result(name: str, result: Mapping[str, Any]) -> Path:
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path


def read_result(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{unit}"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def targets_table(targets: Sequence[Mapping[str, Any]]) -> str:
    if not targets:
        return ""
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    for target in targets:
        lines.append(f"| {target['what']} | {target['measured']} | {verdict(target['met'])} |")
    return "\n".join(lines)


def machine_table(machine: Mapping[str, Any]) -> str:
    rows = [
        ("CPU", f"{machine['cpu']} ({machine['cores']} cores)"),
        ("RAM", f"{machine['ram_gib']} GiB"),
        ("OS", machine["os"]),
        ("Python", machine["python"]),
        ("load generator", machine.get("wrk") or "benchmarks.httpload (wrk not installed)"),
    ]
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def run_line(result: Mapping[str, Any]) -> str:
    machine = result["machine"]
    quick = " — **quick smoke run, not a measurement**" if result.get("quick") else ""
    return (
        f"_Run {machine['date']} on {machine['cpu']} at commit `{machine['git_commit'][:12]}`"
        f"{' (uncommitted changes)' if 'uncommitted' in machine['git_commit'] else ''} with "
        f"`{machine['command']}`; load average (1/5/15 min) {result['load_before']} before, "
        f"{result['load_after']} after; took {result['duration_s']:.0f} s{quick}._"
    )
