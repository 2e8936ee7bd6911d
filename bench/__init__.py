"""Benchmarks (not part of the test suite); run ``python -m bench`` from the project root."""
