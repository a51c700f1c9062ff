"""pass@k curves: one panel per benchmark, log2-spaced k, bootstrap bands, one colour per run.

An arm with several training seeds (run.json `arm`/`train_seed`, harness/report/seeds.py) is one curve:
the mean over seeds with a two-level bootstrap band (seeds, then problems). `plot_delta` draws each
arm's paired difference from a baseline arm across k, with the seed-aware interval of `rlvr compare`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from rlvr.harness.errors import UserError
from rlvr.harness.report.metrics import check_bootstrap_args, judged, run_tallies
from rlvr.harness.report.passk import default_ks, passk_curve
from rlvr.harness.report.seeds import Arm, group_arms, paired_difference, seed_matrix, two_level_bootstrap
from rlvr.harness.report.tables import KNOWN_TASKS, check_same_problems
from rlvr.harness.runs.store import Run


def _series(runs: list[Run], counts: list, task: str, confidence: float, iterations: int, seed: int):
    """(label, curve or None) per curve of a panel: one per run, one per arm of several training seeds."""
    arms = group_arms(runs)
    for arm in arms:
        if arm.n_seeds > 1:
            yield f"{arm.name} ({arm.n_seeds} seeds)", arm_curve(arm, task, confidence, iterations, seed)
            continue
        for run in arm.runs[0]:
            scored = judged(counts[runs.index(run)].get(task, {}))   # verifier errors are left out, as in metrics.json
            if not scored:
                yield run.label, None
                continue
            n = np.array([v[0] for v in scored.values()])
            c = np.array([v[1] for v in scored.values()])
            yield run.label, passk_curve(n, c, confidence=confidence, iterations=iterations, seed=seed)


def arm_curve(arm: Arm, task: str, confidence: float = 0.95, iterations: int = 1000, seed: int = 0):
    """The mean pass@k curve over an arm's seeds with its two-level bootstrap band (None when the arm
    did not score `task`); problems every seed judged."""
    from rlvr.harness.report.metrics import run_counts
    from rlvr.harness.report.passk import PassKCurve

    if task not in arm.tasks():
        return None
    runs = arm.task_runs(task)
    per = [run_counts(r)[task] for r in runs]
    ids = sorted(p for p in set.intersection(*(set(x) for x in per)) if all(x[p][0] for x in per))
    if not ids:
        return None
    ks = default_ks(min(x[p][0] for x in per for p in ids))
    xs = seed_matrix(runs, task, ks, ids)
    boot = two_level_bootstrap(xs, iterations, np.random.default_rng(seed))
    a = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [a, 1 - a], axis=0)
    return PassKCurve(ks, xs.mean(axis=(0, 1)).tolist(), lo.tolist(), hi.tolist(), len(ids), confidence,
                      iterations, seed)


def plot_runs(run_paths: list[str], out: str | Path, tasks: list[str] | None = None,
              iterations: int = 1000, seed: int = 0, confidence: float = 0.95, title: str | None = None,
              allow_different_problems: bool = False) -> Path:
    """Write a PNG (or any format matplotlib infers from the suffix) and return its path.

    As in `rlvr table`, runs must have scored each benchmark on the same problems unless
    allow_different_problems (curves over different problem sets are not comparable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureCanvasBase

    check_bootstrap_args(iterations, seed)
    out = Path(out)
    formats = FigureCanvasBase.get_supported_filetypes()
    if out.suffix.lstrip(".").lower() not in formats:
        raise UserError(f"--out: cannot tell the image type of {out.name} (use one of "
                        f"{', '.join('.' + f for f in sorted(formats))})")
    if not out.parent.exists():
        raise UserError(f"--out: directory {out.parent} does not exist")
    runs = [Run.open(p) for p in run_paths]
    if not allow_different_problems:
        check_same_problems(runs)
    tallies = [run_tallies(r) for r in runs]
    counts = [c for c, _ in tallies]
    present = sorted({t for c in counts for t in c}, key=lambda t: (list(KNOWN_TASKS).index(t)
                                                                    if t in KNOWN_TASKS else 99, t))
    if tasks is not None:
        unknown = [t for t in tasks if t not in present]
        if unknown:
            raise UserError(f"--tasks: {unknown[0]} is in none of the runs")
        present = tasks

    cols = min(4, len(present))
    rows = math.ceil(len(present) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, task in zip(axes.ravel(), present, strict=False):
        n_max = 1
        for i, (label, curve) in enumerate(_series(runs, counts, task, confidence, iterations, seed)):
            if curve is None:
                continue
            x = np.log2(curve.ks)
            colour = colours(i % 10)
            ax.plot(x, 100 * np.array(curve.mean), marker="o", ms=3, color=colour, label=label)
            ax.fill_between(x, 100 * np.array(curve.lo), 100 * np.array(curve.hi), color=colour, alpha=0.18,
                            linewidth=0)
            n_max = max(n_max, curve.ks[-1])
        ticks = np.arange(0, int(math.log2(n_max)) + 1)
        ax.set_xticks(ticks, [str(2 ** t) for t in ticks], fontsize=7)
        sizes = sorted({len(c[task]) for c in counts if task in c})
        size = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
        unverified = sum(sum(e.get(task, {}).values()) for _, e in tallies)
        ax.set_title(f"{task} ({size} problems)" + (f"\n{unverified} samples not verified (errors)"
                                                     if unverified else ""), fontsize=10)
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k (%)")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(present):]:
        ax.set_visible(False)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    for ax in axes.ravel()[1:len(present)]:  # runs missing from the first panel still get a legend entry
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    over = "seeds and problems" if any(a.n_seeds > 1 for a in group_arms(runs)) else "problems"
    fig.suptitle(title or f"pass@k ({int(confidence * 100)}% bootstrap bands over {over})", fontsize=11)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(labels) / 4), 1, 0.96))
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def delta_curves(arms: list[Arm], baseline: str, task: str, confidence: float = 0.95):
    """{arm: (ks, diff, lo, hi)} of each arm's paired difference from the baseline arm on `task` (in
    [0, 1] units), over the problems every run of both arms judged; the interval is the seed-aware one
    of `rlvr compare` (harness/report/seeds.py) at two-sided level `confidence`."""
    from rlvr.harness.report.metrics import run_counts

    base = next((a for a in arms if baseline in (a.name, f"{a.name} ({a.n_seeds} seeds)")
                 or (a.n_seeds == 1 and len(a.runs[0]) == 1 and a.runs[0][0].label == baseline)), None)
    if base is None:
        raise UserError(f"--delta: no arm named {baseline!r} among the runs (arms: "
                        f"{', '.join(a.name for a in arms)})")
    if task not in base.tasks():
        raise UserError(f"--delta: the baseline {baseline} did not score task {task}")
    out = {}
    for arm in arms:
        if arm is base or task not in arm.tasks():
            continue
        runs_b, runs_c = base.task_runs(task), arm.task_runs(task)
        per = [run_counts(r)[task] for r in runs_b + runs_c]
        ids = sorted(p for p in set.intersection(*(set(x) for x in per)) if all(x[p][0] for x in per))
        if not ids:
            raise UserError(f"--delta: task {task}: {arm.name} and the baseline {baseline} share no problem "
                            f"(a paired difference needs the same problems)")
        ks = default_ks(min(x[p][0] for x in per for p in ids))
        pd = paired_difference(seed_matrix(runs_b, task, ks, ids), seed_matrix(runs_c, task, ks, ids))
        lo, hi = pd.interval(confidence)
        name = arm.name if arm.n_seeds == 1 else f"{arm.name} ({arm.n_seeds} seeds)"
        out[name] = (ks, pd.diff, lo, hi)
    return out


