"""Benchmark support for edgequant: a zoo of small models trained in code (see :mod:`benchmarks.zoo`)."""
