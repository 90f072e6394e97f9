"""``python -m pipeline``: consume, keep the bandit current, retrain on schedule; HTTP on PIPELINE_PORT."""

from __future__ import annotations

from recsys_io.serve import serve

if __name__ == "__main__":
    serve("pipeline.app:create_app", port_setting="pipeline_port")
