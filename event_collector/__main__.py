"""``python -m event_collector``: serve on COLLECTOR_PORT."""

from __future__ import annotations

import uvicorn

from recsys_core.logging import configure_logging
from recsys_core.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging()
    uvicorn.run(
        "event_collector.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.collector_port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
