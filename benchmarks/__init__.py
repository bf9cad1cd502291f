"""Benchmarks: every timing claim of the project, as ratios measured side by side in one run."""
