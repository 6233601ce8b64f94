"""Benchmarks: scripts that measure and print; never part of `make test` (a smoke test runs
them tiny)."""
