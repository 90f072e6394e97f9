"""Worker threads for the pipeline's heavy work (BPR training, co-like recounts) at a lower CPU priority.

On a shared machine, a retrain that takes a whole core for seconds competes with everything that answers
requests: the recommendations service, the collector, and the pipeline's own consumer on its event loop.
Linux schedules every thread with its own nice value, so these threads yield to all of them when cores are
scarce and run at full speed when they are not.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor


def lower_thread_priority(niceness: int) -> None:
    """Raise the calling thread's nice value by ``niceness`` (Linux: per thread; elsewhere best effort)."""
    if niceness <= 0:
        return
    with contextlib.suppress(OSError, AttributeError):
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + niceness)


def background_executor(workers: int, niceness: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        max_workers=workers,
        thread_name_prefix="background",
        initializer=lower_thread_priority,
        initargs=(niceness,),
    )
