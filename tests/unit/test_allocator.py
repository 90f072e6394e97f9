"""The allocator settings: applied on glibc (this machine), inherited by child processes, off with 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from recsys_io.allocator import tune_allocator

CHILD = """
import os, sys
from recsys_io.allocator import tune_allocator
applied = tune_allocator(int(sys.argv[1]))
print(applied, os.environ.get("MALLOC_ARENA_MAX"), os.environ.get("MALLOC_MMAP_THRESHOLD_"))
"""


def _run(arena_max: int) -> list[str]:
    # In a child process: mallopt changes the process it runs in, and the test process should stay as it is.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(arena_max)], capture_output=True, text=True, env=env, check=True
    )
    return result.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_applies_on_glibc_and_exports_the_settings_to_children() -> None:
    assert _run(2) == ["True", "2", "131072"]


def test_zero_keeps_the_defaults() -> None:
    assert _run(0) == ["False", "None", "None"]
    assert tune_allocator(0) is False
