"""Builds run directories from chosen per-problem outcomes, for tests of the readers."""

from __future__ import annotations

from pathlib import Path

from rlvr.harness.report.metrics import update_metrics
from rlvr.harness.runs.store import Run


def make_run(path: Path, outcomes: dict[str, dict[str, list[bool]]], label: str | None = None,
             domains: dict[str, str] | None = None, metrics: bool = True, arm: str | None = None,
             train_seed: int | None = None) -> Path:
    """outcomes[task][problem_id] = list of per-sample correctness. `arm` and `train_seed` go into
    run.json as the reports read them (left out when None, as in runs made before they existed)."""
    domains = domains or {}
    settings = {
        "label": label or path.name,
        "model": {"name": "synthetic"},
        "tasks": {t: {"domain": domains.get(t, "math")} for t in outcomes},
        "sampling": {"temperature": 1.0},
        "seed": 0,
    }
    if arm is not None:
        settings["arm"] = arm
    if train_seed is not None:
        settings["train_seed"] = train_seed
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


def seed_rates(rates: list[float], spread: float, seed: int, shift: float = 0.0) -> list[float]:
    """A training seed's per-problem success rates: `rates` moved on the logit scale by one draw of
    N(shift, spread^2) shared by every problem (the seed effect) (deterministic for a seed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    move = shift + spread * rng.standard_normal()
    r = np.clip(np.asarray(rates, dtype=float), 1e-6, 1 - 1e-6)
    return (1 / (1 + np.exp(-(np.log(r / (1 - r)) + move)))).tolist()
