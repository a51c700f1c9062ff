"""From a run's samples to its metrics: per-problem (n, c) and pass@k curves per task."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from rlvr.harness.errors import UserError
from rlvr.harness.report.passk import passk_curve
from rlvr.harness.runs.store import METRICS_FILE, Run, locked

METRICS_FORMAT = "rlvr-metrics/1"

# (n, c) per problem, per task: {task: {problem_id: (n, c)}}, over judged samples only
Counts = dict[str, dict[str, tuple[int, int]]]
# samples whose verifier could not judge them, per problem, per task (problems without any are left out)
Errors = dict[str, dict[str, int]]


def sample_outcome(rec: dict) -> str:
    """"correct" | "incorrect" | "error" of a sample record (records written before the outcome field
    existed are judged: their `correct` says which)."""
    outcome = rec.get("outcome")
    if outcome in ("correct", "incorrect", "error"):
        return outcome
    return "correct" if rec.get("correct") else "incorrect"


def count_samples(samples) -> tuple[Counts, dict[str, dict], Errors]:
    """Per-problem (n, c) over judged samples, per-task health statistics, and per-problem error counts.

    A sample whose verifier could not judge it (outcome "error") is neither right nor wrong: it is left
    out of (n, c), so pass@k is computed over the judged samples, and counted in the errors."""
    nc: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    errors: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    stats: dict[str, dict] = defaultdict(lambda: {"samples": 0, "truncated": 0, "errors": 0,
                                                  "no_answer": 0, "tokens": 0})
    for rec in samples:
        task, pid = rec["task"], str(rec["problem_id"])
        outcome = sample_outcome(rec)
        st = stats[task]
        st["samples"] += 1
        st["truncated"] += rec.get("finish_reason") == "length"
        st["tokens"] += int(rec.get("tokens") or 0)
        if outcome == "error":
            st["errors"] += 1
            errors[task][pid] += 1
            nc[task].setdefault(pid, [0, 0])     # the problem exists, with (maybe) no judged sample
            continue
        cell = nc[task][pid]
        cell[0] += 1
        cell[1] += outcome == "correct"
        st["no_answer"] += rec.get("reason") == "no_answer"
    counts = {t: {p: (v[0], v[1]) for p, v in probs.items()} for t, probs in nc.items()}
    return counts, {t: dict(s) for t, s in stats.items()}, {t: dict(e) for t, e in errors.items()}


def judged(per_problem: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """The problems with at least one judged sample (those pass@k can be computed over)."""
    return {p: v for p, v in per_problem.items() if v[0] > 0}


def compute_metrics(run: Run, iterations: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """metrics.json content for a run, computed from its samples.

    Per task: `problems` maps each problem to [n, c] over its judged samples; `errors` counts the samples
    the verifier could not judge and `problem_errors` lists them per problem (those problems are marked:
    their n is short of the run's n); the curve covers the problems with a judged sample, up to the
    smallest judged n."""
    check_bootstrap_args(iterations, seed)
    counts, stats, errors = count_samples(run.iter_samples())
    tasks = {}
    for task in sorted(counts):
        per_problem = counts[task]
        scored = judged(per_problem)
        st = stats[task]
        judged_samples = st["samples"] - st["errors"]
        entry = {
            "domain": run.task_domain(task),
            "problems": {p: list(v) for p, v in sorted(per_problem.items())},
            "n_min": min((v[0] for v in per_problem.values()), default=0),
            "n_max": max((v[0] for v in per_problem.values()), default=0),
            "curve": None,
            "errors": st["errors"],
            "problem_errors": dict(sorted(errors.get(task, {}).items())),
            "truncation_rate": st["truncated"] / st["samples"],
            "no_answer_rate": st["no_answer"] / judged_samples if judged_samples else None,
            "mean_tokens": st["tokens"] / st["samples"],
        }
        if scored:
            n = np.array([v[0] for v in scored.values()])
            c = np.array([v[1] for v in scored.values()])
            entry["curve"] = passk_curve(n, c, confidence=confidence, iterations=iterations, seed=seed).to_dict()
        tasks[task] = entry
    return {"format": METRICS_FORMAT, "tasks": tasks,
            "bootstrap": {"iterations": iterations, "seed": seed, "confidence": confidence}}


def update_metrics(run: Run, **kwargs) -> dict:
    """Recompute and write metrics.json, holding the run's lock (re-entrant: `rlvr eval` holds it already)."""
    with locked(run.path):
        metrics = compute_metrics(run, **kwargs)
        run.write_metrics(metrics)
    return metrics


def _metrics_current(run: Run) -> bool:
    mpath, spath = run.path / METRICS_FILE, run.samples_path
    return mpath.exists() and (not spath.exists() or mpath.stat().st_mtime >= spath.stat().st_mtime)


def run_tallies(run: Run) -> tuple[Counts, Errors]:
    """Per-problem (n, c) over judged samples and per-problem error counts of a run: from metrics.json
    when it is at least as new as the samples, otherwise from the samples themselves (an interrupted run
    has no up-to-date metrics)."""
    if _metrics_current(run):
        mpath = run.path / METRICS_FILE
        metrics = run.read_metrics() or {}
        try:
            counts = {t: {p: (int(v[0]), int(v[1])) for p, v in m["problems"].items()}
                      for t, m in metrics["tasks"].items()}
            errors = {t: {p: int(e) for p, e in (m.get("problem_errors") or {}).items()}
                      for t, m in metrics["tasks"].items()}
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise UserError(f"{mpath}: malformed metrics file (field 'tasks.*.problems'); "
                            f"delete it to recompute from samples") from None
        return counts, {t: e for t, e in errors.items() if e}
    counts, _, errors = count_samples(run.iter_samples())
    if not counts:
        raise UserError(f"{run.path}: the run has no samples yet")
    return counts, errors


def run_counts(run: Run) -> Counts:
    """Per-problem (n, c) over the judged samples of a run (see `run_tallies`)."""
    return run_tallies(run)[0]


def run_errors(run: Run) -> Errors:
    """Per-problem counts of the samples whose verifier could not judge them (see `run_tallies`)."""
    return run_tallies(run)[1]


def check_bootstrap_args(iterations: int, seed: int) -> None:
    """The bootstrap flags every reader shares (`--iterations`, `--seed`)."""
    if iterations < 1:
        raise UserError(f"--iterations must be >= 1, got {iterations}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")


def sample_shortfall(run: Run, counts: Counts, errors: Errors | None = None) -> tuple[int, int, int] | None:
    """(samples done, samples expected, problems short of n) against run.json's `n` and per-task
    `problems`, or None where run.json does not record them. A sample is done when it was sampled (judged
    or errored). A run is complete when done == expected: an interrupted `rlvr eval` is not, and neither is
    a shard cut short."""
    n, tasks = run.info.get("n"), run.info.get("tasks") or {}
    if not isinstance(n, int) or not tasks or \
            not all(isinstance((e or {}).get("problems"), int) for e in tasks.values()):
        return None
    errors = errors or {}
    done = short = expected = 0
    for task, entry in tasks.items():
        per_task_errors = errors.get(task, {})
        have = [min(v[0] + per_task_errors.get(p, 0), n) for p, v in counts.get(task, {}).items()]
        done += sum(have)
        expected += n * entry["problems"]
        short += entry["problems"] - sum(h == n for h in have)
    return done, expected, short


def error_note(path, errors: Errors) -> str | None:
    """One line about the samples of a run that could not be verified, or None when there are none."""
    total = sum(sum(e.values()) for e in errors.values())
    if not total:
        return None
    problems = sum(len(e) for e in errors.values())
    where = ", ".join(f"{t} {sum(e.values())}" for t, e in sorted(errors.items()) if e)
    return (f"rlvr: note: {path}: {total} samples in {problems} problems could not be verified ({where}): "
            f"pass@k leaves them out; rerun its `rlvr eval` command (or `rlvr regrade`) to verify them again")


def incomplete_notes(run_paths) -> list[str]:
    """One `rlvr: note:` line per run that has fewer samples than it was started for, and one per run
    with samples its verifier could not judge."""
    notes = []
    for path in run_paths:
        run = Run.open(path)
        counts, errors = run_tallies(run)
        gap = sample_shortfall(run, counts, errors)
        if gap is not None and gap[0] < gap[1]:
            notes.append(f"rlvr: note: {path}: incomplete ({gap[0]} of {gap[1]} samples); rerun its "
                         f"`rlvr eval` command to finish it")
        note = error_note(path, errors)
        if note:
            notes.append(note)
    return notes
