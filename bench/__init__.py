"""Queuetopia's benchmark suite: `python bench/run.py --help` (see docs/performance.md)."""
