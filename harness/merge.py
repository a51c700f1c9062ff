"""`rlvr merge`: combine the shards of one evaluation (`rlvr eval --shard i/N`) into one run."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError
from harness.metrics import update_metrics
from harness.runstore import VOLATILE_KEYS, Run, _first_difference

# Settings that legitimately differ between the shards of one evaluation.
PER_SHARD = ("shard",)
PER_SHARD_TASK_FIELDS = ("problems", "prompt_sha256")


def _comparable(info: dict) -> dict:
    out = {k: v for k, v in info.items() if k not in VOLATILE_KEYS and k not in PER_SHARD}
    out["tasks"] = {t: {k: v for k, v in entry.items() if k not in PER_SHARD_TASK_FIELDS}
                    for t, entry in (info.get("tasks") or {}).items()}
    return out


def merge_runs(paths: list[str], out: str, allow_partial: bool = False) -> Run:
    if len(paths) < 2:
        raise UserError("merge needs at least two run directories")
    runs = [Run.open(p) for p in paths]
    ref = _comparable(runs[0].info)
    for r in runs[1:]:
        diff = _first_difference(ref, _comparable(r.info))
        if diff is not None:
            raise UserError(f"{r.path}: setting '{diff}' differs from {runs[0].path}; "
                            f"only shards of one evaluation can be merged")
    shards = [tuple(r.info.get("shard") or (0, 1)) for r in runs]
    counts = {s[1] for s in shards}
    if len(counts) != 1:
        raise UserError(f"shards come from different splits: {sorted(f'{i}/{n}' for i, n in shards)}")
    n_shards = counts.pop()
    seen = sorted(s[0] for s in shards)
    if len(set(seen)) != len(seen):
        raise UserError(f"a shard is given twice: {[f'{i}/{n_shards}' for i in seen]}")
    missing = sorted(set(range(n_shards)) - set(seen))
    if missing and not allow_partial:
        raise UserError(f"shards {missing} of {n_shards} are missing (pass --allow-partial to merge anyway)")
    if Path(out).exists() and any(Path(out).iterdir()):
        raise UserError(f"--out: {out} is not empty")

    settings = {k: v for k, v in runs[0].info.items() if k not in VOLATILE_KEYS}
    settings["shard"] = [0, 1]
    settings["merged_from"] = [{"path": str(r.path.resolve()), "shard": list(s),
                                "provenance": r.info.get("provenance")} for r, s in zip(runs, shards, strict=True)]
    for t, entry in settings.get("tasks", {}).items():
        entry["problems"] = sum((r.info["tasks"][t].get("problems") or 0) for r in runs)
        entry["prompt_sha256"] = None  # per-shard hashes are kept in merged_from's run files
    merged = Run.create(out, settings, resume=False)
    seen_keys: set = set()
    for r in runs:
        batch = []
        for rec in r.iter_samples():
            key = (rec["task"], str(rec["problem_id"]), int(rec["sample_index"]))
            if key in seen_keys:
                raise UserError(f"{r.path}: sample {key} also appears in another shard")
            seen_keys.add(key)
            batch.append(rec)
        merged.append_samples(batch)
    update_metrics(merged)
    merged.finish()
    return merged
