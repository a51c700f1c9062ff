"""Regression checks of pass@k curves: a paired bootstrap over the problems two runs share.

For each task and each k, the difference candidate - baseline in mean pass@k is resampled by drawing
the shared problems with replacement (the same draw for both runs: that is the pairing, which
removes the between-problem variance that dominates small benchmarks). The "overall" row averages
the per-task differences (macro average, each task resampled within itself).

Each (task, k) row tests "the candidate drops by more than `tolerance` points": its one-sided
bootstrap p-value is the share of resampled differences that are no worse than -tolerance. A row
regresses when that p-value is below `alpha` after Holm's correction over all rows (family-wise
level alpha), because a curve has many correlated k and a CI check must not flake. Measured by
`python benchmarks/bench_compare_calibration.py` (2 tasks x 40 problems x 64 samples, 60 pairs):
without correction 9/60 equal-quality pairs were flagged, with Holm 0/60, and a planted regression was
caught 60/60 either way.

Use it from pytest: `assert_no_regression("golden/run", "new/run", tolerance=2.0)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from rlvr.harness.errors import UserError
from rlvr.harness.report.metrics import check_bootstrap_args, maj_matrix, run_counts, run_tallies
from rlvr.harness.report.passk import bootstrap_means, default_ks, pass_at_k
from rlvr.harness.runs.store import Run
from tabulate import tabulate


@dataclass(frozen=True)
class KDiff:
    """candidate - baseline at one k, in [0, 1] units; lo/hi are the alpha and 1-alpha quantiles."""

    task: str
    k: int
    baseline: float
    candidate: float
    diff: float
    lo: float
    hi: float
    p_value: float        # bootstrap one-sided p of "the drop is no larger than the tolerance"
    regression: bool = False
    metric: str = "pass@k"   # or "maj@k", "avg@n" (`compare_runs(metric=...)`)

    @property
    def name(self) -> str:
        """The cell's metric at its k: pass@16, maj@16, avg@n."""
        return "avg@n" if self.metric == "avg@n" else f"{self.metric[:-2]}@{self.k}"


@dataclass
class Comparison:
    baseline: str
    candidate: str
    rows: list[KDiff]
    shared: dict[str, int]         # task -> number of problems both runs have
    unshared: dict[str, int]       # task -> problems left out: only one run has them, or one judged none of its samples
    tolerance: float               # in points (percent)
    alpha: float
    iterations: int
    correction: str
    error_rates: dict[str, float] = field(default_factory=dict)   # run -> share of samples not verified

    @property
    def regressions(self) -> list[KDiff]:
        return [r for r in self.rows if r.regression]

    def render(self) -> str:
        body = [[r.task, r.k if r.metric == "pass@k" else r.name, f"{100 * r.baseline:.2f}", f"{100 * r.candidate:.2f}", f"{100 * r.diff:+.2f}",
                 f"[{100 * r.lo:+.2f}, {100 * r.hi:+.2f}]", f"{r.p_value:.4f}", "REGRESSION" if r.regression else ""]
                for r in self.rows]
        fam = "Holm-corrected over all rows" if self.correction == "holm" else "per row, uncorrected"
        head = (f"baseline  {self.baseline}\ncandidate {self.candidate}\n"
                f"paired bootstrap over shared problems ({self.iterations} iterations); interval = "
                f"[{self.alpha:g}, {1 - self.alpha:g}] quantiles of the difference; p = bootstrap share of "
                f"drops no larger than {self.tolerance:g} points; regression = p < {self.alpha:g} ({fam})\n")
        return head + tabulate(body, headers=["task", "k", "base %", "cand %", "diff", "interval", "p", ""],
                               tablefmt="github", disable_numparse=True)


def error_rate(run: Run) -> float:
    """The share of a run's samples that its verifier could not judge (errors, left out of pass@k)."""
    counts, errors = run_tallies(run)
    bad = sum(sum(e.values()) for e in errors.values())
    total = bad + sum(v[0] for per in counts.values() for v in per.values())
    return bad / total if total else 0.0


