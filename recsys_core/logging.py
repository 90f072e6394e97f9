"""One log format for every process."""

from __future__ import annotations

import logging

# Libraries that log every scheduled job run or HTTP call at INFO would drown the services' own lines.
QUIET_LOGGERS = ("apscheduler", "httpx", "aio_pika", "aiormq")


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
