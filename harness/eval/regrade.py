"""`rlvr regrade RUN`: verify a run's stored completions again with the current verifiers, without sampling.

After a sandbox fix or a verifier upgrade, the samples a run already holds are judged again: the same
problems (loaded as the run loaded them: task options, template, shard, limit), the same completions, the
verifier pool of `rlvr eval`. samples.jsonl is replaced atomically by the re-judged records, metrics.json is
recomputed, and run.json records the regrade under `regrades` (time, harness version, verifier versions,
and per task how many verdicts flipped, from which outcome to which). Samples stored without their text
(`keep_completions=False`) cannot be judged again and keep their verdicts; the report counts them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rlvr.harness import provenance
from rlvr.harness.errors import UserError
from rlvr.harness.eval.evaluate import load_tasks, reverify
from rlvr.harness.report.metrics import sample_outcome, update_metrics
from rlvr.harness.runs.store import RUN_FILE, Run, locked, write_json_atomic


@dataclass(frozen=True)
class TaskRegrade:
    task: str
    samples: int                 # records of this task in the run
    regraded: int                # of them judged again (those with a stored completion)
    flips: dict[str, int]        # "correct->incorrect" etc. -> count (only outcomes that changed)
    errors: int                  # samples the verifier still could not judge

    @property
    def flipped(self) -> int:
        return sum(self.flips.values())


def regrade(run_dir: str, tasks: list[str] | None = None, data_dir: str | None = None, workers: int | None = None,
            deadline_s: float = 10.0, progress: bool = True, pool=None) -> list[TaskRegrade]:
    """Judge the stored completions of `run_dir` again (every task, or `tasks`); see the module doc."""
    with locked(Run.open(run_dir).path):   # no `rlvr eval` appends while the samples are judged again
        return _regrade(Run.open(run_dir), run_dir, tasks, data_dir, workers, deadline_s, progress, pool)


def _regrade(run: Run, run_dir: str, tasks, data_dir, workers, deadline_s, progress, pool) -> list[TaskRegrade]:
    from rlvr.harness.verify.pool import VerifierPool, preflight, verifier_versions

    info = run.info
    stored_tasks = info.get("tasks") or {}
    names = list(stored_tasks) if tasks is None else list(tasks)
    unknown = [t for t in names if t not in stored_tasks]
    if unknown:
        raise UserError(f"--tasks: {unknown[0]} is not a task of {run_dir} (it has {', '.join(stored_tasks)})")
    if not names:
        raise UserError(f"{run_dir}: run.json records no task")
    options = {t: (stored_tasks[t] or {}).get("options") or {} for t in names}
    templates = {t: (stored_tasks[t] or {}).get("template") for t in names if (stored_tasks[t] or {}).get("template")}
    shard, limit = tuple(info.get("shard") or (0, 1)), info.get("limit")
    loaded, task_info = load_tasks(names, options, templates, data_dir, shard, limit)
    for t in names:   # the golds must be the ones the run was judged against
        was, now = (stored_tasks[t] or {}).get("source"), task_info[t]["source"]
        if was and now and was != now:
            raise UserError(f"{run_dir}: task {t}: its data differs from the run's (run.json tasks.{t}.source "
                            f"{was} against {now}); point --data-dir at the data the run used")
    preflight(names)

    records = list(run.iter_samples())
    chosen = [r for r in records if r["task"] in loaded]
    known = {(t, p.id) for t, (_, ps, _) in loaded.items() for p in ps}
    stray = next((r for r in chosen if (r["task"], str(r["problem_id"])) not in known), None)
    if stray is not None:
        raise UserError(f"{run_dir}: task {stray['task']} problem {stray['problem_id']!r} is not among the "
                        f"problems the run's settings select now; cannot regrade it")
    modules = sorted({type(task).__module__ for task, _, _ in loaded.values()})
    own = pool is None
    if own:
        pool = VerifierPool(workers=workers, deadline_s=deadline_s, preload=modules)
    else:
        pool.clear_cache()   # a regrade judges again: no verdict may come from before it
    try:
        judged = reverify(chosen, loaded, pool, progress, desc="regrading")
    finally:
        if own:
            pool.close()

    new_by_id = {id(old): new for old, new in zip(chosen, judged, strict=True)}
    out = [new_by_id.get(id(r), r) for r in records]
    report = []
    for t in names:
        pairs = [(old, new) for old, new in zip(chosen, judged, strict=True) if old["task"] == t]
        flips = Counter(f"{sample_outcome(o)}->{sample_outcome(n)}" for o, n in pairs
                        if sample_outcome(o) != sample_outcome(n))
        report.append(TaskRegrade(t, len(pairs), sum(isinstance(o.get("completion"), str) for o, _ in pairs),
                                  dict(sorted(flips.items())), sum(sample_outcome(n) == "error" for _, n in pairs)))

    run.rewrite_samples(out)
    update_metrics(run)
    verifiers = verifier_versions(names)
    info.setdefault("regrades", []).append({
        "time": provenance.utc_now(), "harness": provenance.collect().get("harness"), "verifiers": verifiers,
        "tasks": {r.task: {"samples": r.samples, "regraded": r.regraded, "flipped": r.flipped, "flips": r.flips,
                           "errors": r.errors} for r in report}})
    info["verifiers"] = verifiers
    write_json_atomic(run.path / RUN_FILE, info)
    return report


def render(report: list[TaskRegrade]) -> str:
    lines = []
    for r in report:
        kept = r.samples - r.regraded
        detail = ", ".join(f"{k} {v}" for k, v in r.flips.items())
        lines.append(f"{r.task}: {r.regraded} of {r.samples} samples judged again, {r.flipped} verdicts changed"
                     + (f" ({detail})" if detail else "")
                     + (f"; {kept} kept their verdict (no completion stored)" if kept else "")
                     + (f"; {r.errors} could not be verified (errors)" if r.errors else ""))
    return "\n".join(lines)
