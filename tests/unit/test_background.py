"""The pipeline's background threads run nicer than the thread that serves (Linux: nice is per thread)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from pipeline.background import background_executor


def _own_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux behaviour")
def test_background_threads_are_nicer_and_the_caller_is_untouched() -> None:
    before = _own_niceness()
    with background_executor(workers=2, niceness=7) as executor:
        niceness = executor.submit(_own_niceness).result()
    assert niceness == min(before + 7, 19)
    assert _own_niceness() == before


def test_zero_niceness_leaves_priority_alone() -> None:
    with background_executor(workers=1, niceness=0) as executor:
        assert executor.submit(_own_niceness).result() == _own_niceness()
