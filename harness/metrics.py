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
    check_bootstrap_args(iterations, seed)
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


def check_bootstrap_args(iterations: int, seed: int) -> None:
    """The bootstrap flags every reader shares (`--iterations`, `--seed`)."""
    if iterations < 1:
        raise UserError(f"--iterations must be >= 1, got {iterations}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")


def sample_shortfall(run: Run, counts: Counts) -> tuple[int, int, int] | None:
    """(samples done, samples expected, problems short of n) against run.json's `n` and per-task
    `problems`, or None where run.json does not record them. A run is complete when done == expected:
    an interrupted `rlvr eval` is not, and neither is a shard cut short."""
    n, tasks = run.info.get("n"), run.info.get("tasks") or {}
    if not isinstance(n, int) or not tasks or \
            not all(isinstance((e or {}).get("problems"), int) for e in tasks.values()):
        return None
    done = short = expected = 0
    for task, entry in tasks.items():
        have = [min(v[0], n) for v in counts.get(task, {}).values()]
        done += sum(have)
        expected += n * entry["problems"]
        short += entry["problems"] - sum(h == n for h in have)
    return done, expected, short


def incomplete_notes(run_paths) -> list[str]:
    """One `rlvr: note:` line per run that has fewer samples than it was started for."""
    notes = []
    for path in run_paths:
        run = Run.open(path)
        gap = sample_shortfall(run, run_counts(run))
        if gap is not None and gap[0] < gap[1]:
            notes.append(f"rlvr: note: {path}: incomplete ({gap[0]} of {gap[1]} samples); rerun its "
                         f"`rlvr eval` command to finish it")
    return notes
