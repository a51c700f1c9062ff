"""`rlvr train --backend verl`: a training YAML of ours -> a `python -m verl.trainer.main_ppo` launch.

The YAML is the one `rlvr train` reads (`TrainConfig`), plus an optional `verl:` section
(`VerlSection`: nodes, GPUs, rollout engine, ...) that only this module reads. The translation:

* data: the training prompts of `tasks` (or `data_file`), rendered with the task's own prompt
  template, go to `train.parquet`; the evaluation problems of `eval.tasks` (or a few training prompts
  when there are none, since verl always loads a validation file) to `val.parquet`. verl applies the
  tokenizer's chat template to every prompt; a pass-through template (`RAW_PROMPT_TEMPLATE`) makes it
  tokenize our rendered prompt unchanged, so verl samples from exactly the prompts `rlvr train` uses.
  Prompts longer than `verl.max_prompt_length` are left out of both files, as verl's own
  `data.filter_overlong_prompts` (also set) would drop them; a note says how many.
* method: `algorithm.adv_estimator` and `actor.policy_loss.loss_mode` = `rlvr_<method>`; the
  hyperparameters travel as JSON in RLVR_VERL_METHOD, not as verl config keys; `calculate_entropy`
  and `use_kl_loss` are switched on only to make verl compute the entropy and the reference
  log-probs our loss reads (its own entropy and KL terms stay off).
* the plugin reaches every Ray worker through VERL_USE_EXTERNAL_MODULES, set for the launching
  process and in `ray_kwargs.ray_init.runtime_env.env_vars`.
* batch sizes, optimizer, sampling, steps, checkpoints, seeds, nodes and GPUs map one to one
  (`translate` has the table in code); the `verl.overrides` list is appended last, verbatim.

Nothing here imports verl: the translation runs and is tested on any machine. The launch itself
needs GPUs and verl with a rollout engine (`pip install "verl[vllm]==0.9.1"`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from rlvr.harness.backends.verl import (
    METHOD_ENV,
    PLUGIN_MODULE,
    UNSUPPORTED_FIELDS,
    VERIFY_DEADLINE_ENV,
    VERIFY_WORKERS_ENV,
    VERL_VERSION,
    verl_name,
)
from rlvr.harness.config import blame, from_dict, read_config_data
from rlvr.harness.errors import UserError
from rlvr.harness.train.trainer import TrainConfig, build_method, training_problems
from rlvr.methods.base import Method
from rlvr.methods.grpo import GRPO

__all__ = ["VerlSection", "VerlLaunch", "load", "translate", "prepare", "run", "hydra_override",
           "RAW_PROMPT_TEMPLATE", "REWARD_PATH"]

# A chat template that emits each message's content verbatim: our prompts arrive rendered.
RAW_PROMPT_TEMPLATE = "{% for message in messages %}{{ message.content }}{% endfor %}"
REWARD_PATH = "pkg://rlvr.harness.backends.verl.reward"


@dataclass(frozen=True)
class VerlSection:
    """The `verl:` section of a training YAML (everything else is `TrainConfig`).

    nnodes, n_gpus_per_node: the Ray cluster verl trains on (trainer.nnodes / n_gpus_per_node).
    strategy: verl's FSDP engine version ("fsdp" or "fsdp2"; Megatron is not translated).
    rollout: the rollout engine ("vllm" or "sglang"); rollout_tp: its tensor-parallel size per replica;
        gpu_memory_utilization: the share of GPU memory it may take.
    max_prompt_length: prompt token limit; longer prompts are dropped, as verl's filter_overlong_prompts
        does (default: the longest rendered prompt).
    data_dir: where the parquet files go (default: OUT/verl_data).
    template: prompt template name for every task that offers it (default: each task's default).
    reward_workers: verl reward-loop workers; verify_workers: verifier processes in each.
    logger: verl's trackers (console, wandb, tensorboard, ...).
    project: trainer.project_name (the run name is the config's label, else method-OUT).
    use_remove_padding, gradient_checkpointing: the model settings of the same names.
    overrides: raw Hydra overrides appended last ("actor_rollout_ref.rollout.max_num_seqs=512").
    """

    nnodes: int = 1
    n_gpus_per_node: int = 8
    strategy: Literal["fsdp", "fsdp2"] = "fsdp"
    rollout: Literal["vllm", "sglang"] = "vllm"
    rollout_tp: int = 1
    gpu_memory_utilization: float = 0.5
    max_prompt_length: int | None = None
    data_dir: str | None = None
    template: str | None = None
    reward_workers: int = 8
    verify_workers: int = 2
    logger: list[str] = field(default_factory=lambda: ["console"])
    project: str = "rlvr"
    use_remove_padding: bool = True
    gradient_checkpointing: bool = True
    overrides: list[str] = field(default_factory=list)

    def __post_init__(self):
        for name in ("nnodes", "n_gpus_per_node", "rollout_tp", "reward_workers", "verify_workers"):
            if getattr(self, name) < 1:
                raise UserError(f"field 'verl.{name}': must be >= 1, got {getattr(self, name)}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise UserError(f"field 'verl.gpu_memory_utilization': must be in (0, 1], got {self.gpu_memory_utilization}")


@dataclass(frozen=True)
class VerlLaunch:
    """A translated launch: `python -m verl.trainer.main_ppo OVERRIDES` with `env` set."""

    overrides: list[str]
    env: dict[str, str]
    train_file: str
    val_file: str
    notes: list[str] = field(default_factory=list)

    def argv(self, python: str | None = None) -> list[str]:
        return [python or sys.executable, "-m", "verl.trainer.main_ppo", *self.overrides]

    def command(self, python: str = "python") -> str:
        """The shell command line, one override per line."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        head = shlex.join(self.argv(python)[:3])
        return " \\\n    ".join([f"{env} {head}", *(shlex.quote(a) for a in self.overrides)])

    def render(self) -> str:
        lines = [f"# verl {VERL_VERSION} launch (rlvr train --backend verl)",
                 f"# data: {self.train_file}, {self.val_file}"]
        lines += [f"# note: {n}" for n in self.notes]
        return "\n".join(lines + [self.command()])


# ---- config --------------------------------------------------------------------------------------

def load(path: str | Path, overrides: list[str] | None = None) -> tuple[TrainConfig, VerlSection]:
    """TrainConfig and VerlSection from one YAML; `--set` overrides may address either (`verl.nnodes=2`)."""
    data = read_config_data(path, overrides)
    section = data.pop("verl", None) or {}
    try:
        if not isinstance(section, dict):
            raise UserError(f"field 'verl': expected a mapping, got {section!r}")
        return from_dict(TrainConfig, data), from_dict(VerlSection, section, "verl")
    except UserError as e:
        raise UserError(blame(str(e), path, overrides)) from None


def check_method(method: Method) -> None:
    """UserError for method settings verl 0.9.1 cannot run as our trainer does."""
    where = f"field 'method' ({method.name})"
    bad = method.requires & UNSUPPORTED_FIELDS
    if bad:
        raise UserError(f"{where}: needs {', '.join(sorted(bad))}, which the verl backend cannot compute; "
                        f"for CaSP set method.candidates: current")
    rewards = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    drops = not bool(method.select_rows(rewards, groups).all())
    if (method.refill or drops) and not (isinstance(method, GRPO) and method.dynamic_sampling):
        raise UserError(f"{where}: drops rows or refills the batch (select_rows), which verl's trainer cannot do "
                        f"for it; use row_selection: mask (PSR/NSR) or gate: off (BBG)")


# ---- Hydra overrides -----------------------------------------------------------------------------

# strings Hydra reads back as the same string when unquoted; anything else is quoted
_BARE = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*")
_RESERVED = {"true", "false", "null", "nan", "inf"}


def hydra_value(v: Any) -> str:
    """A Python value in Hydra's override grammar (strings quoted unless plainly a word or a path)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        if _BARE.fullmatch(v) and v.lower() not in _RESERVED:
            return v
        if "\\" in v or "${" in v or ('"' in v and "'" in v):
            raise UserError(f"value {v!r}: backslashes, '${{' and both kinds of quotes cannot be passed to verl")
        return f"'{v}'" if '"' in v else f'"{v}"'
    if isinstance(v, list | tuple):
        return "[" + ",".join(hydra_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{hydra_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as a Hydra value")


def hydra_override(key: str, value: Any) -> str:
    return f"{key}={hydra_value(value)}"


# ---- translation ---------------------------------------------------------------------------------

def translate(cfg: TrainConfig, vs: VerlSection, train_file: str, val_file: str, n_train: int,
              max_prompt_tokens: int, has_val_tasks: bool) -> VerlLaunch:
    """The launch for `cfg`, given the data files already written (row counts and the longest prompt kept)."""
    method = build_method(cfg.method)
    check_method(method)
    P, G = cfg.prompts_per_step, cfg.rollouts_per_prompt
    gpus = vs.nnodes * vs.n_gpus_per_node
    rows = P * G
    mini_rows = cfg.mini_batch_size or rows
    if mini_rows % G:
        raise UserError(f"field 'mini_batch_size': {mini_rows} rows is not a whole number of groups of "
                        f"{G} (verl counts mini-batches in prompts)")
    if rows % gpus or mini_rows % gpus:
        raise UserError(f"field 'prompts_per_step': {P} prompts x {G} rollouts = {rows} rows (mini-batch "
                        f"{mini_rows}) must divide evenly over {gpus} GPUs (verl.nnodes x verl.n_gpus_per_node)")
    if n_train < P:
        raise UserError(f"field 'tasks': {n_train} training prompts, fewer than prompts_per_step = {P}")
    steps_per_epoch = n_train // P
    req = method.requires
    s, o, e = cfg.sampling, cfg.optimizer, cfg.eval
    env = {
        "VERL_USE_EXTERNAL_MODULES": PLUGIN_MODULE,
        METHOD_ENV: json.dumps({"name": method.name, **{k: v for k, v in cfg.method.items() if k != "name"}},
                               sort_keys=True, separators=(",", ":")),
        VERIFY_WORKERS_ENV: str(vs.verify_workers),
        VERIFY_DEADLINE_ENV: repr(float(cfg.verify_deadline_s)),
    }
    A, R, D = "actor_rollout_ref.actor", "actor_rollout_ref.rollout", "data"
    ov: dict[str, Any] = {
        # data
        f"{D}.train_files": train_file, f"{D}.val_files": val_file,
        f"{D}.train_batch_size": P, f"{D}.max_prompt_length": vs.max_prompt_length or max_prompt_tokens,
        f"{D}.max_response_length": s.max_new_tokens, f"{D}.shuffle": True, f"{D}.seed": cfg.seed,
        f"{D}.filter_overlong_prompts": True,     # our files hold none (write_data); verl checks again
        # model
        "actor_rollout_ref.model.path": cfg.model,
        "actor_rollout_ref.model.custom_chat_template": RAW_PROMPT_TEMPLATE,
        "actor_rollout_ref.model.use_remove_padding": vs.use_remove_padding,
        "actor_rollout_ref.model.enable_gradient_checkpointing": vs.gradient_checkpointing,
        "actor_rollout_ref.model.use_fused_kernels": False,
        # method
        "algorithm.adv_estimator": verl_name(method.name),
        f"{A}.policy_loss.loss_mode": verl_name(method.name),
        f"{A}.loss_agg_mode": method.loss_agg_mode,
        f"{A}.loss_scale_factor": s.max_new_tokens,     # the t_pad of seq-mean-token-sum-norm, as `rlvr train`
        f"{A}.entropy_coeff": 0.0,
        f"{A}.calculate_entropy": "entropy" in req,
        f"{A}.use_kl_loss": "ref_logp" in req,
        f"{A}.kl_loss_coef": 0.0,
        "algorithm.use_kl_in_reward": False,
        "algorithm.filter_groups.enable": isinstance(method, GRPO) and method.dynamic_sampling,
        "algorithm.filter_groups.metric": "reward",
        # batch sizes and optimizer
        f"{A}.strategy": vs.strategy, f"{A}.fsdp_config.strategy": vs.strategy,
        f"{A}.ppo_mini_batch_size": mini_rows // G,
        f"{A}.ppo_micro_batch_size_per_gpu": cfg.micro_batch_size,
        f"{A}.ppo_epochs": cfg.ppo_epochs, f"{A}.shuffle": True, f"{A}.data_loader_seed": cfg.seed,
        f"{A}.fsdp_config.seed": cfg.seed,
        f"{A}.optim.lr": o.lr, f"{A}.optim.weight_decay": o.weight_decay, f"{A}.optim.betas": list(o.betas),
        f"{A}.optim.clip_grad": o.grad_clip, f"{A}.optim.lr_warmup_steps": o.warmup_steps,
        # rollout
        f"{R}.name": vs.rollout, f"{R}.n": G, f"{R}.temperature": s.temperature, f"{R}.top_p": s.top_p,
        f"{R}.top_k": s.top_k if s.top_k > 0 else -1, f"{R}.seed": cfg.seed,
        f"{R}.tensor_model_parallel_size": vs.rollout_tp,
        f"{R}.gpu_memory_utilization": vs.gpu_memory_utilization,
        f"{R}.log_prob_micro_batch_size_per_gpu": cfg.micro_batch_size,
        # reward
        "reward.custom_reward_function.path": REWARD_PATH,
        "reward.custom_reward_function.name": "compute_score",
        "reward.num_workers": vs.reward_workers,
        # trainer
        "trainer.nnodes": vs.nnodes, "trainer.n_gpus_per_node": vs.n_gpus_per_node,
        "trainer.total_training_steps": cfg.steps, "trainer.total_epochs": math.ceil(cfg.steps / steps_per_epoch),
        "trainer.save_freq": cfg.checkpoint_every or cfg.steps,
        "trainer.test_freq": (e.every or cfg.steps) if has_val_tasks else -1,
        "trainer.val_before_train": False,
        "trainer.default_local_dir": str(Path(cfg.out).absolute() / "checkpoints"),
        "trainer.resume_mode": "auto",
        "trainer.project_name": vs.project,
        "trainer.experiment_name": cfg.label or f"{method.name}-{Path(cfg.out).name}",
        "trainer.logger": list(vs.logger),
    }
    if o.eps != 1e-8:
        ov[f"{A}.optim.override_optimizer_config"] = {"eps": o.eps}
    if cfg.micro_batch_tokens is not None:      # token-budget micro-batches, as Lp-Reg's official runs
        ov[f"{A}.use_dynamic_bsz"] = True
        ov[f"{A}.ppo_max_token_len_per_gpu"] = cfg.micro_batch_tokens
    if "ref_logp" in req:
        ov["actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu"] = cfg.micro_batch_size
    if has_val_tasks:
        ov.update({f"{R}.val_kwargs.n": e.n, f"{R}.val_kwargs.temperature": e.temperature,
                   f"{R}.val_kwargs.top_p": e.top_p, f"{R}.val_kwargs.do_sample": True})
    overrides = [hydra_override(k, v) for k, v in ov.items()]
    overrides += [hydra_override(f"+ray_kwargs.ray_init.runtime_env.env_vars.{k}", v) for k, v in sorted(env.items())]
    overrides += list(vs.overrides)

    notes = [f"needs GPUs and verl with a rollout engine: pip install 'verl[{vs.rollout}]=={VERL_VERSION}'; "
             f"rlvr-harness must be installed on every node"]
    if req:
        notes.append(f"method {method.name} reads {', '.join(sorted(req))}: the plugin patches verl "
                     f"{VERL_VERSION}'s FSDP forward and ppo_loss (harness/backends/verl/patch.py)")
    if cfg.device != "auto" or cfg.dtype != "float32" or cfg.workers is not None:
        notes.append("device, dtype and workers are not used: verl places and casts the model itself")
    if cfg.rollout_engine != "hf" or cfg.vllm != type(cfg.vllm)():
        notes.append("rollout_engine and the vllm: section are the local trainer's: verl's rollouts are set by "
                     "verl.rollout, verl.rollout_tp and verl.gpu_memory_utilization")
    if e.tasks and e.max_new_tokens not in (None, s.max_new_tokens):
        notes.append("eval.max_new_tokens is not used: verl validates with the training response length")
    if isinstance(method, GRPO) and method.dynamic_sampling:
        notes.append("dynamic sampling is verl's filter_groups (drop all-equal groups, refill; no round limit)")
    notes.append("verl's validation reports mean@n and bootstrap best@n, not unbiased pass@k: merge a "
                 "checkpoint (python -m verl.model_merger merge --backend fsdp --local_dir "
                 "OUT/checkpoints/global_step_N/actor --target_dir DIR) and run rlvr eval on it")
    return VerlLaunch(overrides=overrides, env=env, train_file=train_file, val_file=val_file, notes=notes)


# ---- data ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Prompt:
    task: Any
    problem: Any
    text: str          # rendered with the task's template
    tokens: int        # its length, counted as verl counts it under RAW_PROMPT_TEMPLATE


def _render(pairs, template: str | None, tokenizer) -> list[_Prompt]:
    out = []
    for task, problem in pairs:
        try:
            text = task.prompt(problem, template if template in task.templates else None, tokenizer)
        except UserError as err:
            raise UserError(f"field 'verl.template': {err}") from None
        out.append(_Prompt(task, problem, text, len(tokenizer(text, add_special_tokens=False)["input_ids"])))
    return out


def _drop_overlong(rendered: list[_Prompt], limit: int | None, what: str) -> tuple[list[_Prompt], int]:
    """The rendered prompts of at most `limit` tokens (verl's filter_overlong_prompts keeps len <= limit)
    and how many were dropped; UserError when none is left."""
    if limit is None:
        return rendered, 0
    kept = [r for r in rendered if r.tokens <= limit]
    if rendered and not kept:
        raise UserError(f"field 'verl.max_prompt_length': all {len(rendered)} {what} prompts are longer than "
                        f"{limit} tokens (the shortest has {min(r.tokens for r in rendered)})")
    return kept, len(rendered) - len(kept)


def _rows(rendered: list[_Prompt], split: str) -> list[dict]:
    from rlvr.harness.backends.verl.reward import problem_to_extra_info

    rows = []
    for i, r in enumerate(rendered):
        task, problem = r.task, r.problem
        answer = problem.answer if isinstance(problem.answer, str) else json.dumps(problem.answer, sort_keys=True)
        rows.append({"data_source": problem.task, "ability": task.domain,
                     "prompt": [{"role": "user", "content": r.text}],
                     "reward_model": {"style": "rule", "ground_truth": answer},
                     "extra_info": {"index": i, "split": split, **problem_to_extra_info(problem)}})
    return rows


def write_data(cfg: TrainConfig, vs: VerlSection) -> tuple[str, str, int, int, bool]:
    """Write train.parquet and val.parquet without the prompts longer than `verl.max_prompt_length`;
    (train path, val path, train rows, longest prompt kept, has eval tasks)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from rlvr import tasks as task_registry

    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    except (OSError, ValueError) as err:
        raise UserError(f"field 'model': cannot load the tokenizer of {cfg.model} to render prompts "
                        f"({str(err).splitlines()[0]})") from None
    train, dropped_train = _drop_overlong(_render(training_problems(cfg), vs.template, tokenizer),
                                          vs.max_prompt_length, "training")
    if cfg.eval.tasks:
        val_pairs = []
        for name in task_registry.expand(cfg.eval.tasks):
            task = task_registry.get(name)
            val_pairs += [(task, p) for p in task.load(cfg.eval.data_dir)[:cfg.eval.limit]]
        val, dropped_val = _drop_overlong(_render(val_pairs, vs.template, tokenizer), vs.max_prompt_length,
                                          "validation")
    else:
        val, dropped_val = train[:8], 0
    if dropped_train or dropped_val:
        print(f"rlvr: note: field 'verl.max_prompt_length': dropped {dropped_train} of "
              f"{len(train) + dropped_train} training and {dropped_val} of {len(val) + dropped_val} validation "
              f"prompts longer than {vs.max_prompt_length} tokens (verl's data.filter_overlong_prompts)",
              file=sys.stderr)
    out = Path(vs.data_dir or Path(cfg.out) / "verl_data").absolute()
    try:
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(_rows(train, "train")), out / "train.parquet")
        pq.write_table(pa.Table.from_pylist(_rows(val, "val")), out / "val.parquet")
    except OSError as err:
        raise UserError(f"field 'verl.data_dir': cannot write to {out} ({err.strerror})") from None
    longest = max((r.tokens for r in train + val), default=0)
    return str(out / "train.parquet"), str(out / "val.parquet"), len(train), longest, bool(cfg.eval.tasks)


def prepare(config_path: str | Path, overrides: list[str] | None = None) -> VerlLaunch:
    """Load the YAML, write the data files and return the launch (also saved as DATA_DIR/launch.json)."""
    cfg, vs = load(config_path, overrides)
    train_file, val_file, n_train, longest, has_val = write_data(cfg, vs)
    launch = translate(cfg, vs, train_file, val_file, n_train, longest, has_val)
    record = {"config": asdict(cfg), "verl": asdict(vs), **asdict(launch)}
    (Path(train_file).parent / "launch.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return launch


def run(launch: VerlLaunch) -> int:
    """Run the launch in a subprocess; UserError when verl is missing or is not the pinned release."""
    from importlib import metadata

    try:
        version = metadata.version("verl")
    except metadata.PackageNotFoundError:
        raise UserError(f"--backend verl: verl is not installed; pip install 'verl[vllm]=={VERL_VERSION}' "
                        f"(or 'rlvr-harness[verl]' for the CPU-only parts)") from None
    if version != VERL_VERSION:
        raise UserError(f"--backend verl: verl {version} is installed; this harness is pinned to verl=={VERL_VERSION}")
    return subprocess.call(launch.argv(), env={**os.environ, **launch.env})
