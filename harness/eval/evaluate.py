"""`rlvr eval`: n samples per problem -> verifier pool -> run store -> pass@k.

Work is cut into units of (task, problem, chunk of sample indices). A unit is generated in one batch,
its completions go to the verifier pool at once (verification overlaps the sampling of the next
units), and its records are appended to samples.jsonl as soon as all its verdicts are in. Resuming
skips the finished samples; because each sample's seed depends only on (seed, task, problem, index)
and chunks are fixed ranges of indices, a resumed or sharded run ends with the same samples as an
uninterrupted one. Memory stays bounded for n = 1024: at most `max_pending_units` units wait on the
pool, and completions are written out as units finish.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rlvr.harness.errors import UserError
from rlvr.harness.provenance import sha256_text
from rlvr.harness.report.metrics import update_metrics
from rlvr.harness.runs.store import (
    RUN_FILE,
    TRAIN_INFO,
    VOLATILE_KEYS,
    Run,
    check_can_create,
    drop_unrecorded,
    first_difference,
    locked,
    make_dir,
    read_json,
    sample_key,
    write_json_atomic,
)
from rlvr.harness.sample.engine import Engine, SamplingParams, sample_seed
from rlvr.harness.verify.task_options import configured_task
from rlvr.tasks.base import Problem, Task

from rlvr import tasks as task_registry


@dataclass(frozen=True)
class EvalConfig:
    model: str
    tasks: list[str]
    out: str
    n: int = 16
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int = 0
    engine: str = "hf"
    templates: dict[str, str] = field(default_factory=dict)   # task -> template name
    task_options: dict[str, dict] = field(default_factory=dict)   # task -> {option: value}, see task_options.py
    data_dir: str | None = None
    shard: tuple[int, int] = (0, 1)                            # (index, count)
    limit: int | None = None                                   # first L problems of each task
    chunk: int = 64                                            # samples of one problem per batch
    workers: int | None = None
    deadline_s: float = 10.0
    device: str = "auto"
    dtype: str = "auto"
    revision: str | None = None
    keep_completions: bool = True
    label: str | None = None                                   # display only: a resume may change it
    step: int | None = None
    method: dict | None = None                                 # set when a trainer evaluates a checkpoint
    arm: str | None = None             # the arm across training seeds (default: the checkpoint's, else the label)
    train_seed: int | None = None      # the training seed (default: the checkpoint's; None for an untrained model)

    def __post_init__(self):
        if self.n < 1:
            raise UserError(f"--n must be >= 1, got {self.n}")
        if self.chunk < 1:
            raise UserError(f"--chunk must be >= 1, got {self.chunk}")
        i, count = self.shard
        if count < 1 or not (0 <= i < count):
            raise UserError(f"--shard must be i/N with 0 <= i < N, got {i}/{count}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be >= 1, got {self.limit}")
        if self.workers is not None and self.workers < 1:
            raise UserError(f"--workers must be >= 1, got {self.workers}")
        if not self.deadline_s > 0:
            raise UserError(f"--deadline must be > 0, got {self.deadline_s}")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard: expected i/N (e.g. 0/4), got {text!r}") from None
    return i, n


def parse_templates(text: str | None, task_names: list[str]) -> dict[str, str]:
    """`NAME` (every task that offers it) or `task=NAME,task2=NAME2`."""
    if not text:
        return {}
    out: dict[str, str] = {}
    bare: list[str] = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        if "=" in item:
            t, name = (x.strip() for x in item.split("=", 1))
            if t not in task_names:
                raise UserError(f"--template: task {t!r} is not among --tasks")
            if name not in task_registry.get(t).templates:
                raise UserError(f"--template: task {t} has no template {name!r} "
                                f"(it has {', '.join(task_registry.get(t).templates)})")
            out[t] = name
        else:
            hits = [t for t in task_names if item in task_registry.get(t).templates]
            if not hits:
                raise UserError(f"--template: no task among --tasks offers a template named {item!r}")
            out.update({t: item for t in hits})
            bare.append(item)
    kept = [t for t in task_names if t not in out]
    if bare and kept:   # a task that keeps its own prompt (BBH's 3-shot) should not pass unnoticed
        def own(t: str) -> str:
            names = task_registry.get(t).templates
            return f"{t} (keeps {names[0]}; it offers {', '.join(names)})" if names else f"{t} (has one prompt)"
        print(f"rlvr: warning: --template {','.join(bare)} does not apply to {', '.join(own(t) for t in kept)}",
              file=sys.stderr)
    return out


def select_problems(problems: list[Problem], shard: tuple[int, int], limit: int | None) -> list[Problem]:
    """The first `limit` problems in file order, then every N-th one for shard i of N."""
    chosen = problems[:limit] if limit else problems
    i, n = shard
    return [p for j, p in enumerate(chosen) if j % n == i]


@dataclass
class _Unit:
    task: Task
    problem: Problem
    params: SamplingParams     # the run's sampling settings plus the task's own stop strings
    start: int                 # first sample index of the chunk
    indices: list[int]         # the chunk's indices still to do
    seeds: list[int]           # seeds of the whole chunk (index start + j -> seeds[j])
    completions: list = field(default_factory=list)
    futures: list = field(default_factory=list)


Loaded = dict[str, tuple[Task, list[Problem], str | None]]   # task -> (configured task, problems, template)


def load_tasks(names: list[str], task_options: dict[str, dict], templates: dict[str, str], data_dir: str | None,
               shard: tuple[int, int], limit: int | None) -> tuple[Loaded, dict]:
    """The tasks of a run with their problems as `rlvr eval` selects them, and run.json's `tasks` entry."""
    loaded: Loaded = {}
    task_info = {}
    for name in names:
        task = configured_task(name, task_options.get(name))
        problems, source = task.load_with_source(data_dir)
        template = templates.get(name) or (task.templates[0] if task.templates else None)
        # verifiers whose extraction depends on the prompt's shape read the template from the problem
        problems = [replace(p, meta={**p.meta, "template": template})
                    for p in select_problems(problems, shard, limit)]
        loaded[name] = (task, problems, template)
        task_info[name] = {"domain": task.domain, "source": source, "template": template, "problems": len(problems)}
        stops = task.stop_strings(template)
        if stops:   # recorded only when the task has some (older runs keep their settings)
            task_info[name]["stop"] = list(stops)
        if task_options.get(name):   # recorded only when set, so runs without options keep their settings
            task_info[name]["options"] = task_options[name]
    return loaded, task_info


