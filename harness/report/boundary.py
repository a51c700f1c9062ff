"""The per-problem boundary table: which problems a run solves that the base model never solves, and the reverse.

For each run and task, over the problems both the run and the base run have judged samples of:
  gained  the base model never solves the problem in its n samples (c = 0), the run solves it at least once;
  lost    the base model solves it at least once, the run never does.
That is the observation behind "Does Reinforcement Learning Really Incentivize Reasoning Capacity in LLMs
Beyond the Base Model?" (Yue et al. 2025, arXiv:2504.13837): RLVR-trained models solve few problems outside
the base model's pass@n boundary and lose some inside it. "Never in n samples" depends on n: the table
prints each side's smallest n and says when the two differ (a run with more samples solves more by
chance alone).

Rows follow the runs' `arm` and `train_seed` (run.json), so the seeds of one arm sit together.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from rlvr.harness.errors import UserError
from rlvr.harness.report.metrics import run_counts
from rlvr.harness.runs.store import Run
from tabulate import tabulate


@dataclass
class BoundaryRow:
    run: str                       # the run's label
    arm: str | None
    train_seed: int | None
    task: str
    problems: int                  # judged in both runs
    base_solved: int               # solved at least once by the base
    run_solved: int
    gained: list[str] = field(default_factory=list)   # problem ids: base never, run at least once
    lost: list[str] = field(default_factory=list)     # base at least once, run never
    base_n: int = 0                # the smallest number of judged samples per problem
    run_n: int = 0


def boundary(base: str, runs: list[str]) -> list[BoundaryRow]:
    """One row per (run, task) the run shares with the base run."""
    base_run = Run.open(base)
    base_counts = run_counts(base_run)
    rows = []
    for path in runs:
        run = Run.open(path)
        counts = run_counts(run)
        shared = [t for t in counts if t in base_counts]
        if not shared:
            raise UserError(f"{path}: shares no task with the base run {base}")
        for task in shared:
            ids = sorted(p for p in counts[task] if p in base_counts[task]
                         and counts[task][p][0] > 0 and base_counts[task][p][0] > 0)
            b = {p: base_counts[task][p] for p in ids}
            r = {p: counts[task][p] for p in ids}
            rows.append(BoundaryRow(
                run=run.label, arm=run.info.get("arm"), train_seed=run.info.get("train_seed"), task=task,
                problems=len(ids), base_solved=sum(b[p][1] > 0 for p in ids), run_solved=sum(r[p][1] > 0 for p in ids),
                gained=[p for p in ids if b[p][1] == 0 and r[p][1] > 0],
                lost=[p for p in ids if b[p][1] > 0 and r[p][1] == 0],
                base_n=min((b[p][0] for p in ids), default=0), run_n=min((r[p][0] for p in ids), default=0)))
    return sorted(rows, key=lambda x: (str(x.arm or x.run), -1 if x.train_seed is None else x.train_seed, x.run,
                                       x.task))


def _ids(ids: list[str], most: int = 6) -> str:
    return ", ".join(ids[:most]) + (f" (+{len(ids) - most})" if len(ids) > most else "")


def boundary_md(rows: list[BoundaryRow], base_label: str = "base") -> str:
    """Markdown: per run and task, gained and lost problem counts (with their ids), then per arm the totals
    over its seeds."""
    body = [[r.run, r.train_seed if r.train_seed is not None else "", r.task, r.problems,
             f"{r.base_solved} / {r.run_solved}", len(r.gained), len(r.lost),
             _ids(r.gained) or "-", _ids(r.lost) or "-"] for r in rows]
    head = ["run", "seed", "task", "problems", f"solved ({base_label} / run)", "gained", "lost",
            "gained problems", "lost problems"]
    by_arm: dict[str, list[BoundaryRow]] = {}
    for r in rows:
        by_arm.setdefault(r.arm or r.run, []).append(r)
    summary = [[arm, len({r.run for r in rs}), sum(len(r.gained) for r in rs), sum(len(r.lost) for r in rs),
                sum(r.problems for r in rs)] for arm, rs in by_arm.items()]
    ns = {(r.base_n, r.run_n) for r in rows}
    note = (f"Each side's samples per problem: {base_label} n = {rows[0].base_n}, runs n = {rows[0].run_n}."
            if len(ns) == 1 and rows else "Samples per problem differ between rows (n of base / run): "
            + ", ".join(f"{a} / {b}" for a, b in sorted(ns)) + ".")
    if any(a != b for a, b in ns):
        note += " Where the run has more samples than the base, it solves more problems by chance alone."
    return "\n".join([
        f"Problems {base_label} never solves in its samples that a run solves (gained), and the reverse (lost). {note}",
        "", tabulate(body, head, tablefmt="github"), "",
        "Per arm, summed over its seeds and tasks:", "",
        tabulate(summary, ["arm", "seeds", "gained", "lost", "problem-runs"], tablefmt="github")])


def boundary_csv(rows: list[BoundaryRow]) -> str:
    """CSV, one line per (run, task), problem ids separated by spaces."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "arm", "train_seed", "task", "problems", "base_solved", "run_solved", "gained", "lost",
                "base_n", "run_n", "gained_ids", "lost_ids"])
    for r in rows:
        w.writerow([r.run, r.arm or "", "" if r.train_seed is None else r.train_seed, r.task, r.problems,
                    r.base_solved, r.run_solved, len(r.gained), len(r.lost), r.base_n, r.run_n, " ".join(r.gained),
                    " ".join(r.lost)])
    return buf.getvalue()


__all__ = ["BoundaryRow", "boundary", "boundary_csv", "boundary_md"]
