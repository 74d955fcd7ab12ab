"""Benchmark harness of polishplugin: ``python -m bench [--quick] [--only NAME]`` (see README.md)."""
