"""Benchmark suites of ``workbench bench`` (one module per subsystem)."""
