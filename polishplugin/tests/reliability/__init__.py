"""Reliability tests (issue 11): bad input table, atomic outputs, kill-and-resume, fuzzing, determinism."""