def check_out_dir(out: str) -> None:
    """The run directory exists or can be created, checked before anything slow. It is created only once
    the run can start (model loaded, data read), so a failed `rlvr eval` leaves no empty directory."""
    check_can_create(out)


# run.json settings that only the loaded model decides (its decode path, prompts rendered by its chat
# template): `Run.create` compares them once the model is loaded
_MODEL_DECIDED = ("decode", "prompt_sha256")


def check_resumable(out: str, settings: dict) -> dict | None:
    """The stored settings of the run in `out` (None when there is none yet), after checking that
    `settings` can resume it, so that a refused resume does not wait for the model to load. Settings
    the loaded model decides are left to `Run.create`; the label may differ."""
    run_file = Path(out) / RUN_FILE
    if not run_file.exists():
        return None
    stored = read_json(run_file, "run settings")
    if not isinstance(stored, dict):
        raise UserError(f"{run_file}: not a run file (expected a JSON object)")

    def comparable(s: dict) -> dict:
        kept = {k: v for k, v in s.items() if k not in VOLATILE_KEYS and k not in (*_GROUPING, *_MODEL_DECIDED)}
        if isinstance(kept.get("tasks"), dict):
            kept["tasks"] = {t: {k: v for k, v in i.items() if k not in _MODEL_DECIDED} if isinstance(i, dict)
                             else i for t, i in kept["tasks"].items()}
        return kept

    old, new = drop_unrecorded(comparable(stored), comparable(json.loads(json.dumps(settings))))
    old_n, new_n = old.pop("n", None), new.pop("n", None)
    diff = first_difference(old, new)
    if diff is not None:
        raise UserError(f"{out}: cannot resume, setting '{diff}' differs from the stored run "
                        f"(use a new --out for new settings)")
    if old_n != new_n:
        if not (isinstance(old_n, int) and isinstance(new_n, int)):
            raise UserError(f"{out}: cannot resume, setting 'n' differs from the stored run "
                            f"(use a new --out for new settings)")
        if new_n < old_n:
            raise UserError(f"{out}: cannot resume with n={new_n}: the run holds n={old_n} samples per problem "
                            f"and n can only grow (its pass@k for k <= {new_n} is there already; use a new --out "
                            f"for a smaller run)")
    return stored


