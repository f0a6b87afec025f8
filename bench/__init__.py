"""Benchmarks: each writes its result to bench/results/ (never timed inside the test suite)."""
