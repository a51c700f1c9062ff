"""Verification: the verifier pool (worker processes, deadlines, verdict cache, preflight) and the scoring
options a task accepts (`--task-option`). Imports tasks, nothing else of the pipeline."""
