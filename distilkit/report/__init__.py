"""Reporting layer: metrics.json, pipeline summaries, Pareto reports, Hub cards and uploads."""