def grow_samples(run_dir: str | Path, old_n: int, new_n: int, chunk: int) -> range:
    """Prepare the run in `run_dir` (n = old_n) to grow to new_n samples per problem, so that it ends equal to a
    fresh run with new_n: samples old_n..new_n-1 get the seeds of a fresh run (a seed depends only on the run
    seed, task, problem and index), and every batch (chunk of indices) is the one a fresh run draws. The last
    chunk of the old run, when partial, becomes a larger batch in the grown run, so its old samples (a row's
    numbers may depend on the batch it was drawn in) are removed here and drawn again in their new batch.
    Returns the sample indices removed."""
    redo = range(old_n - old_n % chunk, old_n)
    if redo:
        run = Run.open(run_dir)
        run.rewrite_samples([r for r in run._iter_lines() if int(r["sample_index"]) not in redo])
    return redo


# run.json keys that group runs and change no sample (a resume may change them, like the label)
_GROUPING = ("label", "arm", "train_seed")


def training_info(model: str) -> dict:
    """What a checkpoint of our trainer records about its training (rlvr_train.json: arm, train_seed,
    method, reward; for a checkpoint written before that file existed, its training run's train.json in
    OUT/checkpoints/../), {} for any other model."""
    path = Path(model)
    try:
        if (path / TRAIN_INFO).is_file():
            info = json.loads((path / TRAIN_INFO).read_text())
            return info if isinstance(info, dict) else {}
        run = path.resolve().parent
        if run.name == "checkpoints" and (run.parent / "train.json").is_file():
            info = json.loads((run.parent / "train.json").read_text())
            cfg = info.get("config") or {}
            method = (info.get("method") or {}).get("name")
            return {"arm": info.get("arm") or cfg.get("arm") or cfg.get("label") or method,
                    "train_seed": cfg.get("seed"), "method": method}
    except (OSError, json.JSONDecodeError, AttributeError):
        pass
    return {}


def run_grouping(cfg: EvalConfig) -> dict:
    """run.json's `arm` (the arm across training seeds) and `train_seed`: the config's, else the evaluated
    checkpoint's training record, else the label and None (an untrained model has no training seed)."""
    info = training_info(cfg.model)
    seed = cfg.train_seed if cfg.train_seed is not None else info.get("train_seed")
    return {"arm": cfg.arm or info.get("arm") or cfg.label, "train_seed": seed}


def make_engine(cfg: EvalConfig) -> tuple[Engine, object | None]:
    """(engine, tokenizer) for the config; the tokenizer renders chat templates."""
    if cfg.engine == "hf":
        from rlvr.harness.sample.engine import HFEngine
        from rlvr.harness.sample.models import load_model

        model, tok = load_model(cfg.model, cfg.device, cfg.dtype, cfg.revision)
        return HFEngine(model, tok), tok
    if cfg.engine == "vllm":
        from rlvr.harness.sample.engine import VLLMEngine
        from transformers import AutoTokenizer

        engine = VLLMEngine(cfg.model, dtype=cfg.dtype, seed=cfg.seed, revision=cfg.revision)
        return engine, AutoTokenizer.from_pretrained(cfg.model, revision=cfg.revision)
    raise UserError(f"--engine: expected hf or vllm, got {cfg.engine!r}")