def plot_delta(run_paths: list[str], baseline: str, out: str | Path, tasks: list[str] | None = None,
               confidence: float = 0.95, title: str | None = None) -> Path:
    """`rlvr plot --delta BASELINE`: per benchmark, each arm's paired difference in pass@k from the
    baseline arm across k, with its seed-aware interval; where a curve's band crosses zero the data do
    not tell the arms apart at that k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureCanvasBase

    out = Path(out)
    formats = FigureCanvasBase.get_supported_filetypes()
    if out.suffix.lstrip(".").lower() not in formats:
        raise UserError(f"--out: cannot tell the image type of {out.name} (use one of "
                        f"{', '.join('.' + f for f in sorted(formats))})")
    if not out.parent.exists():
        raise UserError(f"--out: directory {out.parent} does not exist")
    arms = group_arms([Run.open(p) for p in run_paths])
    present = sorted({t for a in arms for t in a.tasks()},
                     key=lambda t: (list(KNOWN_TASKS).index(t) if t in KNOWN_TASKS else 99, t))
    if tasks is not None:
        unknown = [t for t in tasks if t not in present]
        if unknown:
            raise UserError(f"--tasks: {unknown[0]} is in none of the runs")
        present = tasks
    panels = {t: delta_curves(arms, baseline, t, confidence) for t in present}
    cols = min(4, len(present))
    rows = math.ceil(len(present) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")
    names = [n for p in panels.values() for n in p]
    names = list(dict.fromkeys(names))
    for ax, task in zip(axes.ravel(), present, strict=False):
        n_max = 1
        for name, (ks, d, lo, hi) in panels[task].items():
            colour = colours(names.index(name) % 10)
            x = np.log2(ks)
            ax.plot(x, 100 * d, marker="o", ms=3, color=colour, label=name)
            ax.fill_between(x, 100 * lo, 100 * hi, color=colour, alpha=0.18, linewidth=0)
            n_max = max(n_max, ks[-1])
        ax.axhline(0, color="black", lw=0.8)
        ticks = np.arange(0, int(math.log2(n_max)) + 1)
        ax.set_xticks(ticks, [str(2 ** t) for t in ticks], fontsize=7)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("k")
        ax.set_ylabel(f"pass@k − {baseline} (points)")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(present):]:
        ax.set_visible(False)
    handles, labels = [], []
    for ax in axes.ravel()[:len(present)]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize=8, frameon=False)
    fig.suptitle(title or f"paired difference from {baseline} ({int(confidence * 100)}% seed-aware intervals)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(max(1, len(labels)) / 4), 1, 0.96))
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
