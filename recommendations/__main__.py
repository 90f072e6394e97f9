"""``python -m recommendations``: serve on RECS_PORT with RECS_WORKERS processes."""

from __future__ import annotations

from recsys_io.serve import serve

if __name__ == "__main__":
    serve("recommendations.app:create_app", port_setting="recs_port", workers_setting="recs_workers")
