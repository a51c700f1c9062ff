"""pass@k curves: one panel per benchmark, log2-spaced k, bootstrap bands, one colour per run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from rlvr.harness.errors import UserError
from rlvr.harness.report.metrics import check_bootstrap_args, judged, maj_matrix, mean_curve, run_tallies
from rlvr.harness.report.passk import passk_curve
from rlvr.harness.report.tables import KNOWN_TASKS, check_same_problems
from rlvr.harness.runs.store import Run


def plot_runs(run_paths: list[str], out: str | Path, tasks: list[str] | None = None,
              iterations: int = 1000, seed: int = 0, confidence: float = 0.95, title: str | None = None,
              allow_different_problems: bool = False, maj: bool = False) -> Path:
    """Write a PNG (or any format matplotlib infers from the suffix) and return its path.

    maj: also draw each run's maj@k curve (dashed, same colour, with its band) where the task has a final
    answer and the run stored its answers (`rlvr.harness.report.columns.task_metrics`).

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
    if maj:
        from rlvr.harness.report.columns import task_metrics

        run_votes = [{t: e.get("votes") for t, e in task_metrics(r).items()} for r in runs]
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
        for i, (run, cnt) in enumerate(zip(runs, counts, strict=True)):
            scored = judged(cnt.get(task, {}))   # verifier errors are left out, as in metrics.json
            if not scored:
                continue
            n = np.array([v[0] for v in scored.values()])
            c = np.array([v[1] for v in scored.values()])
            curve = passk_curve(n, c, confidence=confidence, iterations=iterations, seed=seed)
            x = np.log2(curve.ks)
            colour = colours(i % 10)
            ax.plot(x, 100 * np.array(curve.mean), marker="o", ms=3, color=colour, label=run.label)
            ax.fill_between(x, 100 * np.array(curve.lo), 100 * np.array(curve.hi), color=colour, alpha=0.18,
                            linewidth=0)
            n_max = max(n_max, curve.ks[-1])
            votes = run_votes[i].get(task) if maj else None
            if votes is not None:
                ids = list(scored)
                tallies_ = {p: (int(v[0]), [int(b) for b in v[1]], int(v[2])) for p, v in votes.items()}
                mc = mean_curve(maj_matrix(tallies_, ids, curve.ks), curve.ks, confidence, iterations, seed)
                ax.plot(x, 100 * np.array(mc["mean"]), marker="s", ms=2.5, ls="--", color=colour,
                        label=f"{run.label} maj@k")
                ax.fill_between(x, 100 * np.array(mc["lo"]), 100 * np.array(mc["hi"]), color=colour, alpha=0.08,
                                linewidth=0)
        ticks = np.arange(0, int(math.log2(n_max)) + 1)
        ax.set_xticks(ticks, [str(2 ** t) for t in ticks], fontsize=7)
        sizes = sorted({len(c[task]) for c in counts if task in c})
        size = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
        unverified = sum(sum(e.get(task, {}).values()) for _, e in tallies)
        ax.set_title(f"{task} ({size} problems)" + (f"\n{unverified} samples not verified (errors)"
                                                     if unverified else "")
                     + ("\nno maj@k (no final answer, or no stored answers)" if maj and not any(v.get(task) for v in run_votes) else ""),
                     fontsize=10)
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k, maj@k dashed (%)" if maj else "pass@k (%)")
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
    what = "pass@k and maj@k (dashed)" if maj else "pass@k"
    fig.suptitle(title or f"{what} ({int(confidence * 100)}% bootstrap bands over problems)", fontsize=11)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(labels) / 4), 1, 0.96))
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