def _shared_matrices(base: Run, cand: Run, tasks: list[str] | None):
    bc, cc = run_counts(base), run_counts(cand)
    names = sorted(set(bc) & set(cc)) if tasks is None else tasks
    missing = [t for t in names if t not in bc or t not in cc]
    if missing:
        raise UserError(f"task {missing[0]} is not in both runs ({base.path}, {cand.path})")
    if not names:
        raise UserError(f"{base.path} and {cand.path} have no task in common")
    dropped = sorted(set(bc) - set(cc)) if tasks is None else []
    if dropped:   # a candidate that lost a benchmark must not pass a CI gate on the ones it kept
        raise UserError(f"task {', '.join(dropped)} of the baseline {base.path} is missing from the candidate "
                        f"{cand.path} (pass --tasks to compare only some tasks)")
    out, shared, unshared = {}, {}, {}
    for t in names:
        # a problem that either run could not judge at all (verifier errors) cannot be paired
        ids = _shared_ids(bc[t], cc[t])
        unshared[t] = len(set(bc[t]) | set(cc[t])) - len(ids)
        if not ids:
            raise UserError(f"task {t}: {base.path} and {cand.path} share no problem")
        shared[t] = len(ids)
        out[t] = (np.array([bc[t][i] for i in ids]), np.array([cc[t][i] for i in ids]))
    return out, shared, unshared


def _shared_ids(b: dict, c: dict) -> list[str]:
    """The problems both runs judged at least one sample of (the pairs the bootstrap draws)."""
    return sorted(p for p in set(b) & set(c) if b[p][0] and c[p][0])


def compare_runs(baseline: str, candidate: str, tolerance: float = 1.0, alpha: float = 0.05,
                 iterations: int = 5000, seed: int = 0, ks: list[int] | None = None,
                 tasks: list[str] | None = None, correction: str = "holm", metric: str = "pass@k") -> Comparison:
    """Compare two runs; see the module docstring. tolerance is in points (1.0 = one percent).

    tasks=None compares every task of the baseline, and a baseline task the candidate lacks is an error.
    metric: "pass@k" (default), "maj@k" (the same test on per-problem maj@k; tasks without a final answer,
    code, are left out) or "avg@n" (per-problem accuracy of all n samples, one row per task, k = n)."""
    if metric not in ("pass@k", "maj@k", "avg@n"):
        raise UserError(f"--metric must be pass@k, maj@k or avg@n, got {metric!r}")
    if not (0 < alpha < 0.5):
        raise UserError(f"--alpha must be in (0, 0.5), got {alpha}")
    if correction not in ("holm", "none"):
        raise UserError(f"--correction must be holm or none, got {correction!r}")
    if tolerance < 0:
        raise UserError(f"--tolerance must be >= 0, got {tolerance}")
    check_bootstrap_args(iterations, seed)
    base, cand = Run.open(baseline), Run.open(candidate)
    data, shared, unshared = _shared_matrices(base, cand, tasks)
    if metric == "maj@k":
        votes = _shared_votes(base, cand, data)
        bc, cc = run_counts(base), run_counts(cand)
        if not votes:
            raise UserError(f"maj@k: no shared task of {baseline} and {candidate} has stored answers to vote on "
                            f"(code tasks have none; older runs need `rlvr metrics RUN`)")
        data = {t: v for t, v in data.items() if t in votes}
    rows: list[KDiff] = []
    per_task_boot: dict[str, dict[int, np.ndarray]] = {}
    per_task_point: dict[str, dict[int, tuple[float, float]]] = {}
    tol = tolerance / 100.0

    def add(task: str, k: int, b: float, c: float, boot: np.ndarray) -> None:
        lo, hi = np.quantile(boot, [alpha, 1 - alpha])
        p = (np.count_nonzero(boot >= -tol) + 1) / (boot.size + 1)
        rows.append(KDiff(task, k, b, c, c - b, float(lo), float(hi), float(p), metric=metric))

    for ti, (t, (b_nc, c_nc)) in enumerate(data.items()):                      # [P, 2] arrays of (n, c)
        n_min = int(min(b_nc[:, 0].min(), c_nc[:, 0].min()))
        tks = default_ks(n_min) if ks is None else list(ks)
        if metric == "avg@n":
            tks = [n_min]           # the label of the row; the values are c / n over every sample
        if max(tks) > n_min:
            raise UserError(f"task {t}: k={max(tks)} exceeds the n={n_min} samples of some problem")
        if metric == "maj@k":
            ids = _shared_ids(bc[t], cc[t])
            pb, pc = maj_matrix(votes[t][0], ids, tks), maj_matrix(votes[t][1], ids, tks)
        elif metric == "avg@n":
            pb, pc = (b_nc[:, 1:2] / b_nc[:, 0:1]), (c_nc[:, 1:2] / c_nc[:, 0:1])
        else:
            pb = pass_at_k(b_nc[:, 0], b_nc[:, 1], np.array(tks))                   # [P, K]
            pc = pass_at_k(c_nc[:, 0], c_nc[:, 1], np.array(tks))
        d = pc - pb
        boot = bootstrap_means(d, iterations, seed + ti)                          # [iters, K]
        per_task_boot[t] = {k: boot[:, j] for j, k in enumerate(tks)}
        per_task_point[t] = {k: (float(pb[:, j].mean()), float(pc[:, j].mean())) for j, k in enumerate(tks)}
        for j, k in enumerate(tks):
            add(t, k, *per_task_point[t][k], boot[:, j])

    if len(data) > 1:
        common = sorted(set.intersection(*(set(b) for b in per_task_boot.values())))
        for k in common:
            b = float(np.mean([per_task_point[t][k][0] for t in data]))
            c = float(np.mean([per_task_point[t][k][1] for t in data]))
            boot = np.mean([per_task_boot[t][k] for t in data], axis=0)
            add("overall", k, b, c, boot)
    flags = holm(np.array([r.p_value for r in rows]), alpha) if correction == "holm" else \
        [r.p_value < alpha for r in rows]
    rows = [replace(r, regression=bool(f)) for r, f in zip(rows, flags, strict=True)]
    return Comparison(str(baseline), str(candidate), rows, shared, unshared, tolerance, alpha, iterations,
                      correction, {str(baseline): error_rate(base), str(candidate): error_rate(cand)})


