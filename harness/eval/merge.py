"""`rlvr merge`: combine the shards of one evaluation (`rlvr eval --shard i/N`) into one run."""

from __future__ import annotations

from pathlib import Path

from rlvr.harness.errors import UserError
from rlvr.harness.report.metrics import count_samples, sample_shortfall, update_metrics
from rlvr.harness.runs.store import (
    HOLDER_FILE,
    LOCK_FILE,
    VOLATILE_KEYS,
    Run,
    locked,
    make_dir,
    sample_key,
)

# Settings that legitimately differ between the shards of one evaluation, and cosmetic ones (the
# label names a row in tables; it changes no sample).
PER_SHARD = ("shard",)
COSMETIC = ("label",)
PER_SHARD_TASK_FIELDS = ("problems", "prompt_sha256")
_MISSING = object()


def _comparable(info: dict) -> dict:
    out = {k: v for k, v in info.items() if k not in VOLATILE_KEYS and k not in PER_SHARD and k not in COSMETIC}
    out["tasks"] = {t: {k: v for k, v in entry.items() if k not in PER_SHARD_TASK_FIELDS}
                    for t, entry in (info.get("tasks") or {}).items()}
    return out


def differences(a, b, prefix: str = "") -> list[tuple[str, object, object]]:
    """Every setting where `a` and `b` differ: (dotted name, value in a, value in b), a missing key
    standing as `_MISSING`. Mappings are compared key by key; anything else as a whole."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            va, vb = a.get(k, _MISSING), b.get(k, _MISSING)
            if va is _MISSING or vb is _MISSING:
                out.append((f"{prefix}{k}", va, vb))
            else:
                out += differences(va, vb, f"{prefix}{k}.")
        return out
    return [] if a == b else [(prefix.rstrip(".") or "(root)", a, b)]


def _show(value, width: int = 60) -> str:
    text = "(absent)" if value is _MISSING else repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def merge_runs(paths: list[str], out: str, allow_partial: bool = False) -> Run:
    if not paths or (len(paths) < 2 and not allow_partial):
        raise UserError("merge needs at least two run directories (or --allow-partial for one shard)")
    runs = [Run.open(p) for p in paths]
    ref = _comparable(runs[0].info)
    for r in runs[1:]:
        diffs = differences(ref, _comparable(r.info))
        if diffs:
            raise UserError(f"{r.path} and {runs[0].path} differ in "
                            + "; ".join(f"setting '{name}' ({_show(b)} vs {_show(a)})" for name, a, b in diffs)
                            + "; only shards of one evaluation can be merged")
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
    if Path(out).exists() and any(p.name not in (LOCK_FILE, HOLDER_FILE) for p in Path(out).iterdir()):
        raise UserError(f"--out: {out} is not empty")
    _check_shards(runs)

    settings = {k: v for k, v in runs[0].info.items() if k not in VOLATILE_KEYS}
    labels = {r.info.get("label") for r in runs}
    if len(labels) > 1:   # shards labelled apart: the merged run takes the label its settings give
        settings.pop("label", None)
    settings["shard"] = [0, 1]
    settings["merged_from"] = [{"path": str(r.path.resolve()), "shard": list(s),
                                "provenance": r.info.get("provenance")} for r, s in zip(runs, shards, strict=True)]
    for t, entry in settings.get("tasks", {}).items():
        entry["problems"] = sum((r.info["tasks"][t].get("problems") or 0) for r in runs)
        entry["prompt_sha256"] = None  # per-shard hashes are kept in merged_from's run files
    make_dir(out)
    with locked(out):    # a second merge into the same --out stops here, naming this one
        merged = Run.create(out, settings, resume=False)
        for r in runs:
            merged.append_samples(r.iter_samples())
        update_metrics(merged)
        merged.finish()
    return merged


def _check_shards(runs: list[Run]) -> None:
    """Before anything is written: every shard finished (each of its problems has its n samples; a
    merged run.json that claims more than its samples hold would be scored as if complete) and no
    sample in two shards."""
    seen_keys: set = set()

    def unique(run: Run):
        for rec in run.iter_samples():
            key = sample_key(rec)
            if key in seen_keys:
                raise UserError(f"{run.path}: sample {key} also appears in another shard")
            seen_keys.add(key)
            yield rec

    for r in runs:
        counts, _, errors = count_samples(unique(r))
        gap = sample_shortfall(r, counts, errors)
        if gap is not None and gap[0] < gap[1]:
            done, expected, short = gap
            raise UserError(f"{r.path}: unfinished shard, {expected - done} of {expected} samples missing "
                            f"({short} problems have fewer than n={r.info['n']} samples); rerun its `rlvr eval` "
                            f"command to finish it, then merge")
