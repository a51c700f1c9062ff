"""Reports from run directories: unbiased pass@k, metrics.json, tables, plots, the paired regression check."""
