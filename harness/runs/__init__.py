"""The run directory: run.json provenance, append-only samples.jsonl, atomic metrics.json."""
