"""The recommendations service (port 5001): a thin I/O layer around the core strategies."""
