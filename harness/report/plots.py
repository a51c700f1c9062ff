"""pass@k curves: one panel per benchmark, log2-spaced k, bootstrap bands, one colour and marker per run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from rlvr.harness.errors import UserError
from rlvr.harness.report.metrics import check_bootstrap_args, judged, maj_matrix, mean_curve, run_tallies
from rlvr.harness.report.passk import passk_curve
from rlvr.harness.report.tables import KNOWN_TASKS, check_same_problems, distinct_labels
from rlvr.harness.runs.store import Run

# Okabe & Ito's colour-blind-safe palette (https://jfly.uni-koeln.de/color/), black first and yellow last
# (the faintest on white), and a marker per run so that curves differ without colour (print, greyscale).
PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
COLUMN_WIDTH_IN = 3.5     # one column of a two-column paper (ICML, ACL); NeurIPS's text is 5.5 wide
DEFAULT_WIDTH_IN = 7.0    # the full text width of a two-column paper
RASTER_DPI = 300
FONT_PT = 8               # the smallest size the venues accept in figures
STYLE = {"font.size": FONT_PT, "axes.titlesize": FONT_PT + 1, "axes.labelsize": FONT_PT,
         "xtick.labelsize": FONT_PT, "ytick.labelsize": FONT_PT, "legend.fontsize": FONT_PT,
         "figure.titlesize": FONT_PT + 1, "lines.linewidth": 1.2, "lines.markersize": 3.5,
         "axes.spines.top": False, "axes.spines.right": False}


def plot_runs(run_paths: list[str], out: str | Path, tasks: list[str] | None = None,
              iterations: int = 1000, seed: int = 0, confidence: float = 0.95, title: str | None = None,
              allow_different_problems: bool = False, maj: bool = False, width: float | None = None) -> Path:
    """Write a PNG (or any format matplotlib infers from the suffix) and return its path.

    maj: also draw each run's maj@k curve (dashed, same colour, with its band) where the task has a final
    answer and the run stored its answers (`rlvr.harness.report.columns.task_metrics`).

    As in `rlvr table`, runs must have scored each benchmark on the same problems unless
    allow_different_problems (curves over different problem sets are not comparable). `width`: the
    figure's width in inches (default `DEFAULT_WIDTH_IN`, or `COLUMN_WIDTH_IN` for a single panel); the
    panels wrap to fit it at `FONT_PT`-point text. Raster formats are written at `RASTER_DPI`."""
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
    if width is not None and not 1.0 <= width <= 40.0:
        raise UserError(f"--width: expected inches between 1 and 40, got {width:g}")
    runs = [Run.open(p) for p in run_paths]
    if not allow_different_problems:
        check_same_problems(runs)
    names = distinct_labels(runs, merge_disjoint=False)
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

    width = width or (COLUMN_WIDTH_IN if len(present) == 1 else DEFAULT_WIDTH_IN)
    cols = max(1, min(4, len(present), int(width // 1.7)))     # panels at least 1.7 in wide
    rows = math.ceil(len(present) / cols)
    panel = width / cols
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(width, rows * panel * 0.85 + 0.6), squeeze=False,
                                 layout="constrained")
        for ax, task in zip(axes.ravel(), present, strict=False):
            n_max = 1
            for i, (cnt, name) in enumerate(zip(counts, names, strict=True)):
                scored = judged(cnt.get(task, {}))   # verifier errors are left out, as in metrics.json
                if not scored:
                    continue
                n = np.array([v[0] for v in scored.values()])
                c = np.array([v[1] for v in scored.values()])
                curve = passk_curve(n, c, confidence=confidence, iterations=iterations, seed=seed)
                x = np.log2(curve.ks)
                colour = PALETTE[i % len(PALETTE)]
                ax.plot(x, 100 * np.array(curve.mean), marker=MARKERS[i % len(MARKERS)], color=colour, label=name)
                ax.fill_between(x, 100 * np.array(curve.lo), 100 * np.array(curve.hi), color=colour, alpha=0.18,
                                linewidth=0)
                n_max = max(n_max, curve.ks[-1])
                votes = run_votes[i].get(task) if maj else None
                if votes is not None:
                    ids = list(scored)
                    tallies_ = {p: (int(v[0]), [int(b) for b in v[1]], int(v[2])) for p, v in votes.items()}
                    mc = mean_curve(maj_matrix(tallies_, ids, curve.ks), curve.ks, confidence, iterations, seed)
                    ax.plot(x, 100 * np.array(mc["mean"]), marker=MARKERS[i % len(MARKERS)], ms=2.5, ls="--",
                            color=colour, label=f"{name} maj@k")
                    ax.fill_between(x, 100 * np.array(mc["lo"]), 100 * np.array(mc["hi"]), color=colour,
                                    alpha=0.08, linewidth=0)
            ticks = np.arange(0, int(math.log2(n_max)) + 1)
            every = max(1, math.ceil(len(ticks) / max(2, int(panel * 3))))   # labels that do not overlap
            ax.set_xticks(ticks, [str(2 ** t) if j % every == 0 else "" for j, t in enumerate(ticks)])
            sizes = sorted({len(c[task]) for c in counts if task in c})
            size = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
            unverified = sum(sum(e.get(task, {}).values()) for _, e in tallies)
            sep = "\n" if panel < 3.0 else " "    # a narrow panel takes its title in two lines
            no_maj = maj and not any(v.get(task) for v in run_votes)
            ax.set_title(f"{task}{sep}({size} problems)" + (f"\n{unverified} samples not verified (errors)"
                                                             if unverified else "")
                         + ("\nno maj@k (no final answer, or no stored answers)" if no_maj else ""))
            ax.set_xlabel("k")
            ax.set_ylabel("pass@k, maj@k dashed (%)" if maj else "pass@k (%)")
            ax.grid(alpha=0.3, linewidth=0.5)
        for ax in axes.ravel()[len(present):]:
            ax.set_visible(False)
        handles, labels = axes.ravel()[0].get_legend_handles_labels()
        for ax in axes.ravel()[1:len(present)]:  # runs missing from the first panel still get a legend entry
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        entry_in = 0.6 + 0.065 * max((len(lab) for lab in labels), default=1)   # line sample + text at 8 pt
        fig.legend(handles, labels, loc="outside lower center", frameon=False,
                   ncol=max(1, min(len(labels), int(width // entry_in))))
        bands = f"shaded: {int(confidence * 100)}% bootstrap bands over problems"
        what = "pass@k and maj@k (dashed)" if maj else "pass@k"
        fig.suptitle(f"{title or what}\n{bands}")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, dpi=RASTER_DPI)
        except OSError as e:
            raise UserError(f"--out: cannot write {out} ({e.strerror or e})") from None
        finally:
            plt.close(fig)
    return out
