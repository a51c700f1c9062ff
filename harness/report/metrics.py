"""From a run's samples to its metrics: per-problem (n, c), pass@k curves, and the metrics reported beside
pass@k (avg@n, maj@k, G-Pass@k, mG-Pass@k, no-answer and truncation rates, response lengths) per task.
Definitions: `rlvr.harness.report.voting` and docs/metrics.md."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from rlvr.harness.errors import UserError
from rlvr.harness.report.passk import PassKCurve, bootstrap_means, passk_curve
from rlvr.harness.report.voting import avg_at_n, g_pass_table, maj_at_k
from rlvr.harness.runs.store import METRICS_FILE, Run, locked

METRICS_FORMAT = "rlvr-metrics/1"

# (n, c) per problem, per task: {task: {problem_id: (n, c)}}, over judged samples only
Counts = dict[str, dict[str, tuple[int, int]]]
# samples whose verifier could not judge them, per problem, per task (problems without any are left out)
Errors = dict[str, dict[str, int]]
# per problem, per task: (correct samples, sizes of the classes of wrong answers, judged samples without an answer)
Votes = dict[str, dict[str, tuple[int, list[int], int]]]

G_PASS_TAUS = (0.5, 1.0)      # the G-Pass@k thresholds metrics.json records
NO_FINAL_ANSWER = "n/a: the task's output is a program, not a final answer to vote on"
ANSWERS_NOT_STORED = "unknown: the samples do not record their extracted answers"


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
                                                  "no_answer": 0, "tokens": 0, "finish_known": 0,
                                                  "tokens_by": {"correct": [0, 0], "incorrect": [0, 0]},
                                                  "answers_stored": True, "answers": {}})
    for rec in samples:
        task, pid = rec["task"], str(rec["problem_id"])
        outcome = sample_outcome(rec)
        st = stats[task]
        st["samples"] += 1
        st["truncated"] += rec.get("finish_reason") == "length"
        st["finish_known"] += rec.get("finish_reason") is not None
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
        if isinstance(rec.get("tokens"), int):
            by = st["tokens_by"][outcome]
            by[0] += 1
            by[1] += rec["tokens"]
        # the answer each judged sample votes with: None = no answer (no vote), True = the correct class
        extracted = rec.get("extracted")
        if outcome == "correct":
            vote = True
        elif rec.get("reason") == "no_answer" or (isinstance(extracted, str) and not extracted.strip()):
            vote = None
        elif isinstance(extracted, str):
            vote = extracted
        else:
            vote = None
            st["answers_stored"] &= "extracted" in rec     # an old record that kept no answer field
        st["answers"].setdefault(pid, []).append(vote)
    counts = {t: {p: (v[0], v[1]) for p, v in probs.items()} for t, probs in nc.items()}
    return counts, {t: dict(s) for t, s in stats.items()}, {t: dict(e) for t, e in errors.items()}


def _task_object(name: str):
    """The registered task of that name, or None (a run of a task this installation does not know)."""
    from rlvr.tasks.errors import UserError as TaskUserError

    from rlvr import tasks as task_registry

    try:
        return task_registry.get(name)
    except (UserError, TaskUserError):
        return None


def votes_of(task: str, domain: str, stats: dict) -> tuple[dict[str, tuple[int, list[int], int]] | None, str | None]:
    """Per-problem vote tallies of one task from `count_samples`' statistics: (correct, wrong class sizes
    in decreasing order, no-vote samples), with the wrong answers grouped by the task's `answer_key`; or
    (None, why) when the task has no final answer or its samples kept no answers."""
    obj = _task_object(task)
    if (obj.final_answer if obj is not None else domain != "code") is False:
        return None, NO_FINAL_ANSWER
    if not stats.get("answers_stored", True):
        return None, ANSWERS_NOT_STORED
    return {pid: tally_votes(obj, pid, votes) for pid, votes in stats.get("answers", {}).items()}, None


def tally_votes(task, problem_id: str, votes) -> tuple[int, list[int], int]:
    """(correct, wrong class sizes in decreasing order, no-vote samples) of one problem from its samples'
    votes: True (judged correct: one class), None (no extracted answer: no vote) or the extracted answer,
    grouped by `task.answer_key` (whitespace-collapsed text for a task this installation does not know)."""
    keys: dict[str, object] = {}
    classes: dict[object, int] = defaultdict(int)
    correct = no_vote = 0
    for v in votes:
        if v is True:
            correct += 1
        elif v is None:
            no_vote += 1
        else:
            if v not in keys:
                keys[v] = task.answer_key(problem_id, v) if task is not None else " ".join(v.split())
            classes[keys[v]] += 1
    return correct, sorted(classes.values(), reverse=True), no_vote


def sample_vote(rec: dict):
    """The vote of one judged sample record or verdict: True when correct, None without an extracted
    answer, else the extracted answer."""
    extracted = rec.get("extracted")
    if rec.get("correct") is True or rec.get("outcome") == "correct":
        return True
    if rec.get("reason") == "no_answer" or not isinstance(extracted, str) or not extracted.strip():
        return None
    return extracted


def mean_curve(per_problem: np.ndarray, ks: list[int], confidence: float, iterations: int, seed: int) -> dict:
    """Mean over problems of per-problem values [P, K] with the percentile bootstrap interval that pass@k
    curves use (`passk_curve`: the same resampling of problems for the same seed)."""
    mean = per_problem.mean(axis=0)
    boots = bootstrap_means(per_problem, iterations, seed)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha], axis=0)
    return PassKCurve(ks=list(ks), mean=mean.tolist(), lo=lo.tolist(), hi=hi.tolist(),
                      problems=int(per_problem.shape[0]), confidence=float(confidence), iterations=int(iterations),
                      seed=int(seed)).to_dict()


def maj_matrix(votes: dict[str, tuple[int, list[int], int]], ids: list[str], ks: list[int]) -> np.ndarray:
    """Per-problem maj@k [P, K] for the problems `ids`, from their vote tallies."""
    cache: dict[tuple, np.ndarray] = {}
    rows = []
    for p in ids:
        c, wrong, u = votes[p]
        key = (c, tuple(wrong), u)
        if key not in cache:
            cache[key] = maj_at_k(c, wrong, u, ks)
        rows.append(cache[key])
    return np.array(rows, dtype=np.float64).reshape(len(ids), len(ks))


def extra_metrics(counts: dict[str, tuple[int, int]], votes: dict | None, votes_note: str | None, ks: list[int],
                  confidence: float, iterations: int, seed: int) -> dict:
    """avg@n, maj@k, G-Pass@k and mG-Pass@k of one task over the problems with a judged sample (`counts`
    already restricted to them), each with the bootstrap interval of its pass@k curve."""
    ids = list(counts)
    n = np.array([counts[p][0] for p in ids])
    c = np.array([counts[p][1] for p in ids])
    mean, se = avg_at_n(n, c)
    acc = (c / n)[:, None]
    avg = mean_curve(acc, [1], confidence, iterations, seed)
    out: dict = {"avg": {"mean": mean, "se": se, "lo": avg["lo"][0], "hi": avg["hi"][0]}}
    if votes is None:
        out["maj"], out["maj_note"] = None, votes_note
    else:
        out["maj"] = mean_curve(maj_matrix(votes, ids, ks), ks, confidence, iterations, seed)
    g, mg = g_pass_table(n, c, ks, G_PASS_TAUS)
    out["g_pass"] = {f"{tau:g}": mean_curve(g[tau], ks, confidence, iterations, seed) for tau in G_PASS_TAUS}
    out["mg_pass"] = mean_curve(mg, ks, confidence, iterations, seed)
    return out


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
            # None ("unknown") when the samples do not record why they stopped (runs made before they did)
            "truncation_rate": st["truncated"] / st["samples"] if st["finish_known"] else None,
            "no_answer_rate": st["no_answer"] / judged_samples if judged_samples else None,
            "mean_tokens": st["tokens"] / st["samples"],
            "mean_tokens_correct": _mean_tokens(st["tokens_by"]["correct"]),
            "mean_tokens_incorrect": _mean_tokens(st["tokens_by"]["incorrect"]),
        }
        votes, note = votes_of(task, entry["domain"], st)
        entry["votes"] = ({p: [v[0], v[1], v[2]] for p, v in sorted(votes.items())} if votes is not None
                          else None)
        if scored:
            n = np.array([v[0] for v in scored.values()])
            c = np.array([v[1] for v in scored.values()])
            curve = passk_curve(n, c, confidence=confidence, iterations=iterations, seed=seed)
            entry["curve"] = curve.to_dict()
            entry.update(extra_metrics(scored, votes, note, curve.ks, confidence, iterations, seed))
        tasks[task] = entry
    return {"format": METRICS_FORMAT, "tasks": tasks,
            "bootstrap": {"iterations": iterations, "seed": seed, "confidence": confidence}}


def _mean_tokens(by: list[int]) -> float | None:
    """[samples with a token count, their tokens] -> the mean, or None without any."""
    return by[1] / by[0] if by[0] else None


def update_metrics(run: Run, **kwargs) -> dict:
    """Recompute and write metrics.json, holding the run's lock (re-entrant: `rlvr eval` holds it already)."""
    with locked(run.path):
        metrics = compute_metrics(run, **kwargs)
        run.write_metrics(metrics)
    return metrics


def metrics_current(run: Run) -> bool:
    mpath, spath = run.path / METRICS_FILE, run.samples_path
    return mpath.exists() and (not spath.exists() or mpath.stat().st_mtime >= spath.stat().st_mtime)


def run_tallies(run: Run) -> tuple[Counts, Errors]:
    """Per-problem (n, c) over judged samples and per-problem error counts of a run: from metrics.json
    when it is at least as new as the samples, otherwise from the samples themselves (an interrupted run
    has no up-to-date metrics)."""
    if metrics_current(run):
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
