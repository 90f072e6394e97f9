"""The debug web UI: one page plus a small JSON API that proxies the recommendations, collector and pipeline."""
