"""``python -m webapp``: serve the debug UI on WEBAPP_PORT."""

from __future__ import annotations

import uvicorn

from recsys_core.logging import configure_logging
from recsys_core.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging()
    uvicorn.run(
        "webapp.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.webapp_port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
