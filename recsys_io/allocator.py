"""glibc malloc settings for long-running service processes (a no-op where libc is not glibc).

Under load, a service's RSS grew several MB a minute while the Python heap it traced grew a fraction of that
(``GET /debug/memory``): the difference is the allocator. glibc raises its mmap threshold after every large
free (up to 32 MB), so the arrays of each new model, snapshot or training batch end up in heap arenas that
fragment instead of being mapped and returned; and every thread that allocates may get an arena of its own.
A fixed threshold and a small number of arenas keep freed arrays returning to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's initial value, now fixed: larger blocks are mapped and unmapped
TRIM_THRESHOLD_BYTES = 256 * 1024


def tune_allocator(arena_max: int) -> bool:
    """Apply the settings to this process and, through the environment, to the processes it starts.

    ``arena_max`` 0 leaves glibc's defaults. True when glibc accepted every setting.
    """
    if arena_max <= 0:
        return False
    # Child processes (uvicorn workers) read these at start; mallopt covers this already running process.
    os.environ["MALLOC_ARENA_MAX"] = str(arena_max)
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD_BYTES)
    os.environ["MALLOC_TRIM_THRESHOLD_"] = str(TRIM_THRESHOLD_BYTES)
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.info("not glibc: allocator settings left as they are")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    results = (
        mallopt(M_ARENA_MAX, arena_max),
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
    )
    return all(result == 1 for result in results)
