"""The run directory: the unit of exchange between `rlvr` commands.

    RUN_DIR/run.json        settings and provenance (what is needed to reproduce and compare)
    RUN_DIR/samples.jsonl   append-only, one record per verified sample; crash-safe
    RUN_DIR/metrics.json    per task: per-problem (n, c) and the pass@k curve; written atomically

`eval` writes a run; `table`, `plot`, `compare` and `merge` read runs. An interrupted run loses no
finished sample: records are flushed and fsync'd per batch, a reader skips a truncated last line,
and re-opening a run for writing cuts such a line off before appending.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rlvr.harness import provenance
from rlvr.harness.errors import UserError

RUN_FILE = "run.json"
SAMPLES_FILE = "samples.jsonl"
METRICS_FILE = "metrics.json"
RUN_FORMAT = "rlvr-run/1"
TRAIN_INFO = "rlvr_train.json"   # in each checkpoint of `rlvr train`: its arm, training seed, method, reward

# A sample record must carry these; the rest (outcome, seed, completion, extracted, score, tokens,
# finish_reason, verify_time, reason) is recorded when the producer has it. `outcome` is "correct",
# "incorrect" or "error" (the verifier could not judge; `correct` is then false and means nothing).
REQUIRED_SAMPLE_FIELDS = ("task", "problem_id", "sample_index", "correct")
OUTCOMES = ("correct", "incorrect", "error")

# run.json keys that describe this execution rather than the run's settings; a resume may differ here.
# Descriptive settings that older runs did not record (null there): a resume may fill them in, since they change
# no sample (the model's hash already names the weights).
FILLABLE_KEYS = ("step", "method", "arm", "train_seed")


def drop_unrecorded(stored: dict, new: dict) -> tuple[dict, dict]:
    """`stored` and `new` without the FILLABLE_KEYS that `stored` has as null or lacks."""
    gone = {k for k in FILLABLE_KEYS if stored.get(k) is None}
    return ({k: v for k, v in stored.items() if k not in gone}, {k: v for k, v in new.items() if k not in gone})


VOLATILE_KEYS = frozenset({"format", "provenance", "start_time", "end_time", "resumes", "verifiers", "regrades",
                           "grown"})

# The exclusive lock of a directory that a command writes (a run, a training output), and the side file
# that names its holder for the error message a second writer gets.
LOCK_FILE = ".rlvr.lock"
HOLDER_FILE = ".rlvr.lock.holder.json"


def _holder(path: Path) -> str:
    """Who holds the lock of `path`, in words (from the side file its holder wrote)."""
    try:
        h = json.loads((path / HOLDER_FILE).read_text(encoding="utf-8"))
        command = str(h.get("command", ""))
        command = command if len(command) <= 160 else command[:157] + "..."
        return f"pid {h.get('pid')} on {h.get('host')} since {h.get('since')}: {command}"
    except (OSError, ValueError, AttributeError):
        return "holder unknown"


@contextlib.contextmanager
def locked(path: str | Path, what: str = "run directory") -> Iterator[None]:
    """Exclusive use of the existing directory `path` by this process while the block runs (a `filelock`
    lock on PATH/.rlvr.lock; the OS releases it when the process dies, so a killed run never leaves a
    stale lock). Re-entrant within one process: `rlvr eval` holds its run while `update_metrics` takes it
    again. A second process gets a one-line error naming the directory and the holder (pid, host, start
    time and command, read from PATH/.rlvr.lock.holder.json)."""
    import filelock

    path = Path(path)
    lock = filelock.FileLock(str(path / LOCK_FILE), timeout=0, is_singleton=True, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise UserError(f"{path}: {what} in use by another rlvr process ({_holder(path)}); wait for it to "
                        f"finish, or write somewhere else") from None
    except OSError as e:
        raise UserError(f"{path}: cannot lock the {what} ({e.strerror or e})") from None
    try:
        if lock.lock_counter == 1:
            argv = ["rlvr" if Path(sys.argv[0]).name in ("rlvr", "cli.py", "__main__.py") else sys.argv[0],
                    *sys.argv[1:]]
            write_json_atomic(path / HOLDER_FILE, {"pid": os.getpid(), "host": socket.gethostname(),
                                                   "since": provenance.utc_now(), "command": shlex.join(argv)})
        yield
    finally:
        if lock.lock_counter == 1:
            (path / HOLDER_FILE).unlink(missing_ok=True)
        lock.release()


def make_dir(path: str | Path, flag: str = "--out") -> Path:
    """Create the directory `path` (and its parents), as a one-line error naming `flag` when it cannot be."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag}: {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag}: cannot create {path} ({e.strerror})") from None
    return path


