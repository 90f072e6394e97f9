"""``python -m recommendations``: serve on RECS_PORT with RECS_WORKERS processes."""

from __future__ import annotations

import uvicorn

from recsys_core.logging import configure_logging
from recsys_core.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging()
    uvicorn.run(
        "recommendations.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.recs_port,
        workers=settings.recs_workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
