"""``python -m webapp``: serve the debug UI on WEBAPP_PORT."""

from __future__ import annotations

from recsys_io.serve import serve

if __name__ == "__main__":
    serve("webapp.app:create_app", port_setting="webapp_port")
