"""pass@k curves: one panel per benchmark, log2-spaced k, bootstrap bands, one colour and marker per run.

An arm with several training seeds (run.json `arm`/`train_seed`, harness/report/seeds.py) is one curve:
the mean over seeds with a two-level bootstrap band (seeds, then problems). `plot_delta` draws each
arm's paired difference from a baseline arm across k, with the seed-aware interval of `rlvr compare`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from rlvr.harness.errors import UserError
from rlvr.harness.report.metrics import check_bootstrap_args, judged, maj_matrix, mean_curve, run_tallies
from rlvr.harness.report.passk import default_ks, passk_curve
from rlvr.harness.report.seeds import Arm, group_arms, paired_difference, seed_matrix, two_level_bootstrap
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


def _series(runs: list[Run], counts: list, task: str, confidence: float, iterations: int, seed: int,
            names: list[str] | None = None):
    """(label, curve or None, index of the run in `runs` or None) per curve of a panel: one per run (named by
    `names`, default its label), one per arm of several training seeds (index None)."""
    arms = group_arms(runs)
    for arm in arms:
        if arm.n_seeds > 1:
            yield f"{arm.name} ({arm.n_seeds} seeds)", arm_curve(arm, task, confidence, iterations, seed), None
            continue
        for run in arm.runs[0]:
            i = runs.index(run)
            name = names[i] if names is not None else run.label
            scored = judged(counts[i].get(task, {}))   # verifier errors are left out, as in metrics.json
            if not scored:
                yield name, None, i
                continue
            n = np.array([v[0] for v in scored.values()])
            c = np.array([v[1] for v in scored.values()])
            yield name, passk_curve(n, c, confidence=confidence, iterations=iterations, seed=seed), i


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


def _legend_title_save(fig: Any, handles: list, labels: list[str], width: float, suptitle: str, out: Path) -> None:
    """The figure's legend below the panels (as many columns as fit `width` at 8 pt), its title, and the file
    (parents created; a one-line error naming --out when it cannot be written). Closes the figure."""
    import matplotlib.pyplot as plt

    entry_in = 0.6 + 0.065 * max((len(lab) for lab in labels), default=1)   # line sample + text at 8 pt
    fig.legend(handles, labels, loc="outside lower center", frameon=False,
               ncol=max(1, min(max(1, len(labels)), int(width // entry_in))))
    fig.suptitle(suptitle)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=RASTER_DPI)
    except OSError as e:
        raise UserError(f"--out: cannot write {out} ({e.strerror or e})") from None
    finally:
        plt.close(fig)


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
            for i, (name, curve, r) in enumerate(_series(runs, counts, task, confidence, iterations, seed, names)):
                if curve is None:
                    continue
                x = np.log2(curve.ks)
                colour = PALETTE[i % len(PALETTE)]
                ax.plot(x, 100 * np.array(curve.mean), marker=MARKERS[i % len(MARKERS)], color=colour, label=name)
                ax.fill_between(x, 100 * np.array(curve.lo), 100 * np.array(curve.hi), color=colour, alpha=0.18,
                                linewidth=0)
                n_max = max(n_max, curve.ks[-1])
                votes = run_votes[r].get(task) if maj and r is not None else None   # (not for a seed mean)
                if votes is not None:
                    ids = list(judged(counts[r].get(task, {})))
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
        over = "seeds and problems" if any(arm.n_seeds > 1 for arm in group_arms(runs)) else "problems"
        bands = f"shaded: {int(confidence * 100)}% bootstrap bands over {over}"
        what = "pass@k and maj@k (dashed)" if maj else "pass@k"
        _legend_title_save(fig, handles, labels, width, f"{title or what}\n{bands}", out)
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
               confidence: float = 0.95, title: str | None = None, width: float | None = None) -> Path:
    """`rlvr plot --delta BASELINE`: per benchmark, each arm's paired difference in pass@k from the
    baseline arm across k, with its seed-aware interval; where a curve's band crosses zero the data do
    not tell the arms apart at that k. Styled as `plot_runs` (fonts, palette, markers, dpi)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureCanvasBase

    out = Path(out)
    formats = FigureCanvasBase.get_supported_filetypes()
    if out.suffix.lstrip(".").lower() not in formats:
        raise UserError(f"--out: cannot tell the image type of {out.name} (use one of "
                        f"{', '.join('.' + f for f in sorted(formats))})")
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
    width = width or (COLUMN_WIDTH_IN if len(present) == 1 else DEFAULT_WIDTH_IN)
    panel = width / cols
    names = list(dict.fromkeys(n for p in panels.values() for n in p))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(width, rows * panel * 0.85 + 0.6), squeeze=False,
                                 layout="constrained")
        for ax, task in zip(axes.ravel(), present, strict=False):
            n_max = 1
            for name, (ks, d, lo, hi) in panels[task].items():
                i = names.index(name)
                colour = PALETTE[i % len(PALETTE)]
                x = np.log2(ks)
                ax.plot(x, 100 * d, marker=MARKERS[i % len(MARKERS)], color=colour, label=name)
                ax.fill_between(x, 100 * lo, 100 * hi, color=colour, alpha=0.18, linewidth=0)
                n_max = max(n_max, ks[-1])
            ax.axhline(0, color="black", lw=0.8)
            ticks = np.arange(0, int(math.log2(n_max)) + 1)
            every = max(1, math.ceil(len(ticks) / max(2, int(panel * 3))))
            ax.set_xticks(ticks, [str(2 ** t) if j % every == 0 else "" for j, t in enumerate(ticks)])
            ax.set_title(task)
            ax.set_xlabel("k")
            ax.set_ylabel(f"pass@k − {baseline} (points)")
            ax.grid(alpha=0.3, linewidth=0.5)
        for ax in axes.ravel()[len(present):]:
            ax.set_visible(False)
        handles, labels = [], []
        for ax in axes.ravel()[:len(present)]:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        bands = f"shaded: {int(confidence * 100)}% seed-aware intervals"
        _legend_title_save(fig, handles, labels, width, f"{title or f'paired difference from {baseline}'}\n{bands}",
                           out)
    return out
