"""The metric columns `rlvr table --metrics` and `rlvr compare --metric` name, and their values per run.

Names (case-insensitive): `pass@K`, `avg@n`, `maj@K`, `gpass@K/TAU` (G-Pass@k at threshold TAU in (0, 1]),
`mgpass@K`, `no-answer` (share of judged samples without an extracted answer), `truncated` (share of
samples stopped by the token limit). Definitions: `rlvr.harness.report.voting` and docs/metrics.md.
A `pass@K` column is the integer K, as `--k` gives it, so tables keep their pass@k cells unchanged.
"""

from __future__ import annotations

import math
import re

import numpy as np
from rlvr.harness.errors import UserError
from rlvr.harness.report.metrics import NO_FINAL_ANSWER, compute_metrics, judged, maj_matrix, metrics_current
from rlvr.harness.report.voting import g_pass_table
from rlvr.harness.runs.store import Run

Column = int | str
NOT_DEFINED = math.nan          # a cell the metric has no meaning for (maj@k of a code task): shown "n/a"

_PATTERNS = (
    (re.compile(r"pass@(\d+)"), lambda m: int(m.group(1))),
    (re.compile(r"avg@n"), lambda m: "avg@n"),
    (re.compile(r"maj@(\d+)"), lambda m: f"maj@{int(m.group(1))}"),
    (re.compile(r"g-?pass@(\d+)/(\d*\.?\d+)"), lambda m: f"gpass@{int(m.group(1))}/{float(m.group(2)):g}"),
    (re.compile(r"mg-?pass@(\d+)"), lambda m: f"mgpass@{int(m.group(1))}"),
    (re.compile(r"no[-_]?answer"), lambda m: "no-answer"),
    (re.compile(r"truncat(?:ed|ion)"), lambda m: "truncated"),
)


def parse_column(text: str, flag: str = "--metrics") -> Column:
    """One metric name -> its column key (an int K for pass@K)."""
    name = text.strip().lower()
    for pattern, key in _PATTERNS:
        m = pattern.fullmatch(name)
        if m:
            col = key(m)
            k = col if isinstance(col, int) else _k_of(col)
            if k is not None and k < 1:
                raise UserError(f"{flag}: k must be >= 1 in {text!r}")
            if isinstance(col, str) and col.startswith("gpass@"):
                tau = float(col.split("/")[1])
                if not 0 < tau <= 1:
                    raise UserError(f"{flag}: the G-Pass threshold must be in (0, 1], got {text!r}")
            return col
    raise UserError(f"{flag}: unknown metric {text!r} (known: pass@K, avg@n, maj@K, gpass@K/TAU, mgpass@K, "
                    f"no-answer, truncated)")


def parse_columns(text: str, flag: str = "--metrics") -> list[Column]:
    cols = [parse_column(x, flag) for x in text.split(",") if x.strip()]
    if not cols:
        raise UserError(f"{flag}: no metric given")
    return list(dict.fromkeys(cols))


def column_name(col: Column) -> str:
    return f"pass@{col}" if isinstance(col, int) else col


def _k_of(col: str) -> int | None:
    m = re.search(r"@(\d+)", col)
    return int(m.group(1)) if m else None


def task_metrics(run: Run) -> dict[str, dict]:
    """metrics.json's per-task entries with the vote tallies: the stored file when it is current and
    holds them, else recomputed from the samples in memory (nothing is written; `rlvr metrics RUN` writes
    them), else the stored file as it is (a run kept without samples: its new columns show no number)."""
    stored = run.read_metrics() if (run.path / "metrics.json").exists() else None
    fresh = stored is not None and metrics_current(run)
    if fresh and all("votes" in e for e in (stored.get("tasks") or {}).values()):
        return stored["tasks"]
    if run.samples_path.exists():
        return compute_metrics(run, iterations=1)["tasks"]
    return (stored or {}).get("tasks") or {}


def column_values(run: Run, cols: list[Column]) -> dict[str, dict[Column, float | None]]:
    """{task: {column: value}} for the non-pass@k columns: a number in [0, 1], None where the run cannot
    give one (answers or finish reasons not stored, k above the judged n), NOT_DEFINED where the metric
    has no meaning for the task."""
    wanted = [c for c in cols if not isinstance(c, int)]
    if not wanted:
        return {}
    out: dict[str, dict[Column, float | None]] = {}
    for task, entry in task_metrics(run).items():
        counts = judged({p: (int(v[0]), int(v[1])) for p, v in (entry.get("problems") or {}).items()})
        ids = list(counts)
        n = np.array([counts[p][0] for p in ids])
        c = np.array([counts[p][1] for p in ids])
        n_min = int(n.min()) if ids else 0
        votes = entry.get("votes")
        row: dict[Column, float | None] = {}
        for col in wanted:
            k = _k_of(col)
            if col == "no-answer":
                row[col] = entry.get("no_answer_rate")
            elif col == "truncated":
                row[col] = entry.get("truncation_rate")
            elif not ids or (k is not None and k > n_min):
                row[col] = None
            elif col == "avg@n":
                row[col] = float((c / n).mean())
            elif col.startswith("maj@"):
                if votes is None:
                    row[col] = NOT_DEFINED if entry.get("maj_note") == NO_FINAL_ANSWER or \
                        (entry.get("domain") == "code" and "votes" not in entry) else None
                else:
                    tallies = {p: (int(v[0]), [int(b) for b in v[1]], int(v[2])) for p, v in votes.items()}
                    row[col] = float(maj_matrix(tallies, ids, [k]).mean())
            elif col.startswith("gpass@"):
                tau = float(col.split("/")[1])
                row[col] = float(g_pass_table(n, c, [k], [tau])[0][tau].mean())
            elif col.startswith("mgpass@"):
                row[col] = float(g_pass_table(n, c, [k], [])[1].mean())
        out[task] = row
    return out
