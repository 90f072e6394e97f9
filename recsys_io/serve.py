"""How every HTTP service process starts: ``python -m <service>`` calls ``serve``."""

from __future__ import annotations

import os

import uvicorn
from threadpoolctl import threadpool_limits

from recsys_core.logging import configure_logging
from recsys_core.settings import Settings
from recsys_io.allocator import tune_allocator

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def serve(app_factory: str, port_setting: str, workers_setting: str | None = None) -> None:
    """Run ``app_factory`` ("package.app:create_app") under uvicorn on the port (and workers) of the settings."""
    settings = Settings()
    configure_logging()
    # One BLAS/OpenMP thread per process: a request's matrix-vector product is tiny, and a second BLAS thread
    # only fights the event loop (and the other processes) for the machine's cores. Worker processes that
    # uvicorn spawns inherit the environment.
    for variable in BLAS_THREAD_VARIABLES:
        os.environ[variable] = "1"
    threadpool_limits(limits=1)
    tune_allocator(settings.malloc_arena_max)
    uvicorn.run(
        app_factory,
        factory=True,
        host=settings.host,
        port=int(getattr(settings, port_setting)),
        workers=int(getattr(settings, workers_setting)) if workers_setting else 1,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=settings.http_keep_alive_s,
    )
