"""Isolated stacks of the real service processes, for the integration tests and the benchmarks."""
