"""Measured numbers, not claims: training cost per algorithm (``throughput.py``) and a tiny comparison study
(``compare.py``). Run from the repository root, e.g. ``python -m benchmarks.throughput --help``; see README.md.

Nothing here is imported by ``mim_zoo``; the unit tests in ``tests/benchmarks/`` only check that the scripts run on
tiny settings and write well-formed output (never timings).
"""
