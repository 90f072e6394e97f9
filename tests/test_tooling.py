"""The checks `make test` runs before pytest cover the whole shipped code, and the tests."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _recipe(target: str) -> list[str]:
    """The command lines of one Makefile target."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{target}:", line))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def test_mypy_checks_every_package_the_project_ships_and_the_tests() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = {pattern.removesuffix("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    expected = shipped | {"tests"}  # the tests are not shipped, but are type-checked as well
    checked = set(pyproject["tool"]["mypy"]["files"])
    assert checked == expected, f"not type-checked: {expected - checked}; unknown: {checked - expected}"


def test_make_test_and_make_lint_run_ruff_and_mypy_before_anything_else() -> None:
    checks = ["$(PY) -m ruff check .", "$(PY) -m ruff format --check .", "$(PY) -m mypy"]
    assert _recipe("lint") == checks
    assert _recipe("test") == [*checks, "$(PY) -m pytest"]
