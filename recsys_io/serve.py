"""How every HTTP service process starts: ``python -m <service>`` calls ``serve``."""

from __future__ import annotations

import uvicorn

from recsys_core.logging import configure_logging
from recsys_core.settings import Settings


def serve(app_factory: str, port_setting: str, workers_setting: str | None = None) -> None:
    """Run ``app_factory`` ("package.app:create_app") under uvicorn on the port (and workers) of the settings."""
    settings = Settings()
    configure_logging()
    uvicorn.run(
        app_factory,
        factory=True,
        host=settings.host,
        port=int(getattr(settings, port_setting)),
        workers=int(getattr(settings, workers_setting)) if workers_setting else 1,
        log_level="warning",
        access_log=False,
    )
