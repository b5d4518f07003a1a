"""Benchmarks: each module is one question, run as `python -m bench.NAME` from the repository
root (or through its `make bench-*` target); `bench.harness` holds what they share, and every
run writes its figures to bench/results/ as JSON + markdown (+ PNG)."""
