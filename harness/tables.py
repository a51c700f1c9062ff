"""Result tables in the papers' style: rows = runs (and published reference rows), columns = benchmarks,
cells "pass@1 / pass@256", per-domain and overall averages; Markdown, LaTeX or CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tabulate import tabulate

from harness.errors import UserError
from harness.metrics import run_counts
from harness.passk import pass_at_k
from harness.runstore import Run, read_json

DOMAIN_ORDER = ("math", "logic", "code")
# Canonical column order and domains of the suite's benchmarks (also used for reference-only columns).
KNOWN_TASKS = {
    "aime24": "math", "aime25": "math", "amc23": "math", "math500": "math", "minerva_math": "math",
    "olympiadbench": "math", "math": "math",
    "synlogic_easy": "logic", "bbh": "logic",
    "humaneval_plus": "code", "humaneval": "code", "livecodebench": "code",
}


@dataclass
class Row:
    """One table row: scores[task][k] in [0, 1] (None where the row has no number)."""

    label: str
    scores: dict[str, dict[int, float]]
    reference: bool = False
    note: str = ""
    domains: dict[str, str] = field(default_factory=dict)


def parse_ks(text: str) -> list[int]:
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--k: expected comma-separated integers, got {text!r}") from None
    if not ks or any(k < 1 for k in ks):
        raise UserError(f"--k: expected positive integers, got {text!r}")
    return ks


def run_row(run: Run, ks: list[int]) -> Row:
    counts = run_counts(run)
    scores = {}
    for task, per_problem in counts.items():
        n = np.array([v[0] for v in per_problem.values()])
        c = np.array([v[1] for v in per_problem.values()])
        if max(ks) > n.min():
            raise UserError(f"{run.path}: task {task} has n={int(n.min())} samples for some problem, "
                            f"fewer than k={max(ks)} (lower --k or sample more)")
        means = pass_at_k(n, c, np.array(ks)).mean(axis=0)
        scores[task] = {k: float(m) for k, m in zip(ks, means, strict=True)}
    return Row(run.label, scores, domains={t: run.task_domain(t) for t in counts})


def reference_rows(path: str | Path, ks: list[int]) -> list[Row]:
    """Published numbers from a JSON file:

        {"source": "CaSP arXiv 2510.14807v3, Table 1", "unit": "percent",
         "rows": [{"label": "GRPO", "scores": {"aime24": {"1": 30.1, "256": 70.0}, ...}}, ...]}
    """
    ref = read_json(Path(path), "reference numbers")
    if not isinstance(ref, dict) or not isinstance(ref.get("rows"), list):
        raise UserError(f"{path}: expected an object with a 'rows' list")
    scale = {"percent": 0.01, "fraction": 1.0}.get(ref.get("unit", "percent"))
    if scale is None:
        raise UserError(f"{path}: field 'unit' must be 'percent' or 'fraction'")
    rows = []
    for i, r in enumerate(ref["rows"]):
        if not isinstance(r, dict) or "label" not in r or not isinstance(r.get("scores"), dict):
            raise UserError(f"{path}: rows[{i}] needs 'label' and a 'scores' object")
        scores: dict[str, dict[int, float]] = {}
        for task, by_k in r["scores"].items():
            try:
                vals = {int(k): float(v) * scale for k, v in by_k.items() if v is not None}
            except (TypeError, ValueError, AttributeError):
                raise UserError(f"{path}: rows[{i}].scores.{task} must map k to a number") from None
            scores[task] = {k: v for k, v in vals.items() if k in ks}
        rows.append(Row(f"{r['label']} [published]", scores, reference=True, note=ref.get("source", "")))
    return rows


def check_same_problems(runs: list[Run]) -> None:
    """Rows are comparable only when each benchmark was scored on the same problems in every run."""
    seen: dict[str, tuple[Run, frozenset]] = {}
    for run in runs:
        for task, per_problem in run_counts(run).items():
            ids = frozenset(per_problem)
            if task in seen and seen[task][1] != ids:
                other = seen[task][0]
                raise UserError(f"task {task}: {other.path} has {len(seen[task][1])} problems and {run.path} "
                                f"has {len(ids)}, not the same set (pass --allow-different-problems to "
                                f"tabulate anyway)")
            seen.setdefault(task, (run, ids))


def build_table(rows: list[Row], ks: list[int], tasks: list[str] | None = None) -> tuple[list[str], list[dict]]:
    """Column order: math tasks, math avg, logic tasks, logic avg, code tasks, code avg, other, avg.

    Returns (columns, records) where each record maps column -> {k: value or None}.
    A domain (or overall) average is given only for rows that have every task of that domain.
    """
    domains: dict[str, str] = {}
    for row in rows:
        for t in row.scores:
            domains.setdefault(t, row.domains.get(t) or KNOWN_TASKS.get(t, "other"))
    present = tasks if tasks is not None else list(domains)
    order = list(KNOWN_TASKS)
    present = sorted(present, key=lambda t: (order.index(t) if t in order else len(order), t))
    by_domain: dict[str, list[str]] = {}
    for t in present:
        by_domain.setdefault(domains.get(t, KNOWN_TASKS.get(t, "other")), []).append(t)

    columns: list[str] = []
    averages: list[tuple[str, list[str]]] = []
    for dom in [*DOMAIN_ORDER, *sorted(set(by_domain) - set(DOMAIN_ORDER))]:
        ts = by_domain.get(dom, [])
        columns += ts
        if len(ts) > 1 and len(by_domain) > 1:
            columns.append(f"{dom} avg")
            averages.append((f"{dom} avg", ts))
    if len(present) > 1:
        columns.append("avg")
        averages.append(("avg", present))

    records = []
    for row in rows:
        rec: dict = {"label": row.label}
        for t in present:
            rec[t] = {k: row.scores.get(t, {}).get(k) for k in ks}
        for name, ts in averages:
            rec[name] = {k: (float(np.mean([rec[t][k] for t in ts]))
                             if all(rec[t][k] is not None for t in ts) else None) for k in ks}
        records.append(rec)
    return columns, records


def render(columns: list[str], records: list[dict], ks: list[int], fmt: str = "md") -> str:
    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f}"

    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["run"] + [f"{c} pass@{k}" for c in columns for k in ks])
        for rec in records:
            w.writerow([rec["label"]] + ["" if rec[c][k] is None else f"{100 * rec[c][k]:.4f}"
                                         for c in columns for k in ks])
        return buf.getvalue()
    head = " / ".join(f"pass@{k}" for k in ks)
    body = [[rec["label"]] + [" / ".join(pct(rec[c][k]) for k in ks) for c in columns] for rec in records]
    if fmt == "md":
        return f"Scores in %, cells are {head}.\n\n" + tabulate(body, headers=["run", *columns],
                                                                  tablefmt="github", disable_numparse=True)
    if fmt == "latex":
        return tabulate(body, headers=["run", *columns], tablefmt="latex_booktabs", disable_numparse=True)
    raise UserError(f"--format: expected md, latex or csv, got {fmt!r}")


def default_table_ks(runs: list[Run]) -> list[int]:
    """The papers' pass@1 / pass@256, with 256 lowered to the largest power of two every run has."""
    n_min = min((min(v[0] for v in per.values()) for r in runs for per in run_counts(r).values()), default=256)
    top = 1 << (min(n_min, 256).bit_length() - 1)
    return sorted({1, top})


def table(run_paths: list[str], ks: list[int] | None = None, fmt: str = "md", reference: str | None = None,
          tasks: list[str] | None = None, allow_different_problems: bool = False) -> str:
    """The `rlvr table` verb as a function. ks=None: see `default_table_ks`."""
    runs = [Run.open(p) for p in run_paths]
    if not allow_different_problems:
        check_same_problems(runs)
    ks = default_table_ks(runs) if ks is None else ks
    rows = [run_row(r, ks) for r in runs]
    if reference:
        rows += reference_rows(reference, ks)
    if not rows:
        raise UserError("nothing to tabulate: give run directories or --reference")
    columns, records = build_table(rows, ks, tasks)
    return render(columns, records, ks, fmt)
