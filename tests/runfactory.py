"""Builds run directories from chosen per-problem outcomes, for tests of the readers."""

from __future__ import annotations

from pathlib import Path

from rlvr.harness.report.metrics import update_metrics
from rlvr.harness.runs.store import Run


def make_run(path: Path, outcomes: dict[str, dict[str, list[bool]]], label: str | None = None,
             domains: dict[str, str] | None = None, metrics: bool = True) -> Path:
    """outcomes[task][problem_id] = list of per-sample correctness."""
    domains = domains or {}
    settings = {
        "label": label or path.name,
        "model": {"name": "synthetic"},
        "tasks": {t: {"domain": domains.get(t, "math")} for t in outcomes},
        "sampling": {"temperature": 1.0},
        "seed": 0,
    }
    run = Run.create(path, settings)
    run.append_samples(
        {"task": t, "problem_id": pid, "sample_index": i, "correct": bool(ok), "score": float(ok)}
        for t, probs in outcomes.items() for pid, oks in probs.items() for i, ok in enumerate(oks)
    )
    if metrics:
        update_metrics(run, iterations=200)
    run.finish()
    return path


def bernoulli_outcomes(rates: list[float], n: int, seed: int) -> dict[str, list[bool]]:
    """Per problem i, n samples correct with probability rates[i] (deterministic for a seed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {f"p{i}": (rng.random(n) < r).tolist() for i, r in enumerate(rates)}