def evaluate(cfg: EvalConfig, engine: Engine | None = None, tokenizer=None, progress: bool = True,
             print_table: bool = True, pool=None) -> Run:
    """Run (or resume) an evaluation; returns the finished run. `engine`/`tokenizer` may be passed in
    (the trainer evaluates its in-memory policy this way), and so may a running `VerifierPool` (a
    driver that evaluates many models reuses one pool and its verdict cache).

    The run directory is locked for the whole evaluation (`rlvr.harness.runs.store.locked`): a second process
    writing it stops with an error naming the holder. A resume may grow n (`grow_samples`), never shrink it.
    The model of a checkpoint that `rlvr train` wrote records its step and method (`checkpoint_origin`)."""

    with contextlib.ExitStack() as stack:
        return _evaluate(cfg, engine, tokenizer, progress, print_table, pool, stack)


def checkpoint_origin(model: str) -> tuple[int | None, dict | None]:
    """(step, method) of a checkpoint that `rlvr train` wrote (its trainer_state.json, and the method recorded
    there or, for older checkpoints, in the training output's train.json); (None, None) for any other model."""
    local = Path(model).expanduser()
    try:
        state = json.loads((local / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    step = state.get("step") if isinstance(state, dict) else None
    if not isinstance(step, int) or isinstance(step, bool):
        return None, None          # not ours (Hugging Face's Trainer writes global_step)
    method = state.get("method")
    if not isinstance(method, dict):
        try:
            method = json.loads((local.resolve().parent.parent / "train.json").read_text(encoding="utf-8"))["method"]
        except (OSError, ValueError, KeyError, TypeError):
            method = None
    return step, method if isinstance(method, dict) and "name" in method else None


def _evaluate(cfg: EvalConfig, engine, tokenizer, progress: bool, print_table: bool, pool,
              stack: contextlib.ExitStack) -> Run:
    from rlvr.harness.sample.models import model_fingerprint, resolve_model
    from rlvr.harness.verify.pool import preflight, verifier_versions

    if engine is None:
        resolve_model(cfg.model)   # a wrong --model fails now, not after the data is loaded
    preflight(task_registry.expand(cfg.tasks))   # a verifier that cannot run here stops the run before anything
    check_out_dir(cfg.out)
    loaded, task_info = load_tasks(task_registry.expand(cfg.tasks), cfg.task_options, cfg.templates,
                                   cfg.data_dir, cfg.shard, cfg.limit)

    step, method = cfg.step, cfg.method
    if engine is None and step is None and method is None:
        step, method = checkpoint_origin(cfg.model)
    settings = {
        "label": cfg.label, **run_grouping(cfg), "step": step,
        "model": {**model_fingerprint(cfg.model, cfg.revision), "dtype": cfg.dtype},
        "method": method, "tasks": task_info, "n": cfg.n,
        "sampling": {**asdict(cfg.sampling), "stop": list(cfg.sampling.stop)},
        "seed": cfg.seed, "engine": engine.name if engine is not None else cfg.engine, "decode": None,
        "chunk": cfg.chunk,
        "shard": list(cfg.shard), "limit": cfg.limit,
        "verifiers": verifier_versions(loaded),   # this execution's; a resume records its own
    }
    if Path(cfg.out).is_dir():
        stack.enter_context(locked(cfg.out))      # a resume: ours before anything is read from it
    stored = check_resumable(cfg.out, settings)   # before the model is loaded
    if engine is None:
        engine, tokenizer = make_engine(cfg)

    prompts: dict[tuple[str, str], str] = {}
    for name, (task, problems, template) in loaded.items():
        rendered = [task.prompt(p, template, tokenizer) for p in problems]   # chat templates need the tokenizer
        prompts.update({(name, p.id): r for p, r in zip(problems, rendered, strict=True)})
        task_info[name]["prompt_sha256"] = sha256_text("\x1e".join(rendered))
    settings["engine"], settings["decode"] = engine.name, getattr(engine, "decode_path", None)
    _note_context_overrun(engine, tokenizer, loaded, prompts, cfg.sampling.max_new_tokens)
    make_dir(cfg.out)                             # the run can start: now its directory exists
    stack.enter_context(locked(cfg.out))
    stored = check_resumable(cfg.out, settings)   # again: another process may have written it meanwhile
    grown = None
    if stored is not None and stored.get("n") != cfg.n:
        redo = grow_samples(cfg.out, stored["n"], cfg.n, cfg.chunk)
        grown = {"from": stored["n"], "to": cfg.n, "redrawn": [redo.start, redo.stop] if redo else None}
        print(f"rlvr: note: {cfg.out}: growing n from {stored['n']} to {cfg.n}"
              + (f"; samples {redo.start}-{redo.stop - 1} of each problem are drawn again, in the batch of "
                 f"--chunk {cfg.chunk} a fresh n={cfg.n} run draws them in" if redo else ""), file=sys.stderr)
    if stored is not None:   # the label names the run and changes no sample: a resume may set a new one
        if cfg.label is None:
            settings["label"] = stored.get("label")
        elif cfg.label != stored.get("label"):
            print(f"rlvr: note: {cfg.out}: label {stored.get('label')!r} -> {cfg.label!r}", file=sys.stderr)
        for key in ("arm", "train_seed"):       # a resume that does not say keeps what the run recorded
            if settings[key] is None:
                settings[key] = stored.get(key)
    run = Run.create(cfg.out, settings, may_change=(*_GROUPING, "verifiers", *(("n",) if grown else ())))
    if grown:
        run.info.setdefault("grown", []).append({"time": run.info["resumes"][-1], **grown})
        write_json_atomic(run.path / RUN_FILE, run.info)
    done = run.done_keys()
    # samples whose verifier could not judge them are verified again from their stored text (no sampling);
    # one without its text is sampled again (its seed gives the same completion)
    errored = [r for r in run.error_samples() if isinstance(r.get("completion"), str)]
    done |= {sample_key(r) for r in errored}

    units: list[_Unit] = []
    for name, (task, problems, template) in loaded.items():
        params = cfg.sampling.with_stop(task.stop_strings(template))
        for p in problems:
            for start in range(0, cfg.n, cfg.chunk):
                idx = [i for i in range(start, min(cfg.n, start + cfg.chunk)) if (name, p.id, i) not in done]
                if idx:
                    # the whole chunk is generated (fixed batch => same samples); only missing ones are kept
                    full = list(range(start, min(cfg.n, start + cfg.chunk)))
                    units.append(_Unit(task, p, params, start, idx,
                                       [sample_seed(cfg.seed, name, p.id, i) for i in full]))
    total = sum(len(u.indices) for u in units)
    if total == 0 and not errored:
        print(f"rlvr: {cfg.out}: all {cfg.n} samples of every problem are already done", file=sys.stderr)
    if total or errored:
        from rlvr.harness.verify.pool import VerifierPool

        modules = sorted({type(task).__module__ for task, _, _ in loaded.values()})
        with (VerifierPool(workers=cfg.workers, deadline_s=cfg.deadline_s, preload=modules) if pool is None
              else contextlib.nullcontext(pool)) as pool:
            if errored:
                print(f"rlvr: {cfg.out}: verifying {len(errored)} samples again (their verifier could not judge "
                      f"them before)", file=sys.stderr)
                run.append_samples(reverify(errored, loaded, pool, progress))
            _sample_and_verify(cfg, run, units, engine, prompts, total, progress, pool)
    update_metrics(run)
    run.finish()
    if print_table:
        from rlvr.harness.report.tables import table

        print(table([str(run.path)], ks=sorted({1, cfg.n})))
    return run


def _note_context_overrun(engine, tokenizer, loaded, prompts, max_new_tokens: int) -> None:
    """A note per task whose longest prompt plus --max-new-tokens passes the model's positions
    (max_position_embeddings): the hf engine decodes on past them, out of the context the model was trained on."""
    limit = getattr(getattr(getattr(engine, "model", None), "config", None), "max_position_embeddings", None)
    if not isinstance(limit, int) or tokenizer is None:
        return
    from rlvr.harness.sample.engine import encode_prompt

    for name, (_, problems, _) in loaded.items():
        longest = max((len(encode_prompt(tokenizer, prompts[(name, p.id)])) for p in problems), default=0)
        if longest + max_new_tokens > limit:
            print(f"rlvr: note: {name}: prompts of up to {longest} tokens plus --max-new-tokens {max_new_tokens} "
                  f"pass the model's {limit} positions (max_position_embeddings); tokens past them are sampled out "
                  f"of the context the model was trained on", file=sys.stderr)


def with_verdict(rec: dict, res) -> dict:
    """`rec` with the verdict fields of a `VerifyResult` (outcome, correct, score, extracted, reason,
    verify_time) set or replaced."""
    v = res.verdict
    return {**rec, "outcome": v.outcome, "correct": bool(v.correct), "score": float(v.score),
            "extracted": v.extracted, "reason": v.reason, "verify_time": round(res.verify_time, 6)}


def reverify(records: list[dict], loaded: dict, pool, progress: bool = True,
             desc: str = "re-verifying") -> list[dict]:
    """Verify stored completions again (no sampling): the records with their new verdicts, in order.
    `loaded` maps task name -> (configured task, problems, template) as `evaluate` loads them; a record
    whose problem is not among them, or that kept no completion, is returned unchanged."""
    from rlvr.harness.progress import bar as tqdm

    problems = {(name, p.id): (task, p) for name, (task, ps, _) in loaded.items() for p in ps}
    todo = [(i, rec) for i, rec in enumerate(records)
            if (rec["task"], str(rec["problem_id"])) in problems and isinstance(rec.get("completion"), str)]
    futures = [pool.submit(*problems[(rec["task"], str(rec["problem_id"]))], rec["completion"]) for _, rec in todo]
    out = list(records)
    for (i, rec), fut in tqdm(list(zip(todo, futures, strict=True)), desc=desc, unit="sample",
                              disable=not progress or not todo, dynamic_ncols=True):
        out[i] = with_verdict(rec, fut.result())
    return out


def _sample_and_verify(cfg, run, units, engine, prompts, total, progress, pool) -> None:
    from rlvr.harness.progress import bar as tqdm

    bar = tqdm(total=total, unit="sample", disable=not progress or total == 0, dynamic_ncols=True,
               desc="sampling")
    verified = 0
    t0 = time.monotonic()
    pending: deque[_Unit] = deque()
    max_pending = 8

    def flush(max_left: int) -> None:
        """Write finished units in order; wait for the oldest while more than max_left are pending."""
        nonlocal verified
        while pending and (len(pending) > max_left or all(f.done() for f in pending[0].futures)):
            u = pending.popleft()
            records = []
            for i, comp, fut in zip(u.indices, u.completions, u.futures, strict=True):
                res = fut.result()
                rec = {"task": u.task.name, "problem_id": u.problem.id, "sample_index": i,
                       "seed": u.seeds[i - u.start], "tokens": comp.tokens, "finish_reason": comp.finish_reason}
                rec = with_verdict(rec, res)
                if cfg.keep_completions or res.verdict.error:   # an error is verified again from its text
                    rec["completion"] = comp.text
                records.append(rec)
            run.append_samples(records)
            verified += len(records)
            elapsed = max(time.monotonic() - t0, 1e-9)
            bar.set_postfix(verified=verified, verified_per_s=f"{verified / elapsed:.1f}")

    for u in units:
        prompt = prompts[(u.task.name, u.problem.id)]
        comps = engine.generate([(prompt, u.seeds)], u.params)[0]
        u.completions = [comps[i - u.start] for i in u.indices]
        u.futures = [pool.submit(u.task, u.problem, c.text) for c in u.completions]   # configured copy
        pending.append(u)
        bar.update(len(u.indices))
        flush(max_left=max_pending)
    flush(max_left=0)
    bar.close()