def check_can_create(path: str | Path, flag: str = "--out") -> None:
    """That `path` is a directory or can be created, without creating anything (a run directory is created
    only once the run can start: a failed command leaves no empty directory behind)."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{flag}: {path} exists and is not a directory")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag}: cannot create {path} ({os.strerror(20)})")   # ENOTDIR
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag}: cannot create {path} ({os.strerror(13)}: {parent})")   # EACCES


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file ({what})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read {what} ({getattr(e, 'strerror', None) or e})") from None


def _record_lines(records: Iterable[dict]) -> list[str]:
    lines = []
    for rec in records:
        missing = [f for f in REQUIRED_SAMPLE_FIELDS if f not in rec]
        if missing:
            raise ValueError(f"sample record lacks {missing}: {rec!r:.200}")
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    return lines


def sample_key(rec: dict) -> tuple[str, str, int]:
    return (rec["task"], str(rec["problem_id"]), int(rec["sample_index"]))


def first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    """The dotted name of the first setting where `a` and `b` differ (None when they are equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{prefix}{k}"
            d = first_difference(a[k], b[k], f"{prefix}{k}.")
            if d:
                return d
        return None
    return None if a == b else prefix.rstrip(".") or "(root)"


class Run:
    """A run directory. Create with `Run.create`, open an existing one with `Run.open`."""

    def __init__(self, path: str | Path, info: dict):
        self.path = Path(path)
        self.info = info

    # ---- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, settings: dict, resume: bool = True, may_change: tuple[str, ...] = ()) -> Run:
        """Start a run, or resume one whose settings are identical.

        settings: model, method, tasks, sampling, seed, ... (anything JSON-serialisable). On resume
        a setting that differs from the stored one is an error naming that setting, except the
        top-level keys in `may_change` (settings that change no sample, e.g. the label), which take
        their new values.
        """
        path = Path(path)
        run_file = path / RUN_FILE
        settings = json.loads(json.dumps(settings))  # normalise (tuples -> lists) for comparison
        if run_file.exists():
            if not resume:
                raise UserError(f"{path}: a run already exists here (choose another --out, or resume it)")
            info = read_json(run_file, "run settings")
            stored = {k: v for k, v in info.items() if k not in VOLATILE_KEYS and k not in may_change}
            diff = first_difference(*drop_unrecorded(stored, {k: v for k, v in settings.items()
                                                              if k not in VOLATILE_KEYS and k not in may_change}))
            if diff is not None:
                raise UserError(f"{path}: cannot resume, setting '{diff}' differs from the stored run "
                                f"(use a new --out for new settings)")
            info.update({k: v for k, v in settings.items() if k in may_change or k in VOLATILE_KEYS
                         or (k in FILLABLE_KEYS and info.get(k) is None)})
            info.setdefault("resumes", []).append(provenance.utc_now())
            info["end_time"] = None
            write_json_atomic(run_file, info)
            run = cls(path, info)
            run._repair_samples()
            return run
        path.mkdir(parents=True, exist_ok=True)
        info = {"format": RUN_FORMAT, **settings, "provenance": provenance.collect(),
                "start_time": provenance.utc_now(), "end_time": None}
        write_json_atomic(run_file, info)
        return cls(path, info)

    @classmethod
    def open(cls, path: str | Path) -> Run:
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path}: no such run directory")
        info = read_json(path / RUN_FILE, "not a run directory: run.json is missing")
        if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
            raise UserError(f"{path / RUN_FILE}: not a {RUN_FORMAT} run file (field 'format')")
        return cls(path, info)

    # ---- samples -------------------------------------------------------------------------------

    @property
    def samples_path(self) -> Path:
        return self.path / SAMPLES_FILE

    def _repair_samples(self) -> None:
        """Cut a partial last line left by a crash, so the next append starts on a fresh line."""
        p = self.samples_path
        if not p.exists() or p.stat().st_size == 0:
            return
        with open(p, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            data = f.read()
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())

    def append_samples(self, records: Iterable[dict]) -> int:
        """Append one batch; flushed and fsync'd before returning. Returns the number written."""
        lines = _record_lines(records)
        if not lines:
            return 0
        with open(self.samples_path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
        return len(lines)

    def iter_samples(self) -> Iterator[dict]:
        """Every complete record, one per (task, problem, sample index): the first judged record of each,
        or, for a sample that no record judges, its last error record (outcome "error": the verifier could
        not judge it). A re-verification appends a new record for the same sample, which supersedes the
        error before it; error records come last.

        Records are checked against run.json as they are read (see `_check_sample`): a hand-edited
        or foreign line is an error naming the line and the field, not a silently wrong pass@k."""
        unjudged: dict[tuple[str, str, int], dict] = {}
        seen: set[tuple[str, str, int]] = set()
        for rec in self._iter_lines():
            key = sample_key(rec)
            if key in seen:
                continue
            if rec.get("outcome") == "error":
                unjudged[key] = rec
                continue
            seen.add(key)
            unjudged.pop(key, None)
            yield rec
        yield from unjudged.values()

    def _iter_lines(self) -> Iterator[dict]:
        """Every complete, checked record in file order (duplicates included)."""
        p = self.samples_path
        if not p.exists():
            return
        problems: dict[str, set[str]] = {}
        with open(p, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.endswith("\n"):
                    break  # a record cut short by a crash: not finished, so not counted
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    raise UserError(f"{p}:{lineno}: corrupt sample record") from None
                problem = self._check_sample(rec, problems)
                if problem is not None:
                    raise UserError(f"{p}:{lineno}: {problem}")
                yield rec

    def _check_sample(self, rec: Any, problems: dict[str, set[str]]) -> str | None:
        """What is wrong with one record (None if nothing), given run.json's tasks, their `problems`
        counts and `n`; `problems` collects the problem ids seen so far per task."""
        if not isinstance(rec, dict):
            return "not a JSON object"
        missing = [k for k in REQUIRED_SAMPLE_FIELDS if k not in rec]
        if missing:
            return f"field '{missing[0]}' is missing"
        task, pid, index, correct = (rec[k] for k in REQUIRED_SAMPLE_FIELDS)
        tasks = self.info.get("tasks") or {}
        if not isinstance(task, str) or (tasks and task not in tasks):
            return f"field 'task': {task!r} is not a task of this run ({', '.join(tasks)})"
        if not isinstance(pid, (str, int)) or isinstance(pid, bool):
            return f"field 'problem_id': expected a string or an integer, got {pid!r}"
        n = self.info.get("n")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0 \
                or (isinstance(n, int) and index >= n):
            bound = f" below n={n}" if isinstance(n, int) else ""
            return f"field 'sample_index': expected an integer >= 0{bound}, got {index!r}"
        if not isinstance(correct, bool):
            return f"field 'correct': expected true or false, got {correct!r}"
        outcome = rec.get("outcome")
        if outcome is not None and (outcome not in OUTCOMES or (outcome == "correct") != correct):
            return f"field 'outcome': expected one of {', '.join(OUTCOMES)} agreeing with 'correct', got {outcome!r}"
        tokens = rec.get("tokens")
        if tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool)):
            return f"field 'tokens': expected an integer, got {tokens!r}"
        ids = problems.setdefault(task, set())
        ids.add(str(pid))
        expected = (tasks.get(task) or {}).get("problems")
        if isinstance(expected, int) and len(ids) > expected:
            return (f"field 'problem_id': {pid!r} would be problem {len(ids)} of task {task}, "
                    f"but run.json records {expected} problems")
        return None

    def done_keys(self) -> set[tuple[str, str, int]]:
        """The samples that are finished: sampled and judged (an error record is not finished)."""
        return {sample_key(r) for r in self.iter_samples() if r.get("outcome") != "error"}

    def error_samples(self) -> list[dict]:
        """The records of samples whose verifier could not judge them (and no later record did)."""
        return [r for r in self.iter_samples() if r.get("outcome") == "error"]

    def rewrite_samples(self, records: Iterable[dict]) -> int:
        """Replace samples.jsonl by `records`, atomically (readers see the old file or the new one).
        For `rlvr regrade`, which re-verifies every stored sample."""
        lines = _record_lines(records)
        write_text_atomic(self.samples_path, "".join(lines))
        return len(lines)

    # ---- metrics and completion ----------------------------------------------------------------

    def write_metrics(self, metrics: dict) -> None:
        write_json_atomic(self.path / METRICS_FILE, metrics)

    def read_metrics(self) -> dict | None:
        p = self.path / METRICS_FILE
        return read_json(p, "metrics") if p.exists() else None

    def finish(self) -> None:
        self.info["end_time"] = provenance.utc_now()
        write_json_atomic(self.path / RUN_FILE, self.info)

    # ---- description ---------------------------------------------------------------------------

    def task_domain(self, task: str) -> str:
        entry = (self.info.get("tasks") or {}).get(task) or {}
        return entry.get("domain", "other")

    @property
    def label(self) -> str:
        """A short row label: the explicit `label` (`rlvr eval --label`), else [method ·] model [· step].

        A run without a label is not called "base": nothing in it says the model is untrained (a
        checkpoint evaluated with `rlvr eval` records no method either); label it "base" to say so."""
        if self.info.get("label"):
            return str(self.info["label"])
        method = (self.info.get("method") or {}).get("name")
        step = self.info.get("step")
        model = model_display_name(self.info.get("model") or {})
        if step is not None and re.search(rf"(?<!\d){step}$", model):
            step = None      # a checkpoint's directory names its step already: `nsr · grpo/step_8`
        return " · ".join(([method] if method else []) + [model] + ([f"step {step}"] if step is not None else []))


