"""``python -m event_collector``: serve on COLLECTOR_PORT."""

from __future__ import annotations

from recsys_io.serve import serve

if __name__ == "__main__":
    serve("event_collector.app:create_app", port_setting="collector_port")
