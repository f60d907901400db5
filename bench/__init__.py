"""Benchmarks: each prints its table; docs/PERFORMANCE.md gives the commands and figures."""
