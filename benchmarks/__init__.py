"""Benchmarks: each module compares two things in one run, prints a table and writes JSON to benchmarks/results/."""
