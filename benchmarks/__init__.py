"""Benchmarks of the real services on an isolated stack: ``python -m benchmarks`` (``make bench``).

Results go to ``benchmarks/results/<name>.json`` and the generated section of ``BENCHMARKS.md``.
"""
