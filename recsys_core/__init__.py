"""The shared core: contracts (settings, schemas, Redis keys, queue messages) and pure algorithms.

Nothing in this package performs network I/O; the services wrap it.
"""
