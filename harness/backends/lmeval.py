"""`rlvr export-lm-eval`: our benchmarks as lm-evaluation-harness (0.4.13) tasks.

The export writes, into one folder for `lm_eval --include_path DIR`:

    rlvr_lmeval.py          the helper the YAMLs point to (`!function`); it binds the export's settings
                            (pass@k list, verifier deadline and workers) to the runtime functions below
    rlvr_<task>.yaml        one task per benchmark: our loader, our prompt, `repeats: n`, a filter that
                            verifies every sample with our verifier, pass@k metrics from our estimator
    rlvr_<suite>.yaml       a group per suite (math6, logic2, code2, all10) whose tasks were all exported:
                            the unweighted mean over its benchmarks, as `rlvr table` averages them

What lm-eval does with it, and why each piece is there (facts from the installed lm-eval 0.4.13 source):
- Data: `custom_dataset` is called as `fn(**metadata, **dataset_kwargs)` (api/task.py `download`), where
  the metadata holds the model arguments (`pretrained=...`: the CLI and `simple_evaluate` merge them into
  the metadata of the TaskManager they build; one built by hand needs `metadata=model_args`).
  `load_docs` loads the problems with our loader, renders each prompt exactly as `rlvr eval` does (same
  template default, `meta["template"]` set, first L problems) and returns one `test` split of string
  columns. Templates that use the model's chat template load the tokenizer of
  the model under evaluation (`tokenizer=`, else `pretrained=` model argument) unless the export named
  one with `--model`.
- Prompt: `doc_to_text: prompt` names a column, which lm-eval returns verbatim (no Jinja), and with zero
  few-shot examples and no description the request context is that text unchanged. Do not pass
  `--apply_chat_template`: the prompt already carries the chat template when our template uses one.
- Samples: `repeats: n` makes lm-eval send each request n times (evaluator.py clones requests; it does
  not use a backend's `n`). Without a filter lm-eval keeps only the first response (`take_first`), so
  the export's filter (`custom`, `verify_samples`) takes all n responses of every document at once and
  verifies them in our `VerifierPool`: worker processes with a hard deadline, code in our sandbox, the
  same verdicts `rlvr eval` records.
- Metrics: `process_results` gets `[verdicts]` (one request per document) and returns the unbiased
  pass@k (`rlvr.harness.report.passk.pass_at_k`) for every exported k; `aggregation: mean` averages over problems,
  which is the pass@k `rlvr eval` reports. The columns read `pass@k,rlvr` in lm-eval's results; beside
  them `avg@n,rlvr` (mean accuracy of the n samples) and, for tasks with a final answer (not code),
  `maj@k,rlvr` (majority voting with the task's answer equivalence), as `rlvr eval`'s metrics.json has them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from rlvr.harness.errors import UserError
from rlvr.harness.eval.evaluate import select_problems
from rlvr.harness.report.metrics import sample_vote, tally_votes
from rlvr.harness.report.passk import default_ks, pass_at_k
from rlvr.harness.report.voting import maj_at_k
from rlvr.harness.sample.engine import SamplingParams
from rlvr.tasks.base import Problem

from rlvr import tasks as task_registry

log = logging.getLogger(__name__)

LMEVAL_VERSION = "0.4.13"        # the release the export is written for and tested against (extra `lmeval`)
TASK_PREFIX = "rlvr_"
FILTER_NAME = "rlvr"             # lm-eval result columns: "pass@k,rlvr"
HELPER_MODULE = "rlvr_lmeval"
EXPORT_VERSION = 1               # metadata.version of every exported task; bump when the format changes


@dataclass(frozen=True)
class ExportConfig:
    """What `rlvr export-lm-eval` writes.

    tasks:     benchmark names (suites already expanded).
    n:         samples per problem (`repeats`).
    ks:        the pass@k columns; default 1, 2, 4, ... up to n.
    templates: task -> template name (default: the task's first template, as in `rlvr eval`).
    sampling:  generation settings, mapped to lm-eval's `generation_kwargs`.
    limit:     only the first L problems of each task (lm-eval's own `--limit` works too).
    data_dir:  benchmark directory baked into the export (default at run time: $RLVR_DATA_DIR).
    model:     tokenizer source for chat-template prompts, baked in (default at run time: the model
               lm-eval evaluates, from its `tokenizer=` or `pretrained=` argument).
    task_options: task -> {option: value}, scoring options as `rlvr eval --task-option` (harness/verify/task_options.py).
    """

    out: str
    tasks: list[str]
    n: int = 16
    ks: list[int] | None = None
    templates: dict[str, str] = field(default_factory=dict)
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(0.6, 0.95, 0, 4096))
    limit: int | None = None
    data_dir: str | None = None
    model: str | None = None
    deadline_s: float = 10.0
    workers: int | None = None
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self):
        if self.n < 1:
            raise UserError(f"--n must be >= 1, got {self.n}")
        bad = [k for k in self.ks or [] if not 1 <= k <= self.n]
        if bad:
            raise UserError(f"--k: every k must be in 1..n={self.n}, got {bad[0]}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be >= 1, got {self.limit}")
        if self.deadline_s <= 0:
            raise UserError(f"--deadline must be > 0, got {self.deadline_s}")
        if self.workers is not None and self.workers < 1:
            raise UserError(f"--workers must be >= 1, got {self.workers}")

    @property
    def pass_ks(self) -> list[int]:
        return sorted(set(self.ks)) if self.ks else default_ks(self.n)


# ---- writing the export -----------------------------------------------------------------------------

class _FunctionRef(str):
    """A YAML scalar written with lm-eval's `!function` tag."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_FunctionRef, lambda d, v: d.represent_scalar("!function", str(v)))


def generation_kwargs(s: SamplingParams) -> dict[str, Any]:
    """lm-eval `generation_kwargs` for our sampling settings.

    `until` is always written: without it lm-eval stops at the few-shot delimiter "\\n\\n" (TaskConfig),
    which would cut a chain of thought at its first blank line. `top_k` is written only when set: HF
    disables it with 0 but older vLLM releases reject 0 ("top_k must be -1 (disable), or at least 1")
    and HF rejects -1, so an unset top-k leaves the backend's default (for the `hf` backend, the model's
    generation_config)."""
    kw: dict[str, Any] = {"until": list(s.stop), "max_gen_toks": s.max_new_tokens,
                          "do_sample": s.temperature > 0, "temperature": float(s.temperature)}
    if s.temperature > 0:
        kw["top_p"] = float(s.top_p)
        if s.top_k:
            kw["top_k"] = int(s.top_k)
    return kw


def task_config(cfg: ExportConfig, name: str) -> dict[str, Any]:
    """The lm-eval task YAML (as a dict) for one of our benchmarks."""
    task = task_registry.get(name)
    template = cfg.templates.get(name) or (task.templates[0] if task.templates else None)
    doc: dict[str, Any] = {
        "task": TASK_PREFIX + name,
        "custom_dataset": _FunctionRef(f"{HELPER_MODULE}.load_docs"),
        "dataset_kwargs": {"rlvr_task": name, "rlvr_template": template, "rlvr_limit": cfg.limit,
                           "rlvr_data_dir": cfg.data_dir, "rlvr_tokenizer": cfg.model},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "prompt",
        "doc_to_target": "target",
        "num_fewshot": 0,
        "repeats": cfg.n,
        "generation_kwargs": generation_kwargs(cfg.sampling.with_stop(task.stop_strings(template))),
        "filter_list": [{"name": FILTER_NAME, "filter": [
            {"function": "custom", "filter_fn": _FunctionRef(f"{HELPER_MODULE}.verify_samples")}]}],
        "process_results": _FunctionRef(f"{HELPER_MODULE}.process_results"),
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                        for m in result_columns(name, cfg.pass_ks)],
        "metadata": {"version": EXPORT_VERSION, "rlvr_harness_task": name, "template": template,
                     "n": cfg.n, "pass_ks": cfg.pass_ks, "lm_eval_version": LMEVAL_VERSION},
    }
    if cfg.task_options.get(name):
        doc["dataset_kwargs"]["rlvr_options"] = cfg.task_options[name]
        doc["metadata"]["task_options"] = cfg.task_options[name]
    if task.domain == "code":
        # the completions are executed (in our sandbox); lm-eval asks for --confirm_run_unsafe_code
        doc["unsafe_code"] = True
    return doc


def result_columns(name: str, ks: Sequence[int]) -> list[str]:
    """The result columns of one exported task: pass@k for every k, avg@n (the mean accuracy of the n
    samples), and maj@k for every k where the task has a final answer to vote on (not code tasks);
    definitions in docs/metrics.md."""
    cols = [f"pass@{k}" for k in ks] + ["avg@n"]
    if task_registry.get(name).final_answer:
        cols += [f"maj@{k}" for k in ks]
    return cols


def group_config(suite: str, members: Sequence[str], ks: Sequence[int]) -> dict[str, Any]:
    """A group over exported tasks: the unweighted mean over benchmarks, like `rlvr table`'s averages."""
    shared = [m for m in result_columns(members[0], ks) if all(m in result_columns(t, ks) for t in members)]
    return {"group": TASK_PREFIX + suite, "task": [TASK_PREFIX + m for m in members],
            "aggregate_metric_list": [{"metric": m, "filter_list": [FILTER_NAME], "aggregation": "mean",
                                       "weight_by_size": False} for m in shared],
            "metadata": {"version": EXPORT_VERSION}}


HELPER_SOURCE = '''\
"""lm-eval helper written by `rlvr export-lm-eval` (rlvr-harness); the task YAMLs beside it point here.

Needs rlvr-harness installed in lm-eval's environment. Verification runs in worker processes started
with forkserver, so a script that calls `lm_eval.simple_evaluate` on these tasks needs the usual
`if __name__ == "__main__":` guard (the `lm_eval` command has it). Settings of this export:

{settings}
"""

from rlvr.harness.backends import lmeval as _rlvr

PASS_KS = {ks!r}
DEADLINE_S = {deadline!r}
WORKERS = {workers!r}


def load_docs(**kwargs):
    """custom_dataset: our problems and prompts (kwargs: the task's dataset_kwargs and lm-eval metadata)."""
    return _rlvr.load_docs(**kwargs)


def verify_samples(resps, docs):
    """custom filter: every sample of every document verified by our verifier (worker processes)."""
    return _rlvr.verify_samples(resps, docs, deadline_s=DEADLINE_S, workers=WORKERS)


def process_results(doc, results):
    """pass@k, avg@n and maj@k of one problem from its verdicts; lm-eval averages them over problems."""
    return _rlvr.process_results(doc, results, ks=PASS_KS)
'''


def export_lm_eval(cfg: ExportConfig) -> list[Path]:
    """Write the export into `cfg.out`; returns the files written (helper first)."""
    names = task_registry.expand(cfg.tasks)
    for name, template in cfg.templates.items():
        if template not in task_registry.get(name).templates:
            raise UserError(f"--template: task {name} has no template {template!r}")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out: cannot create {out} ({e.strerror or e})") from None
    settings = {"n": cfg.n, "pass_ks": cfg.pass_ks,
                "sampling": {**asdict(cfg.sampling), "stop": list(cfg.sampling.stop)}, "limit": cfg.limit,
                "data_dir": cfg.data_dir, "model": cfg.model, "deadline_s": cfg.deadline_s, "workers": cfg.workers,
                "tasks": names, "task_options": cfg.task_options}
    helper = out / f"{HELPER_MODULE}.py"
    lines = "\n".join(f"    {k}: {json.dumps(v)}" for k, v in settings.items())
    helper.write_text(HELPER_SOURCE.format(settings=lines, ks=tuple(cfg.pass_ks), deadline=float(cfg.deadline_s),
                                           workers=cfg.workers), encoding="utf-8")
    written = [helper]
    header = f"# written by `rlvr export-lm-eval` (rlvr-harness) for lm-eval {LMEVAL_VERSION}\n"
    for name in names:
        path = out / f"{TASK_PREFIX}{name}.yaml"
        path.write_text(header + yaml.dump(task_config(cfg, name), Dumper=_Dumper, sort_keys=False), encoding="utf-8")
        written.append(path)
    for suite, members in task_registry.SUITES.items():
        if all(m in names for m in members):
            path = out / f"{TASK_PREFIX}{suite}.yaml"
            path.write_text(header + yaml.dump(group_config(suite, members, cfg.pass_ks), Dumper=_Dumper,
                                               sort_keys=False), encoding="utf-8")
            written.append(path)
    return written


# ---- run time: called from inside lm-eval through the helper ----------------------------------------

# Problems that `load_docs` handed to lm-eval, by (task, template): the filter verifies against these
# exact objects (lm-eval docs hold only strings).
_LOADED: dict[tuple[str, str | None], dict[str, Problem]] = {}


class _LazyTokenizer:
    """Stands in for the tokenizer `Task.prompt` may use; loads the real one on first use, so that
    templates without a chat template never load one."""

    def __init__(self, sources: list[tuple[str, str, dict]], where: str):
        self._sources = sources      # (name, what named it, from_pretrained kwargs), first found wins
        self._where = where
        self._tok = None

    def __getattr__(self, attr: str):
        if attr.startswith("_"):
            raise AttributeError(attr)
        if self._tok is None:
            self._tok = self._load()
        return getattr(self._tok, attr)

    def _load(self):
        if not self._sources:
            raise UserError(f"{self._where} renders the model's chat template, but no tokenizer is known: give lm-eval "
                            f"a model argument pretrained=... or tokenizer=..., or export with --model")
        from transformers import AutoTokenizer

        name, what, kwargs = self._sources[0]
        try:
            tok = AutoTokenizer.from_pretrained(name, **kwargs)
        except OSError as e:
            raise UserError(f"{self._where}: cannot load the tokenizer {name!r} ({what}): "
                            f"{str(e).splitlines()[0][:200]}") from None
        log.info("%s: chat-template prompts rendered with the tokenizer of %s (%s)", self._where, name, what)
        return tok


def _tokenizer_sources(export_model: str | None, model_args: dict) -> list[tuple[str, str, dict]]:
    """Where the prompt's tokenizer comes from: the export's --model, else the evaluated model's
    `tokenizer=` or `pretrained=` argument (the same tokenizer `rlvr eval --model` would use)."""
    kwargs = {k: model_args[k] for k in ("revision", "trust_remote_code") if model_args.get(k) is not None}
    out = []
    if export_model:
        out.append((export_model, "--model of the export", {}))
    for key in ("tokenizer", "pretrained"):
        if isinstance(model_args.get(key), str) and model_args[key]:
            out.append((model_args[key], f"model argument {key}=", kwargs))
    return out


def load_docs(rlvr_task: str, rlvr_template: str | None = None, rlvr_limit: int | None = None,
              rlvr_data_dir: str | None = None, rlvr_tokenizer: str | None = None,
              rlvr_options: dict[str, Any] | None = None, **lm_eval_metadata):
    """lm-eval `custom_dataset`: {"test": Dataset} with one row per problem.

    Columns: rlvr_task, template, options (the task's scoring options as JSON, "{}" for none), problem_id,
    prompt (the rendered prompt, lm-eval's request context) and target (the gold answer, shown in lm-eval's
    logs; empty for code tasks, whose gold is tests)."""
    import datasets

    task = task_registry.get(rlvr_task)
    template = rlvr_template or (task.templates[0] if task.templates else None)
    problems = select_problems(task.load(rlvr_data_dir), (0, 1), rlvr_limit)
    # as `rlvr eval` does: verifiers whose extraction depends on the prompt's shape read the template here
    problems = [replace(p, meta={**p.meta, "template": template}) for p in problems]
    tokenizer = _LazyTokenizer(_tokenizer_sources(rlvr_tokenizer, lm_eval_metadata),
                               f"{TASK_PREFIX}{rlvr_task} (template {template})")
    rows = []
    for p in problems:
        target = "" if task.domain == "code" else (p.answer if isinstance(p.answer, str)
                                                   else json.dumps(p.answer, default=str))
        rows.append({"rlvr_task": rlvr_task, "template": template or "",
                     "options": json.dumps(rlvr_options or {}, sort_keys=True), "problem_id": p.id,
                     "prompt": task.prompt(p, template, tokenizer), "target": target})
    if not rows:
        raise UserError(f"{TASK_PREFIX}{rlvr_task}: no problems to evaluate")
    _LOADED[(rlvr_task, template)] = {p.id: p for p in problems}
    return {"test": datasets.Dataset.from_list(rows)}


def _problem(doc: dict) -> Problem:
    key = (doc["rlvr_task"], doc["template"] or None)
    try:
        return _LOADED[key][doc["problem_id"]]
    except KeyError:
        raise RuntimeError(f"{TASK_PREFIX}{doc['rlvr_task']}: problem {doc['problem_id']!r} was not loaded by "
                           f"load_docs in this process") from None


def verify_samples(resps: Sequence[Sequence[str]], docs: Sequence[dict], deadline_s: float = 10.0,
                   workers: int | None = None) -> list[list[dict]]:
    """lm-eval custom filter: for every document, the verdicts of all its responses, in order.

    resps: per document, the n completions (lm-eval's `inst.resps`). All of a task's samples go to one
    `VerifierPool` at once: checks run in worker processes under a hard deadline (code in our sandbox),
    never in lm-eval's process, and repeated answers are checked once."""
    from rlvr.harness.verify.pool import VerifierPool, retry_errors
    from rlvr.harness.verify.task_options import configured_task

    problems = [_problem(d) for d in docs]
    # the task as configured by the export's options (they act through `extract`, which runs here)
    configured = {(d["rlvr_task"], d.get("options", "{}")): configured_task(d["rlvr_task"],
                                                                             json.loads(d.get("options") or "{}"))
                  for d in docs}
    items = [(configured[(d["rlvr_task"], d.get("options", "{}"))], p, text)
             for d, p, texts in zip(docs, problems, resps, strict=True) for text in texts]
    if not items:
        return [[] for _ in docs]
    modules = sorted({type(task_registry.get(p.task)).__module__ for p in problems})
    cap = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    with VerifierPool(workers=min(cap, len(items)), deadline_s=deadline_s, preload=modules) as pool:
        verdicts = retry_errors(pool, items, pool.verify_many(items))
    failed = [v for v in verdicts if v.error]
    if failed:   # lm-eval has no place for "not judged": a wrong answer would be a wrong number
        raise RuntimeError(f"{TASK_PREFIX}{problems[0].task}: the verifier could not judge {len(failed)} of "
                           f"{len(verdicts)} samples ({failed[0].reason}); no result is reported")
    out, i = [], 0
    for texts in resps:
        out.append([{"correct": bool(v.correct), "score": float(v.score), "extracted": v.extracted,
                     "reason": v.reason} for v in verdicts[i:i + len(texts)]])
        i += len(texts)
    return out


def process_results(doc: dict, results: Sequence[Sequence[dict]], ks: Sequence[int]) -> dict[str, float]:
    """pass@k of one problem for every k, avg@n, and maj@k for every k where the task has a final answer
    (`result_columns`), from the verdicts of its n samples (rlvr.harness.report.voting).

    results: lm-eval passes one entry per request of the document; a generate_until task has one
    request, whose filtered response is the list of n verdicts."""
    if len(results) != 1:
        raise RuntimeError(f"{TASK_PREFIX}{doc['rlvr_task']}: expected one request per document, got {len(results)}")
    verdicts = results[0]
    n, c = len(verdicts), sum(bool(v["correct"]) for v in verdicts)
    if max(ks) > n:
        raise UserError(f"{TASK_PREFIX}{doc['rlvr_task']}: pass@{max(ks)} needs at least {max(ks)} samples per "
                        f"problem but got {n}; keep `repeats` >= the largest k (re-export with --n)")
    out = {f"pass@{k}": float(v) for k, v in zip(ks, pass_at_k(n, c, list(ks)), strict=True)}
    out["avg@n"] = c / n
    task = task_registry.get(doc["rlvr_task"])
    if task.final_answer:
        correct, wrong, no_vote = tally_votes(task, str(doc["problem_id"]), [sample_vote(v) for v in verdicts])
        out |= {f"maj@{k}": float(v) for k, v in zip(ks, maj_at_k(correct, wrong, no_vote, ks), strict=True)}
    return out
