"""Benchmarks: speed and throughput are measured here, never in a test.

Run each as a module from the repository root, e.g. ``python -m bench.epoch_speed`` (``make
bench``), ``python -m bench.precision``, ``python -m bench.study_time`` and ``python -m
bench.storage_throughput``; each takes ``--help``.
"""
