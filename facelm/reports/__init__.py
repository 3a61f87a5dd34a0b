"""Reports: evaluation, figures, the peer comparison, release cards and the README tables, from runs and committed JSON."""
