"""Benchmarks of the backfill against the sandbox with real-world latency (`scripts/bench`)."""