# Directory names that say where a checkpoint sits rather than which model it is (our trainer's
# checkpoints/step_N and last, Hugging Face's checkpoint-N, verl's global_step_N/actor/huggingface).
_PLACE_DIR = re.compile(r"last|latest|final|best|checkpoints?|ckpts?|hf|huggingface|actor|model|"
                        r"(global_)?step[_-]?\d+|checkpoint[_-]?\d+", re.IGNORECASE)


def model_display_name(model: dict) -> str:
    """The model's last meaningful path component, followed by the checkpoint directory when the path
    ends in place names: `.../train/grpo/checkpoints/step_8` -> `grpo/step_8`, `Qwen/Qwen2.5-7B` ->
    `Qwen2.5-7B`. The resolved `path` goes first: for a `last` link it names the step evaluated."""
    parts = [p for p in Path(str(model.get("path") or model.get("name") or "model")).parts if p.strip("/\\")]
    owner = next((i for i in range(len(parts) - 1, -1, -1) if not _PLACE_DIR.fullmatch(parts[i])), None)
    if owner is None or owner == len(parts) - 1:
        return parts[-1] if parts else "model"
    tail = parts[owner + 1:]
    where = next((p for p in reversed(tail) if any(ch.isdigit() for ch in p)), tail[-1])
    return f"{parts[owner]}/{where}"
