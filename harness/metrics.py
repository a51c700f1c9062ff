"""From a run's samples to its metrics: per-problem (n, c) and pass@k curves per task."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from harness.errors import UserError
from harness.passk import passk_curve
from harness.runstore import METRICS_FILE, Run

METRICS_FORMAT = "rlvr-metrics/1"

# (n, c) per problem, per task: {task: {problem_id: (n, c)}}
Counts = dict[str, dict[str, tuple[int, int]]]


def count_samples(samples) -> tuple[Counts, dict[str, dict]]:
    """Per-problem (n, c) and per-task health statistics from sample records."""
    nc: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    stats: dict[str, dict] = defaultdict(lambda: {"samples": 0, "truncated": 0, "verify_timeouts": 0,
                                                  "no_answer": 0, "tokens": 0})
    for rec in samples:
        cell = nc[rec["task"]][str(rec["problem_id"])]
        cell[0] += 1
        cell[1] += bool(rec["correct"])
        st = stats[rec["task"]]
        st["samples"] += 1
        st["truncated"] += rec.get("finish_reason") == "length"
        st["verify_timeouts"] += rec.get("reason") == "timeout"
        st["no_answer"] += rec.get("reason") == "no_answer"
        st["tokens"] += int(rec.get("tokens") or 0)
    counts = {t: {p: (v[0], v[1]) for p, v in probs.items()} for t, probs in nc.items()}
    return counts, {t: dict(s) for t, s in stats.items()}


def compute_metrics(run: Run, iterations: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """metrics.json content for a run, computed from its samples."""
    counts, stats = count_samples(run.iter_samples())
    tasks = {}
    for task in sorted(counts):
        per_problem = counts[task]
        n = np.array([v[0] for v in per_problem.values()])
        c = np.array([v[1] for v in per_problem.values()])
        st = stats[task]
        curve = passk_curve(n, c, confidence=confidence, iterations=iterations, seed=seed)
        tasks[task] = {
            "domain": run.task_domain(task),
            "problems": {p: list(v) for p, v in sorted(per_problem.items())},
            "n_min": int(n.min()), "n_max": int(n.max()),
            "curve": curve.to_dict(),
            "truncation_rate": st["truncated"] / st["samples"],
            "no_answer_rate": st["no_answer"] / st["samples"],
            "verify_timeouts": st["verify_timeouts"],
            "mean_tokens": st["tokens"] / st["samples"],
        }
    return {"format": METRICS_FORMAT, "tasks": tasks,
            "bootstrap": {"iterations": iterations, "seed": seed, "confidence": confidence}}


def update_metrics(run: Run, **kwargs) -> dict:
    metrics = compute_metrics(run, **kwargs)
    run.write_metrics(metrics)
    return metrics


def run_counts(run: Run) -> Counts:
    """Per-problem (n, c) of a run: from metrics.json when it is at least as new as the samples,
    otherwise from the samples themselves (an interrupted run has no up-to-date metrics)."""
    mpath, spath = run.path / METRICS_FILE, run.samples_path
    if mpath.exists() and (not spath.exists() or mpath.stat().st_mtime >= spath.stat().st_mtime):
        metrics = run.read_metrics() or {}
        try:
            return {t: {p: (int(v[0]), int(v[1])) for p, v in m["problems"].items()}
                    for t, m in metrics["tasks"].items()}
        except (KeyError, TypeError, ValueError, IndexError):
            raise UserError(f"{mpath}: malformed metrics file (field 'tasks.*.problems'); "
                            f"delete it to recompute from samples") from None
    counts, _ = count_samples(run.iter_samples())
    if not counts:
        raise UserError(f"{run.path}: the run has no samples yet")
    return counts
