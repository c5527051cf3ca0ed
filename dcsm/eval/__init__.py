"""Evaluation: the one scoring loop, metrics, reports, benchmarks, the suite."""
