"""Benchmark scripts (run them as ``python benchmarks/<name>.py --help``); not part of the package."""
