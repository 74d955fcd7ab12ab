"""Test helpers and synthetic-data makers, for the tests and the benchmarks only: no production module
imports this package (the layering test checks it)."""
