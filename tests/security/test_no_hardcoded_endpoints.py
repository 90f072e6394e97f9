"""No credentials or server addresses in code: they come from ``recsys_core.settings`` (and the environment).

Every string literal of the project's Python sources is checked (f-string parts too); docstrings and ``help=`` /
``description=`` texts are documentation and are skipped, as are comments. Allowed: the settings module (the
one place with defaults), the tests, and the launcher, which starts local servers on loopback for ``make run``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support.stack import ROOT

ALLOWED = {Path("recsys_core/settings.py")}
ALLOWED_FOLDERS = {"tests", "launcher", "docs"}
SKIPPED_FOLDERS = {".venv", "venv", ".git", "node_modules", "test-artifacts", "build", "dist", ".data"}
DOC_KEYWORDS = {"help", "description", "summary", "epilog", "usage"}

FORBIDDEN = [
    ("AMQP URL", re.compile(r"amqps?://", re.IGNORECASE)),
    ("Redis URL", re.compile(r"rediss?://", re.IGNORECASE)),
    ("default RabbitMQ credentials", re.compile(r"guest:guest", re.IGNORECASE)),
    ("loopback address with a port", re.compile(r"(127\.0\.0\.1|localhost|\[::1\]):(\d|\{|$)", re.IGNORECASE)),
    ("URL with credentials", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)),
]


def python_sources(root: Path = ROOT) -> list[Path]:
    sources = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        folders = relative.parts[:-1]
        if set(folders) & SKIPPED_FOLDERS or any(p.startswith(".") for p in folders):
            continue
        if relative in ALLOWED or relative.parts[0] in ALLOWED_FOLDERS:
            continue
        sources.append(path)
    return sources


def _documentation(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings or help texts."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skipped.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg in DOC_KEYWORDS:
            skipped.update(id(child) for child in ast.walk(node.value))
    return skipped


def offences(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    documentation = _documentation(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in documentation:
            for what, pattern in FORBIDDEN:
                if pattern.search(node.value):
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {what}: {node.value[:80]!r}")
    return found


def test_the_scanner_sees_what_it_looks_for(tmp_path: Path) -> None:
    """The check itself can fail: a planted module with each kind of offence is reported, docs are not."""
    planted = tmp_path / "recsys_io" / "planted.py"
    planted.parent.mkdir()
    planted.write_text(
        '"""Docs may say redis://127.0.0.1:6379/0."""\n'
        'BROKER = "amqp://guest:guest@127.0.0.1:5672/"\n'
        'CACHE = f"redis://127.0.0.1:{6379}/0"\n'
        'API = "http://localhost:5001"\n'
        "def f(port: int) -> str:\n"
        '    """Answers http://127.0.0.1:5001."""\n'
        '    return f"http://127.0.0.1:{port}"\n'
        'parser.add_argument("--url", help="e.g. http://127.0.0.1:5001")\n'
    )
    (tmp_path / "recsys_core").mkdir()
    (tmp_path / "recsys_core" / "settings.py").write_text('REDIS = "redis://127.0.0.1:6379/0"\n')
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text('URL = "amqp://guest:guest@127.0.0.1:5672/"\n')
    assert python_sources(tmp_path) == [planted]
    found = offences(planted, tmp_path)
    lines = {int(line.split(":")[1]) for line in found}
    kinds = {line.split(": ")[1] for line in found}
    assert lines == {2, 3, 4, 7}, found
    assert kinds == {what for what, _ in FORBIDDEN}, found


def test_no_credentials_or_hosts_in_code() -> None:
    sources = python_sources()
    found = [line for path in sources for line in offences(path)]
    print(f"{len(sources)} Python files scanned outside settings/tests/launcher; {len(found)} offences")
    assert len(sources) > 50
    assert not found, "hard-coded endpoints or credentials (read them from Settings):\n" + "\n".join(found)