def _shared_votes(base: Run, cand: Run, data: dict) -> dict[str, tuple[dict, dict]]:
    """Per task of `data` whose answers both runs stored: (baseline votes, candidate votes)."""
    from rlvr.harness.report.columns import task_metrics

    bm, cm = task_metrics(base), task_metrics(cand)
    out = {}
    for t in data:
        bv, cv = (bm.get(t) or {}).get("votes"), (cm.get(t) or {}).get("votes")
        if bv is not None and cv is not None:
            out[t] = tuple({p: (int(v[0]), [int(b) for b in v[1]], int(v[2])) for p, v in vs.items()}
                           for vs in (bv, cv))
    return out


def holm(p_values: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down procedure: which hypotheses to reject at family-wise level alpha."""
    order = np.argsort(p_values, kind="stable")
    reject = np.zeros(p_values.size, dtype=bool)
    m = p_values.size
    for rank, i in enumerate(order):
        if p_values[i] >= alpha / (m - rank):
            break
        reject[i] = True
    return reject


def assert_no_regression(baseline: str, candidate: str, max_error_rate: float = 0.0, **kwargs) -> Comparison:
    """For a user's own pytest suite: raises AssertionError (with the table) on a regression, or when
    more than `max_error_rate` of either run's samples could not be verified."""
    result = compare_runs(baseline, candidate, **kwargs)
    over = {p: r for p, r in result.error_rates.items() if r > max_error_rate}
    if over:
        raise AssertionError(f"samples not verified (verifier errors) above {max_error_rate:g}: {over}")
    if result.regressions:
        raise AssertionError("pass@k regression\n" + result.render())
    return result
