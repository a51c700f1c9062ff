"""Result tables in the papers' style: rows = runs (and published reference rows), columns = benchmarks,
cells "pass@1 / pass@256", per-domain and overall averages; Markdown, LaTeX or CSV.

Published numbers (`--reference FILE[#TABLE]`) come as rows marked "[published]", and every run that
matches a published row gets a delta row "Δ RUN − ROW" (ours minus the paper, in points, cell by cell,
averages included). A run matches the first reference row whose label equals the run's label
(case-insensitive), failing that the first row whose `match` list holds the run's label, failing that the
first row whose `match` list holds the run's method name (run.json `method.name`; a run without one, say
`rlvr eval` of some model, matches by label only: label it "base" for the base model; `rlvr reproduce`
matches by the recipe's arm id instead). Runs that share a label and score disjoint benchmarks (one model
evaluated under two protocols, e.g. Lp-Reg's avg@16 on AIME and greedy elsewhere) are merged into one row
first.

Runs of one arm with several training seeds (run.json `arm` and `train_seed`, see
harness/report/seeds.py) make one row, "ARM (S seeds)": each cell is the mean over seeds with a 95%
two-level bootstrap interval (seeds, then problems within each seed), "31.2 [27.0, 35.1]", and with
`seed_std` also the standard deviation of the per-seed scores, "31.2 ±2.1 [27.0, 35.1]".
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rlvr.harness.errors import UserError
from rlvr.harness.report.columns import column_name, column_values, parse_column
from rlvr.harness.report.metrics import run_counts, run_tallies
from rlvr.harness.report.passk import pass_at_k
from rlvr.harness.report.seeds import Arm, SeedStats, arm_stats, group_arms
from rlvr.harness.runs.store import Run, read_json
from tabulate import tabulate

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
    match: tuple[str, ...] = ()     # reference rows: the run labels / method names this row stands for
    key: str | None = None          # run rows: a name `match` lists may hold (run.json's method name;
                                    # harness/reproduce/recipes.py puts the recipe's arm id here)
    seed_stats: SeedStats | None = None   # an arm with several training seeds (scores = means over seeds)


def parse_ks(text: str) -> list[int]:
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--k: expected comma-separated integers, got {text!r}") from None
    if not ks or any(k < 1 for k in ks):
        raise UserError(f"--k: expected positive integers, got {text!r}")
    return ks


def run_row(run: Run, ks: list[int]) -> Row:
    """The run's mean pass@k per task. Where verifier errors leave some problem with fewer judged samples
    than k, that cell has no number (None, shown as "–"): pass@k over the problems that could be scored
    would be a different benchmark."""
    counts, errors = run_tallies(run)
    extra = column_values(run, ks)          # the non-pass@k columns (`rlvr table --metrics`)
    ks, others = [k for k in ks if isinstance(k, int)], [k for k in ks if not isinstance(k, int)]
    scores = {}
    for task, per_problem in counts.items():
        n = np.array([v[0] for v in per_problem.values()])
        c = np.array([v[1] for v in per_problem.values()])
        sampled = n + np.array([errors.get(task, {}).get(p, 0) for p in per_problem])
        if ks and max(ks) > sampled.min():
            raise UserError(f"{run.path}: task {task} has n={int(sampled.min())} samples for some problem, "
                            f"fewer than k={max(ks)} (ask for a smaller k, or finish the run: rerun its "
                            f"`rlvr eval` command, which resumes)")
        defined = [k for k in ks if k <= n.min()]
        means = pass_at_k(n, c, np.array(defined)).mean(axis=0) if defined else []
        scores[task] = {k: None for k in ks} | {k: float(m) for k, m in zip(defined, means, strict=True)}
        scores[task] |= {k: extra.get(task, {}).get(k) for k in others}
    method = (run.info.get("method") or {}).get("name")
    return Row(run.label, scores, domains={t: run.task_domain(t) for t in counts}, key=method)


def reference_table(path: str | Path) -> tuple[dict, str]:
    """The chosen table of a reference file, and its display name. `path` is `FILE` or `FILE#TABLE`.

    A file holds one table, `{"source", "unit", "rows"}`, or several:
    `{"default_table": ID, "tables": [{"id": ID, "source", "unit", "rows", ...}, ...]}` (reproduce/*/reference.json);
    `#TABLE` picks one, else `default_table`, else the only one.
    """
    file, _, wanted = str(path).partition("#")
    ref = read_json(Path(file), "reference numbers")
    if not isinstance(ref, dict):
        raise UserError(f"{file}: expected an object with a 'rows' list or a 'tables' list")
    if "tables" not in ref:
        if wanted:
            raise UserError(f"{file}: has no 'tables' list, so no table {wanted!r} to choose")
        if not isinstance(ref.get("rows"), list):
            raise UserError(f"{file}: expected an object with a 'rows' list")
        return ref, file
    tables = ref["tables"]
    if not isinstance(tables, list) or not all(isinstance(t, dict) and "id" in t for t in tables):
        raise UserError(f"{file}: field 'tables' must be a list of objects with an 'id'")
    ids = [str(t["id"]) for t in tables]
    chosen = wanted or ref.get("default_table") or (ids[0] if len(ids) == 1 else None)
    if chosen is None:
        raise UserError(f"{file}: several tables ({', '.join(ids)}); choose one with {file}#ID")
    if chosen not in ids:
        raise UserError(f"{file}: no table {chosen!r} (tables: {', '.join(ids)})")
    table = tables[ids.index(chosen)]
    if not isinstance(table.get("rows"), list):
        raise UserError(f"{file}#{chosen}: expected a 'rows' list")
    return table, f"{file}#{chosen}"


def reference_rows(path: str | Path, ks: list[int]) -> list[Row]:
    """Published numbers from a JSON file (`FILE` or `FILE#TABLE`, see `reference_table`):

        {"source": "CaSP arXiv 2510.14807v3, Table 1", "unit": "percent",
         "rows": [{"label": "GRPO", "match": ["grpo"], "scores": {"aime24": {"1": 30.1, "256": 70.0}, ...}}, ...]}

    `match` (optional) lists run labels / method names that stand for the row (see the module doc);
    other row fields (`reported_avg`, `note`) are kept in the file for checks and readers, not shown.
    """
    ref, name = reference_table(path)
    scale = {"percent": 0.01, "fraction": 1.0}.get(ref.get("unit", "percent"))
    if scale is None:
        raise UserError(f"{name}: field 'unit' must be 'percent' or 'fraction'")
    rows = []
    for i, r in enumerate(ref["rows"]):
        if not isinstance(r, dict) or "label" not in r or not isinstance(r.get("scores"), dict):
            raise UserError(f"{name}: rows[{i}] needs 'label' and a 'scores' object")
        match = r.get("match", [])
        if not isinstance(match, list) or not all(isinstance(m, str) for m in match):
            raise UserError(f"{name}: rows[{i}].match must be a list of strings")
        scores: dict[str, dict[int, float]] = {}
        for task, by_k in r["scores"].items():
            try:
                vals = {parse_column(k if not str(k).isdigit() else f"pass@{k}", name): float(v) * scale
                        for k, v in by_k.items() if v is not None}
            except (TypeError, ValueError, AttributeError, UserError):
                raise UserError(f"{name}: rows[{i}].scores.{task} must map k to a number") from None
            scores[task] = {k: v for k, v in vals.items() if k in ks}
        rows.append(Row(f"{r['label']} [published]", scores, reference=True, note=ref.get("source", ""),
                        match=(str(r["label"]), *match)))
    return rows


def distinct_labels(runs: list[Run], merge_disjoint: bool = True) -> list[str]:
    """Each run's label, except where runs share one: those are named by their run directories instead
    (the shortest trailing parts of the paths that tell them apart). With `merge_disjoint`, runs that share
    a label and score disjoint benchmarks keep it (a table merges them into one row, `merge_same_label`)."""
    labels = [r.label for r in runs]
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        task_sets = [set(runs[i].info.get("tasks") or {}) for i in members]
        if merge_disjoint and sum(len(t) for t in task_sets) == len(set().union(*task_sets)):
            continue
        parts = [Path(runs[i].path).resolve().parts for i in members]
        for depth in range(1, max(len(p) for p in parts) + 1):
            names = ["/".join(p[-depth:]) for p in parts]
            if len(set(names)) == len(names):
                break
        for i, name in zip(members, names, strict=True):
            labels[i] = name
    return labels


def merge_same_label(rows: list[Row]) -> list[Row]:
    """Merge run rows that share a label and have no benchmark in common (kept in first-seen order)."""
    out: list[Row] = []
    for row in rows:
        twin = next((o for o in out if not o.reference and not row.reference and o.label == row.label
                     and o.seed_stats is None and row.seed_stats is None
                     and not set(o.scores) & set(row.scores)), None)
        if twin is None:
            out.append(Row(row.label, dict(row.scores), row.reference, row.note, dict(row.domains), row.match,
                           row.key, row.seed_stats))
        else:
            twin.scores.update(row.scores)
            twin.domains.update(row.domains)
    return out


def match_reference(run: Row, refs: list[Row]) -> Row | None:
    """The published row that `run` stands beside (rules in the module doc), or None."""
    label = run.label.casefold()
    for pick in (lambda r: r.match[0].casefold() == label,
                 lambda r: label in (m.casefold() for m in r.match[1:]),
                 lambda r: run.key is not None and run.key.casefold() in (m.casefold() for m in r.match[1:])):
        hit = next((r for r in refs if r.match and pick(r)), None)
        if hit is not None:
            return hit
    return None


def delta_records(rows: list[Row], records: list[dict], columns: list[str], ks: list[int]) -> list[dict]:
    """One record per run matched to a published row: ours minus theirs where both have a number."""
    by_row = {id(row): rec for row, rec in zip(rows, records, strict=True)}
    refs = [r for r in rows if r.reference]
    out = []
    for run in (r for r in rows if not r.reference):
        ref = match_reference(run, refs)
        if ref is None:
            continue
        ours, theirs = by_row[id(run)], by_row[id(ref)]
        rec: dict = {"label": f"Δ {run.label} − {ref.match[0]}", "delta": True}
        for c in columns:
            rec[c] = {k: (ours[c][k] - theirs[c][k] if ours[c][k] is not None and theirs[c][k] is not None
                          else None) for k in ks}
        rec["shared"] = any(v is not None for c in columns for v in rec[c].values())
        out.append(rec)
    return out


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
                                f"show them anyway)")
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
    if tasks is not None:
        unknown = [t for t in tasks if t not in domains]
        if unknown:
            raise UserError(f"--tasks: {unknown[0]} is in none of the rows (present: {', '.join(domains)})")
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
        if row.seed_stats is not None:
            rec["seed"] = seed_cells(row.seed_stats, [(t, [t]) for t in present] + averages, ks)
        records.append(rec)
    return columns, records


def seed_cells(stats: SeedStats, columns: list[tuple[str, list[str]]], ks: list[int],
               confidence: float = 0.95) -> dict[str, dict[int, tuple[float, float, float] | None]]:
    """(lo, hi, per-seed std) per column and k of a multi-seed row (None where a task is missing)."""
    out: dict[str, dict[int, tuple[float, float, float] | None]] = {}
    for name, ts in columns:
        have = all(t in stats.boot for t in ts)
        out[name] = {k: stats.column(ts, j, confidence) if have else None for j, k in enumerate(ks)}
    return out


def seed_rows(runs: list[Run], ks: list, iterations: int = 2000, seed: int = 0,
              labels: dict[str, str] | None = None) -> list[Row]:
    """Rows for `runs`, one per run, except that the runs of an arm with several training seeds make one
    row of means over the seeds with their SeedStats (harness/report/seeds.py); first-seen order. Only
    pass@k cells (int columns) are aggregated over seeds: with other metric columns every run is a row.
    `labels`: run path -> the name of its row (default: the run's label)."""
    rows = []

    def single(r: Run) -> Row:
        row = run_row(r, ks)
        if labels is not None:
            row.label = labels.get(str(r.path), row.label)
        return row

    if not all(isinstance(k, int) for k in ks):
        return [single(r) for r in runs]
    for arm in group_arms(runs):
        if arm.n_seeds == 1:
            rows += [single(r) for r in arm.runs[0]]
        else:
            rows.append(arm_row(arm, ks, iterations, seed))
    return rows


def arm_row(arm: Arm, ks: list[int], iterations: int = 2000, seed: int = 0) -> Row:
    means, stats = arm_stats(arm, ks, iterations, seed)
    first = arm.runs[0][0]
    domains = {t: r.task_domain(t) for runs in arm.runs for r in runs for t in run_counts(r)}
    method = (first.info.get("method") or {}).get("name")
    return Row(f"{arm.name} ({arm.n_seeds} seeds)", {t: {k: float(m[j]) for j, k in enumerate(ks)}
                                                    for t, m in means.items()},
               domains=domains, key=method or arm.name, seed_stats=stats)   # reference rows match the arm


def render(columns: list[str], records: list[dict], ks: list[int], fmt: str = "md", seed_std: bool = False) -> str:
    def cell(rec: dict, v: float | None, c: str | None = None, k: int | None = None) -> str:
        text = ("–" if v is None else "n/a" if math.isnan(v) else f"{100 * v:+.1f}" if rec.get("delta")
                else f"{100 * v:.1f}")
        iv = (rec.get("seed") or {}).get(c, {}).get(k)
        if v is None or iv is None:
            return text
        lo, hi, sd = iv
        return text + (f" ±{100 * sd:.1f}" if seed_std else "") + f" [{100 * lo:.1f}, {100 * hi:.1f}]"

    if fmt == "csv":
        if any(rec.get("seed") for rec in records):
            return _seed_csv(columns, records, ks)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["run"] + [f"{c} {column_name(k)}" for c in columns for k in ks])
        for rec in records:
            w.writerow([rec["label"]] + ["" if rec[c][k] is None else "n/a" if math.isnan(rec[c][k])
                                         else f"{100 * rec[c][k]:.4f}"
                                         for c in columns for k in ks])
        return buf.getvalue()
    head = " / ".join(column_name(k) for k in ks)
    body = [[rec["label"]] + [" / ".join(cell(rec, rec[c][k], c, k) for k in ks) for c in columns]
            for rec in records]
    if fmt == "md":
        seeds = any(rec.get("seed") for rec in records)
        note = ("\nRows of several training seeds: mean over seeds" + (" ±std across seeds" if seed_std else "")
                + " [95% two-level bootstrap interval: seeds, then problems within each seed]." if seeds else "")
        return f"Scores in %, cells are {head}.{note}\n\n" + tabulate(body, headers=["run", *columns],
                                                                        tablefmt="github", disable_numparse=True)
    if fmt == "latex":
        return tabulate(body, headers=["run", *columns], tablefmt="latex_booktabs", disable_numparse=True)
    raise UserError(f"--format: expected md, latex or csv, got {fmt!r}")


def _seed_csv(columns: list[str], records: list[dict], ks: list[int]) -> str:
    """CSV with, after each value column, its interval bounds and per-seed std (empty for one-run rows)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run"] + [f"{c} pass@{k}{x}" for c in columns for k in ks for x in ("", " lo", " hi", " std")])
    for rec in records:
        out = [rec["label"]]
        for c in columns:
            for k in ks:
                iv = (rec.get("seed") or {}).get(c, {}).get(k)
                out += ["" if rec[c][k] is None else f"{100 * rec[c][k]:.4f}"]
                out += [f"{100 * x:.4f}" for x in iv] if iv is not None and rec[c][k] is not None else ["", "", ""]
        w.writerow(out)
    return buf.getvalue()


def default_table_ks(runs: list[Run]) -> list[int]:
    """The papers' pass@1 / pass@256, with 256 lowered to the largest power of two every run has."""
    def sampled(run: Run) -> list[int]:     # judged samples plus those the verifier could not judge
        counts, errors = run_tallies(run)
        return [v[0] + errors.get(t, {}).get(p, 0) for t, per in counts.items() for p, v in per.items()]

    n_min = max(1, min((n for r in runs for n in sampled(r)), default=256))
    top = 1 << (min(n_min, 256).bit_length() - 1)
    return sorted({1, top})


def table(run_paths: list[str], ks: list[int] | None = None, fmt: str = "md", reference: str | None = None,
          tasks: list[str] | None = None, allow_different_problems: bool = False, seed_std: bool = False) -> str:
    """The `rlvr table` verb as a function. ks=None: see `default_table_ks`. Runs of one arm with several
    training seeds make one row (see the module doc); `seed_std` adds the per-seed std to its cells."""
    runs = [Run.open(p) for p in run_paths]
    if not allow_different_problems:
        check_same_problems(runs)
    ks = default_table_ks(runs) if ks is None else ks
    labels = {str(r.path): name for r, name in zip(runs, distinct_labels(runs), strict=True)}
    return table_from_rows(seed_rows(runs, ks, labels=labels), ks, fmt, reference, tasks, seed_std)


def table_from_rows(rows: list[Row], ks: list[int], fmt: str = "md", reference: str | None = None,
                    tasks: list[str] | None = None, seed_std: bool = False) -> str:
    """Render run rows (already scored at `ks`) with the published rows of `reference` and the deltas."""
    rows = merge_same_label(rows)
    if reference:
        rows += reference_rows(reference, ks)
    if not rows:
        raise UserError("nothing to tabulate: give run directories or --reference")
    columns, records = build_table(rows, ks, tasks)
    deltas = delta_records(rows, records, columns, ks)
    shown = [d for d in deltas if d["shared"]]
    text = render(columns, records + shown, ks, fmt, seed_std)
    if fmt == "md" and deltas and not shown:
        text += ("\n\nNo deltas: the matched runs and the published rows share no benchmark column "
                 "(micro-world runs score the micro tasks, not the paper's benchmarks).")
    elif fmt == "md" and shown:
        text += "\n\nΔ rows: ours minus published, in points."
    if fmt == "md" and "n/a" in text:
        text += ("\n\nn/a: not defined for the task (maj@k needs a final answer to vote on; a code task's output is "
                 "a program), and so not for an average over it.")
    return text
