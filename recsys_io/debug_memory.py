"""``GET /debug/memory``: where a process's Python memory sits, for finding growth under load.

Only answers when the process runs with tracemalloc on (``PYTHONTRACEMALLOC=1``, which slows it down), so a
normal deployment pays nothing. Each call returns the largest allocation sites and what grew since the
previous call of the same process.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request

from recsys_core.settings import Settings
from recsys_io.http import admin_guard


def _report(previous: tracemalloc.Snapshot | None, top: int) -> tuple[tracemalloc.Snapshot, dict[str, Any]]:
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    current, peak = tracemalloc.get_traced_memory()

    def site(stat: tracemalloc.Statistic | tracemalloc.StatisticDiff) -> dict[str, Any]:
        frame = stat.traceback[0]
        entry = {"where": f"{frame.filename}:{frame.lineno}", "bytes": stat.size, "blocks": stat.count}
        if isinstance(stat, tracemalloc.StatisticDiff):
            entry["grew_bytes"] = stat.size_diff
        return entry

    report: dict[str, Any] = {
        "traced_bytes": current,
        "peak_bytes": peak,
        "largest": [site(s) for s in snapshot.statistics("lineno")[:top]],
    }
    if previous is not None:
        report["grew_since_last_call"] = [site(s) for s in snapshot.compare_to(previous, "lineno")[:top]]
    return snapshot, report


def install_debug_memory(app: FastAPI, settings: Settings) -> None:
    router = APIRouter(tags=["debug"], dependencies=[Depends(admin_guard(settings))])

    @router.get("/debug/memory", responses={409: {"description": "tracemalloc is off (PYTHONTRACEMALLOC unset)"}})
    async def debug_memory(request: Request, top: int = Query(25, ge=1, le=200)) -> dict[str, Any]:
        """The largest Python allocation sites and their growth since the previous call."""
        if not tracemalloc.is_tracing():
            raise HTTPException(status_code=409, detail="start the process with PYTHONTRACEMALLOC=1 to trace memory")
        previous = getattr(request.app.state, "memory_snapshot", None)
        # A snapshot walks every traced block: seconds on a large heap, so not on the event loop.
        snapshot, report = await asyncio.to_thread(_report, previous, top)
        request.app.state.memory_snapshot = snapshot
        return report

    app.include_router(router)
