"""`rlvr train`: the one training loop every method shares (CPU or one GPU).

Per step:
  1. rollouts: G samples for each of P prompts, per-sample seeds: our `hf` sampler on the training model, or
     with `rollout_engine: vllm` a vLLM engine colocated on the same GPU whose weights are pushed from the
     training model at the start and after every optimizer step (`harness/sample/vllm_rollout.py`; untested on a
     GPU until a run is recorded). Evaluations always sample with the `hf` sampler;
  2. rewards: the task's verifier in the verifier pool (1.0 when correct, else 0.0);
  3. row selection: `method.select_rows`; when `method.refill` (DAPO dynamic sampling, BBG gating) more
     prompts are sampled until P groups are kept or `max_refill_rounds` is reached;
  4. the behaviour policy's per-token fields (old log-probs, Lp-Reg's proxy, CaSP's old top-N) and the
     reference log-probs when the method has a KL term, all without gradients. Where they cannot differ from
     the update's own forward (one epoch, one mini-batch, `hf` rollouts, no reference model) this pass is
     skipped and they are taken from that forward, detached (`Trainer._one_pass`);
  5. advantages over the kept rows (`method.advantages`);
  6. `ppo_epochs` passes of mini-batch updates; each mini-batch is cut into micro-batches whose losses
     are normalised by the whole mini-batch (`AggScale`), so gradient accumulation gives the gradient
     of the unsplit mini-batch, for every method whose per-token loss does not depend on which rows
     share its batch. Lp-Reg's does: its percentile runs over the micro-batch, as in its code, so there
     the micro-batch size is part of the method (the code's micro-batches are token budgets of 30,720
     tokens: `micro_batch_tokens` sizes ours the same way);
  7. a JSON line of metrics (reward, solve rate, entropy, top-1 mass, lengths, the method's stats);
  8. checkpoints in Hugging Face format (with optimizer and trainer state: `rlvr train` resumes from
     the last one) and evaluations into run directories `OUT/eval/step_N`.

The per-token statistics come from the final hidden states and the LM head in chunks
(`harness/train/token_stats.py`), so the [B, T, V] logits of a batch are never held.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rlvr.harness.errors import UserError
from rlvr.harness.provenance import collect, utc_now
from rlvr.harness.runs.store import RUN_FILE, TRAIN_INFO, locked, write_json_atomic, write_text_atomic
from rlvr.harness.sample.engine import SamplingParams, sample_seed
from rlvr.harness.train.loggers import Trackers, check_loggers
from rlvr.tasks.base import Problem

from rlvr import methods as method_registry
from rlvr import tasks as task_registry


@dataclass(frozen=True)
class OptimizerConfig:
    lr: float = 1e-6
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0
    warmup_steps: int = 0


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 1024


@dataclass(frozen=True)
class EvalSchedule:
    every: int = 0                       # 0: only after the last step (if tasks are given)
    tasks: list[str] = field(default_factory=list)
    n: int = 16
    limit: int | None = None
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int | None = None    # default: the training max_new_tokens
    data_dir: str | None = None
    task_options: list[str] = field(default_factory=list)   # KEY=VALUE, as `rlvr eval --task-option`


@dataclass(frozen=True)
class VLLMRolloutConfig:
    """The `vllm:` section, read only with `rollout_engine: vllm` (harness/sample/vllm_rollout.py)."""

    gpu_memory_utilization: float = 0.3  # vLLM's share of the GPU (weights, KV cache); the trainer gets the rest
    max_model_len: int | None = None     # default: the model's context length
    enforce_eager: bool = False          # no CUDA graphs: faster start, slower decoding
    sleep: bool = False                  # free vLLM's weights and KV cache during each update (sleep level 2)

    def __post_init__(self):
        if not 0 < self.gpu_memory_utilization < 1:
            raise UserError(f"field 'vllm.gpu_memory_utilization': must be in (0, 1), got {self.gpu_memory_utilization}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise UserError(f"field 'vllm.max_model_len': must be >= 1, got {self.max_model_len}")


@dataclass(frozen=True)
class RewardConfig:
    """The `reward:` section. `verifier` (the default): 1.0 when the task's verifier judges a rollout correct,
    else 0.0. `random`: the random-reward control, a reward drawn at random, 1.0 with probability `p` and
    independently of the rollout, so that a method trained on it learns nothing about the task (the control
    of "Spurious Rewards: Rethinking Training Signals in RLVR", Shao et al. 2025, arXiv:2506.10947; a method
    that does not beat it has shown no learning signal). Without `p`, p is the solve rate of the starting
    model on the training prompts, measured before the first step from `p_prompts` prompts of the data
    order with `rollouts_per_prompt` rollouts each, and recorded in train.json (`reward`) and in the trainer
    state. The verifier still judges every rollout: its mean is logged as `verified_reward_mean`."""

    kind: Literal["verifier", "random"] = "verifier"
    p: float | None = None
    p_prompts: int = 64

    def __post_init__(self):
        if self.kind not in ("verifier", "random"):
            raise UserError(f"field 'reward.kind': expected verifier or random, got {self.kind!r}")
        if self.p is not None and not 0 <= self.p <= 1:
            raise UserError(f"field 'reward.p': must be in [0, 1], got {self.p}")
        if self.p_prompts < 1:
            raise UserError(f"field 'reward.p_prompts': must be >= 1, got {self.p_prompts}")
        if self.kind == "verifier" and self.p is not None:
            raise UserError("field 'reward.p': only with reward.kind random")

ROLLOUT_ENGINES = ("hf", "vllm")


@dataclass(frozen=True)
class TrainConfig:
    model: str
    out: str
    tasks: list[str]
    method: dict[str, Any] = field(default_factory=lambda: {"name": "grpo"})
    data_file: str | None = None         # JSONL rows in the task's format (otherwise the task's own train split)
    train_problems: int = 10000          # size of the generated train split, for tasks that generate one
    prompts_per_step: int = 8
    rollouts_per_prompt: int = 8
    mini_batch_size: int | None = None   # rows per optimizer step (default: all rows of the step)
    micro_batch_size: int = 8
    # token budget of an update micro-batch (prompt + response tokens, verl's ppo_max_token_len_per_gpu with
    # use_dynamic_bsz); None: micro-batches of micro_batch_size rows (which still sizes the no-grad passes)
    micro_batch_tokens: int | None = None
    ppo_epochs: int = 1
    steps: int = 10
    max_refill_rounds: int = 4
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    eval: EvalSchedule = field(default_factory=EvalSchedule)
    checkpoint_every: int = 0            # 0: only the last step
    checkpoint_keep: int = 0             # 0: keep every checkpoint; N: the newest N (verl's max_actor_ckpt_to_keep)
    seed: int = 0                        # the training seed: data order, rollout sampling, update order, random rewards
    arm: str | None = None               # the arm this run is one seed of (default: the label, else the method's name)
    reward: RewardConfig = field(default_factory=RewardConfig)
    device: str = "auto"
    dtype: str = "float32"
    workers: int | None = None
    verify_deadline_s: float = 10.0
    label: str | None = None
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])   # JSON lines always; tensorboard, wandb, trackio
    project: str = "rlvr"                # the wandb / trackio project (harness/train/loggers.py)
    rollout_engine: Literal["hf", "vllm"] = "hf"   # vllm: colocated vLLM on the training GPU (the `vllm:` section)
    vllm: VLLMRolloutConfig = field(default_factory=VLLMRolloutConfig)

    def __post_init__(self):
        for name in ("prompts_per_step", "rollouts_per_prompt", "micro_batch_size", "ppo_epochs", "steps"):
            if getattr(self, name) < 1:
                raise UserError(f"field '{name}': must be >= 1, got {getattr(self, name)}")
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise UserError(f"field 'mini_batch_size': must be >= 1, got {self.mini_batch_size}")
        if self.micro_batch_tokens is not None and self.micro_batch_tokens < 1:
            raise UserError(f"field 'micro_batch_tokens': must be >= 1 (or null), got {self.micro_batch_tokens}")
        if not isinstance(self.method, dict) or "name" not in self.method:
            raise UserError("field 'method': needs a 'name' (one of rlvr methods)")
        check_loggers(list(self.loggers))   # known, and their packages installed (a missing one stops us now)
        if self.rollout_engine not in ROLLOUT_ENGINES:
            raise UserError(f"field 'rollout_engine': expected one of {', '.join(ROLLOUT_ENGINES)}, "
                            f"got {self.rollout_engine!r}")
        self._check_ranges()
        build_method(self.method)    # the method's own checks, while the config file can still be named
        self.eval_task_options()     # a bad option is a config error now, not at the first evaluation

    def _check_ranges(self) -> None:
        """Values a later stage would refuse after compute was spent (or with a traceback), named by field."""
        o, s, e = self.optimizer, self.sampling, self.eval
        checks = [
            ("optimizer.lr", o.lr > 0, "must be > 0"), ("optimizer.eps", o.eps >= 0, "must be >= 0"),
            ("optimizer.weight_decay", o.weight_decay >= 0, "must be >= 0"),
            ("optimizer.betas", len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "must be two numbers in [0, 1)"),
            ("optimizer.grad_clip", o.grad_clip > 0, "must be > 0"),
            ("optimizer.warmup_steps", o.warmup_steps >= 0, "must be >= 0"),
            ("sampling.temperature", s.temperature >= 0, "must be >= 0"),
            ("sampling.top_p", 0 < s.top_p <= 1, "must be in (0, 1]"), ("sampling.top_k", s.top_k >= 0, "must be >= 0"),
            ("sampling.max_new_tokens", s.max_new_tokens >= 1, "must be >= 1"),
            ("eval.every", e.every >= 0, "must be >= 0"), ("eval.n", e.n >= 1, "must be >= 1"),
            ("eval.limit", e.limit is None or e.limit >= 1, "must be >= 1"),
            ("eval.temperature", e.temperature >= 0, "must be >= 0"), ("eval.top_p", 0 < e.top_p <= 1, "must be in (0, 1]"),
            ("eval.max_new_tokens", e.max_new_tokens is None or e.max_new_tokens >= 1, "must be >= 1"),
            ("checkpoint_every", self.checkpoint_every >= 0, "must be >= 0"),
            ("checkpoint_keep", self.checkpoint_keep >= 0, "must be >= 0"),
            ("max_refill_rounds", self.max_refill_rounds >= 0, "must be >= 0"),
            ("verify_deadline_s", self.verify_deadline_s > 0, "must be > 0"),
            ("workers", self.workers is None or self.workers >= 1, "must be >= 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise UserError(f"field '{name}': {rule}, got {_field_value(self, name)!r}")
        if not self.tasks:
            raise UserError("field 'tasks': give at least one task")
        for where, names in (("tasks", self.tasks), ("eval.tasks", self.eval.tasks)):
            for name in names:
                try:
                    task_registry.expand([name])
                except UserError as err:
                    raise UserError(f"field '{where}': {err}") from None

    def eval_task_options(self) -> dict[str, dict[str, Any]]:
        """`eval.task_options` as `EvalConfig.task_options` ({task: {key: value}})."""
        if not self.eval.task_options:
            return {}
        from rlvr.harness.verify.task_options import FLAG, parse_task_options

        try:
            return parse_task_options(list(self.eval.task_options), task_registry.expand(list(self.eval.tasks)))
        except UserError as e:
            msg = str(e).removeprefix(FLAG).lstrip(" :").replace("--tasks", "eval.tasks")
            raise UserError(f"field 'eval.task_options': {msg}") from None


def build_method(spec: dict[str, Any]):
    name = spec["name"]
    if name not in method_registry.available():
        raise UserError(f"field 'method.name': unknown method {name!r} (known: {', '.join(method_registry.available())})")
    try:
        return method_registry.build_spec(spec)
    except ValueError as e:
        raise UserError(f"field 'method': {e}") from None


def training_problems(cfg: TrainConfig) -> list[tuple[Any, Problem]]:
    """(task, problem) pairs: a data file in the task's row format, or the task's generated train split."""
    out = []
    for name in cfg.tasks:
        task = task_registry.get(name)
        if cfg.data_file:
            from rlvr.tasks.loading import read_jsonl

            if not hasattr(task, "problem_from_row"):
                raise UserError(f"field 'data_file': task {name} cannot read rows from a file")
            path = Path(cfg.data_file)
            if not path.is_file():
                raise UserError(f"field 'data_file': {path} does not exist")
            out += [(task, task.problem_from_row(r)) for r in read_jsonl(path)]
        elif hasattr(task, "train_problems"):
            out += [(task, p) for p in task.train_problems(cfg.train_problems)]
        else:
            raise UserError(f"field 'tasks': {name} has no training split; give 'data_file'")
    return out


@dataclass
class _Rollout:
    task: Any
    problem: Problem
    group: int
    prompt_ids: list[int]
    response_ids: list[int]
    finish_reason: str
    reward: float


def single_rollout_warning(method: Any, rollouts_per_prompt: int) -> str | None:
    """A one-line warning when a group-relative method (a rollout's advantage compares its reward with the
    other rollouts of its prompt, as GRPO's does) trains on groups of one rollout, where there is nothing to
    compare: the advantage is then 0 (no gradient) or, with verl's convention for groups of one, the raw
    reward (REINFORCE without a baseline). Found by asking the method for advantages, not by its name."""
    if rollouts_per_prompt != 1:
        return None
    import torch

    def adv(rewards: list[float], groups: list[int]):
        return method.advantages(torch.tensor(rewards), torch.tensor(groups), torch.ones(len(rewards), 2))

    try:   # does a rollout's advantage depend on the other rollouts of its group?
        relative = not torch.allclose(adv([1.0, 0.0], [0, 0])[0], adv([1.0, 1.0], [0, 0])[0])
        alone = adv([0.0, 1.0], [0, 1])
    except Exception:   # a method that cannot score such a batch says so when training starts
        return None
    if not relative:
        return None
    what = ("every advantage is 0, so training changes nothing" if not bool(torch.count_nonzero(alone))
            else "the advantage falls back to the raw reward, without the group baseline")
    return (f"rlvr: warning: rollouts_per_prompt is 1, but {method.name} compares the rollouts of one prompt: "
            f"{what} (use rollouts_per_prompt >= 2)")


class Trainer:
    def __init__(self, cfg: TrainConfig, progress: bool = True):
        import torch
        from rlvr.harness.sample.models import load_model, resolve_device

        self.cfg = cfg
        self.progress = progress
        self.method = build_method(cfg.method)
        limit = getattr(self.method, "overlong_max_len", None)
        if limit is not None and limit - self.method.overlong_cache >= cfg.sampling.max_new_tokens:
            print(f"rlvr: note: method.overlong_max_len {limit} with overlong_cache {self.method.overlong_cache}: "
                  f"the overlong penalty starts past {limit - self.method.overlong_cache} tokens, beyond "
                  f"sampling.max_new_tokens {cfg.sampling.max_new_tokens}, so it never applies", file=sys.stderr)
        note = single_rollout_warning(self.method, cfg.rollouts_per_prompt)
        if note:
            print(note, file=sys.stderr)
        self.out = Path(cfg.out)
        self.ckpt_root = self.out / "checkpoints"
        self.state = {"step": 0, "cursor": 0}
        last = self.ckpt_root / "last"
        model_src = cfg.model
        if (last / "trainer_state.json").exists():
            self.state = json.loads((last / "trainer_state.json").read_text())
            model_src = str(last.resolve())
        self.device = resolve_device(cfg.device)
        if cfg.rollout_engine == "vllm":
            from rlvr.harness.sample.vllm_rollout import check_vllm_rollouts

            check_vllm_rollouts(self.device)
        self.model_src = model_src
        from rlvr.harness.verify.pool import preflight

        preflight([*cfg.tasks, *(cfg.eval.tasks or [])])   # a verifier that cannot run stops us before the model loads
        self.model, self.tok = load_model(model_src, self.device, cfg.dtype, what="field 'model'")
        self.ref = None
        if "ref_logp" in self.method.requires:
            ref_src = cfg.model
            self.ref, _ = load_model(ref_src, self.device, cfg.dtype, what="field 'model'")
            self.ref.requires_grad_(False)
        torch.manual_seed(cfg.seed)      # anything random in torch (no method draws from it today)
        o = cfg.optimizer
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay,
                                     betas=tuple(o.betas), eps=o.eps)
        if (last / "optimizer.pt").exists():
            self.opt.load_state_dict(torch.load(last / "optimizer.pt", map_location=self.device))
        self.problems = training_problems(cfg)
        order = list(range(len(self.problems)))
        random.Random(cfg.seed).shuffle(order)
        self.order = order
        self.sampling = SamplingParams(cfg.sampling.temperature, cfg.sampling.top_p, cfg.sampling.top_k,
                                       cfg.sampling.max_new_tokens)
        self.one_pass_allowed = True     # False: always run the separate old-log-prob pass (tests compare both)

    @property
    def arm(self) -> str:
        """The arm this run is one seed of: `arm`, else the label, else the method's name."""
        return self.cfg.arm or self.cfg.label or self.method.name

    def _train_info(self) -> dict:
        """What a checkpoint's evaluation records about its training (rlvr_train.json in each checkpoint)."""
        return {"arm": self.arm, "train_seed": self.cfg.seed, "method": self.method.name, "label": self.cfg.label,
                "reward": self._reward_info()}

    def _reward_info(self) -> dict:
        r = self.cfg.reward
        if r.kind == "verifier":
            return {"kind": "verifier"}
        return {"kind": "random", "p": self.state.get("reward_p", r.p), **self.state.get("reward_p_measured", {})}

    def _measure_reward_p(self, engine, pool) -> None:
        """The random-reward control's p, when not given: the solve rate of the starting model on the first
        `reward.p_prompts` training prompts of the data order (`rollouts_per_prompt` rollouts each)."""
        r, g = self.cfg.reward, self.cfg.rollouts_per_prompt
        if r.kind != "random" or "reward_p" in self.state:
            return
        if r.p is not None:
            self.state["reward_p"] = r.p
            return
        batch = [self.problems[i] for i in self.order[:min(r.p_prompts, len(self.order))]]
        requests = [(task.prompt(p, None, self.tok), [sample_seed(self.cfg.seed, "reward-p", p.id, i) for i in range(g)])
                    for task, p in batch]
        comps = engine.generate(requests, self.sampling)
        correct = 0.0
        for (task, p), cs in zip(batch, comps, strict=True):
            futures = [pool.submit(task.name, p, c.text) for c in cs]
            correct += sum(self._rewards(0, pool, task, p, cs, futures, verified=True))
        self.state["reward_p"] = correct / (len(batch) * g)
        self.state["reward_p_measured"] = {"measured_on": {"prompts": len(batch), "rollouts_per_prompt": g,
                                                           "correct": int(correct)}}
        if self.progress:
            print(f"rlvr: random reward: p = {self.state['reward_p']:.4f}, the starting model's solve rate on "
                  f"{len(batch)} training prompts x {g} rollouts", file=sys.stderr)
        info_path = self.out / "train.json"
        info = json.loads(info_path.read_text())
        info["reward"] = self._reward_info()
        write_json_atomic(info_path, info)

    # ---- public --------------------------------------------------------------------------------

    def train(self, pool=None) -> Path:
        """Run (or resume) the loop; `pool`: a running VerifierPool to use instead of starting one. OUT is locked
        meanwhile (a second `rlvr train` into it stops, naming this one). A resume first cuts train_log.jsonl back
        to the step it resumes from and finishes the evaluations an interruption left unfinished."""
        self.out.mkdir(parents=True, exist_ok=True)
        with locked(self.out, "training output"):
            return self._train(pool)

    def _train(self, pool=None) -> Path:
        import contextlib

        from rlvr.harness.progress import bar as tqdm
        from rlvr.harness.sample.engine import HFEngine
        from rlvr.harness.verify.pool import VerifierPool

        info_path = self.out / "train.json"
        if self.state["step"] and info_path.exists():
            self._check_resume(info_path)
        else:        # a fresh start (a run that stopped before its first checkpoint starts over)
            write_json_atomic(info_path, {"config": asdict(self.cfg), "method": self._method_dict(),
                                          "arm": self.arm, "train_seed": self.cfg.seed,
                                          "reward": self._reward_info(),
                                          "provenance": collect(), "start_time": utc_now()})
        engine = HFEngine(self.model, self.tok, merge_prompts=True)   # hf rollouts and every evaluation
        modules = sorted({type(t).__module__ for t, _ in self.problems})
        start = self.state["step"]
        self._cut_log(start)
        self._trackers = Trackers(self.cfg.loggers, self.out, self.cfg.project, self.cfg.label or self.out.name,
                                  {"config": asdict(self.cfg), "method": self._method_dict()}, start)
        for step in self._pending_evals():
            print(f"rlvr: {self.out}: finishing the evaluation of step {step} (eval/step_{step}), which was "
                  f"interrupted", file=sys.stderr)
            self._evaluate(step, self.ckpt_root / f"step_{step}", engine if step == start else None)
        vllm = self._vllm_engine() if self.cfg.rollout_engine == "vllm" and start < self.cfg.steps else None
        self.rollout_engine = vllm if vllm is not None else engine
        bar = tqdm(range(start, self.cfg.steps), initial=start, total=self.cfg.steps, desc=f"train {self.method.name}",
                   disable=not self.progress, dynamic_ncols=True)
        own = pool is None
        with (VerifierPool(workers=self.cfg.workers, deadline_s=self.cfg.verify_deadline_s, preload=modules)
              if own else contextlib.nullcontext(pool)) as pool, contextlib.closing(self._trackers):
            if start < self.cfg.steps:
                self._measure_reward_p(self.rollout_engine, pool)
            for step in bar:
                t0 = time.monotonic()
                rollouts, sample_stats = self._rollouts(step, self.rollout_engine, pool)
                t_roll = time.monotonic() - t0
                if vllm is not None:
                    vllm.sleep()
                t_update = time.monotonic()
                update_stats = self._update(step, rollouts) if rollouts else {"skipped": 1.0}
                update_stats["time_update_s"] = round(time.monotonic() - t_update, 3)
                if vllm is not None:
                    t_sync = time.monotonic()
                    vllm.sync_weights(self.model)
                    update_stats["time_sync_s"] = round(time.monotonic() - t_sync, 3)
                record = {"step": step + 1, **sample_stats, **update_stats,
                          "time_rollout_s": round(t_roll, 3), "time_step_s": round(time.monotonic() - t0, 3)}
                self._log(record)
                bar.set_postfix(reward=f"{sample_stats['reward_mean']:.3f}")
                done = step + 1
                last = done == self.cfg.steps
                if last or (self.cfg.checkpoint_every and done % self.cfg.checkpoint_every == 0) or \
                        (self.cfg.eval.every and done % self.cfg.eval.every == 0):
                    ckpt = self._checkpoint(done)
                    if self.cfg.eval.tasks and (last or (self.cfg.eval.every and done % self.cfg.eval.every == 0)):
                        self._evaluate(done, ckpt, engine)
                    self._prune_checkpoints()
        return self.out

    def _cut_log(self, step: int) -> None:
        """Cut train_log.jsonl back to `step`, the step this run resumes from (0: a fresh start): the lines of
        later steps, logged before an interruption and about to be done again, move to train_log.discarded.jsonl,
        so that the log holds each step once, as the resumed run did it."""
        path = self.out / "train_log.jsonl"
        if not path.exists():
            return
        keep, drop = [], []
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                done = line.endswith("\n") and int(json.loads(line)["step"]) <= step
            except (ValueError, KeyError, TypeError):
                done = False        # a line cut short by the interruption
            (keep if done else drop).append(line if line.endswith("\n") else line + "\n")
        if drop:
            with open(self.out / "train_log.discarded.jsonl", "a", encoding="utf-8") as f:
                f.write("".join(drop))
            write_text_atomic(path, "".join(keep))
            print(f"rlvr: note: {self.out}: resuming from step {step}: {len(drop)} lines of train_log.jsonl past it "
                  f"moved to train_log.discarded.jsonl", file=sys.stderr)

    def _pending_evals(self) -> list[int]:
        """Steps whose evaluation an interruption left unfinished (eval/step_N without a finished run), with
        their checkpoint at hand: the step resumed from, when the schedule evaluates it, and any other."""
        if not self.cfg.eval.tasks:
            return []

        def finished(step: int) -> bool:
            run = self.out / "eval" / f"step_{step}"
            try:
                return (run / "metrics.json").exists() and json.loads((run / RUN_FILE).read_text()).get("end_time")
            except (OSError, ValueError, AttributeError):
                return False

        done, every = self.state["step"], self.cfg.eval.every
        due = {done} if done and (done == self.cfg.steps or (every and done % every == 0)) else set()
        started = {int(p.name.removeprefix("step_")) for p in (self.out / "eval").glob("step_*")
                   if p.name.removeprefix("step_").isdigit()}
        return sorted(s for s in due | started
                      if s <= done and not finished(s) and (self.ckpt_root / f"step_{s}" / "config.json").exists())

    def _check_resume(self, info_path: Path) -> None:
        """A resume continues the run in `out` only under the settings it was trained with: a field that
        shapes training (method, optimizer, data, sampling, batch sizes, ...) must be unchanged (UserError
        naming it); the fields in RESUME_MAY_CHANGE may differ, and each change is noted and recorded in
        train.json under "resumes"."""
        info = json.loads(info_path.read_text())
        old = _flatten({"config": info.get("config", {}), "method": info.get("method", {})})
        for key, default in _flatten({"config": {"arm": None, "reward": asdict(RewardConfig())}}).items():
            old.setdefault(key, default)     # a run started before these fields existed had their defaults
        new = _flatten(json.loads(json.dumps({"config": asdict(self.cfg), "method": self._method_dict()},
                                             default=str)))
        changed = {k: [old.get(k), new.get(k)] for k in sorted(old.keys() | new.keys(), key=lambda k: (k != "method.name", k))
                   if old.get(k) != new.get(k) and k != "config.out"
                   and not (k + ".").startswith("config.method.")}   # compared as the built method's fields
        for key, (was, now) in changed.items():
            field = key.removeprefix("config.")
            if field.split(".")[0] not in RESUME_MAY_CHANGE:
                raise UserError(f"{self.out}: cannot resume: {field} was {was!r} when this run was started, now "
                                f"{now!r} (set it back, or train into a new out directory)")
        if changed:
            print(f"rlvr: note: {self.out}: resuming at step {self.state['step']} with "
                  + ", ".join(f"{k.removeprefix('config.')} {w!r} -> {n!r}" for k, (w, n) in changed.items()),
                  file=sys.stderr)
            info.setdefault("resumes", []).append({"step": self.state["step"], "time": utc_now(),
                                                   "changed": {k.removeprefix("config."): v
                                                               for k, v in changed.items()}})
            write_json_atomic(info_path, info)

    def _vllm_engine(self):
        """The colocated vLLM engine, loaded from the model's source (after a resume: the last checkpoint) and
        then synced from the training model, so that it samples from exactly the weights being trained."""
        from rlvr.harness.sample.vllm_rollout import build_vllm_rollout_engine

        v = self.cfg.vllm
        engine = build_vllm_rollout_engine(self.model_src, self.model, self.tok, seed=self.cfg.seed,
                                           gpu_memory_utilization=v.gpu_memory_utilization,
                                           max_model_len=v.max_model_len, enforce_eager=v.enforce_eager, sleep=v.sleep)
        engine.sync_weights(self.model)
        return engine

    def _log(self, record: dict) -> None:
        """One JSON line per step (always: reports read it), and the same numbers to the trackers `loggers` lists
        (tensorboard, wandb, trackio: harness/train/loggers.py)."""
        with open(self.out / "train_log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self._trackers.log(record)

    # ---- rollouts ------------------------------------------------------------------------------

    def _next_problems(self, k: int) -> list[tuple[Any, Problem]]:
        out = []
        for _ in range(k):
            out.append(self.problems[self.order[self.state["cursor"] % len(self.order)]])
            self.state["cursor"] += 1
        return out

    def _rollouts(self, step: int, engine, pool) -> tuple[list[_Rollout], dict]:
        import torch
        from rlvr.harness.sample.engine import HFEngine

        cfg, g = self.cfg, self.cfg.rollouts_per_prompt
        kept: list[_Rollout] = []
        groups_kept, seen_rewards, rounds, group_id = 0, [], 0, 0
        solved = 0
        total_groups = 0
        finish = []
        gen_s = 0.0
        while groups_kept < cfg.prompts_per_step and rounds <= cfg.max_refill_rounds:
            batch = self._next_problems(cfg.prompts_per_step - groups_kept)
            requests, prompts = [], []
            for task, p in batch:
                prompt = task.prompt(p, None, self.tok)
                prompts.append(prompt)
                requests.append((prompt, [sample_seed(cfg.seed, f"train/{step}/{rounds}", p.id, i) for i in range(g)]))
            # each rollout goes to the verifier pool as soon as it finishes (where the engine can say so), so
            # verification overlaps the decoding of the longer ones
            futures = [[None] * g for _ in batch]

            def submit(i, j, c, batch=batch, futures=futures):
                futures[i][j] = pool.submit(batch[i][0].name, batch[i][1], c.text)

            t_gen = time.monotonic()
            if isinstance(engine, HFEngine):
                comps = engine.generate(requests, self.sampling, on_finish=submit)
            else:
                comps = engine.generate(requests, self.sampling)
            gen_s += time.monotonic() - t_gen
            for i, cs in enumerate(comps):
                for j, c in enumerate(cs):
                    if futures[i][j] is None:
                        submit(i, j, c)
            round_rows: list[_Rollout] = []
            for (task, p), prompt, cs, fs in zip(batch, prompts, comps, futures, strict=True):
                p_ids = self.tok(prompt, add_special_tokens=False)["input_ids"]
                rewards = self._rewards(step, pool, task, p, cs, fs)
                solved += any(rewards)
                total_groups += 1
                for c, r in zip(cs, rewards, strict=True):
                    round_rows.append(_Rollout(task, p, group_id, p_ids, c.token_ids, c.finish_reason, r))
                    finish.append(c.finish_reason)
                seen_rewards += rewards
                group_id += 1
            r = torch.tensor([x.reward for x in round_rows])
            gid = torch.tensor([x.group for x in round_rows])
            keep = self.method.select_rows(r, gid).tolist()
            kept_now = [x for x, k in zip(round_rows, keep, strict=True) if k]
            kept += kept_now
            groups_kept += len({x.group for x in kept_now})
            rounds += 1
            if not self.method.refill:
                break
        if self.cfg.reward.kind == "random":
            right, count = getattr(self, "_verified", (0.0, 0))
            finish_stats = {"verified_reward_mean": right / max(1, count)}
            self._verified = (0.0, 0)
        else:
            finish_stats = {}
        lengths = [len(x.response_ids) for x in kept] or [0]
        stats = {"reward_mean": sum(seen_rewards) / max(1, len(seen_rewards)),
                 "solve_rate": solved / max(1, total_groups), "groups_sampled": total_groups,
                 "groups_kept": groups_kept, "rows_kept": len(kept), "sampling_rounds": rounds,
                 "response_len_mean": sum(lengths) / len(lengths),
                 "truncation_rate": finish.count("length") / max(1, len(finish)), **finish_stats,
                 "time_generate_s": round(gen_s, 3)}
        return kept, stats

    def _rewards(self, step: int, pool, task, problem: Problem, comps, futures, verified: bool = False) -> list[float]:
        """1.0 / 0.0 per rollout. A verdict the verifier could not give (an error: the sandbox did not
        start, a check timed out) is never a reward of 0: it is checked once more, and if it fails again the
        step stops with a one-line error before any update (a resume starts from the last checkpoint).
        With `reward.kind: random` (and not `verified`) the rewards are the random draws instead."""
        from rlvr.harness.verify.pool import retry_errors

        verdicts = retry_errors(pool, [(task, problem, c.text) for c in comps], [f.result().verdict for f in futures])
        bad = next((v for v in verdicts if v.error), None)
        if bad is not None:
            raise UserError(f"step {step + 1}: the verifier could not judge a rollout of {task.name} problem "
                            f"{problem.id} ({bad.reason}); no update was made: fix the cause and rerun the same "
                            f"command to resume from the last checkpoint")
        correct = [1.0 if v.correct else 0.0 for v in verdicts]
        return correct if verified or self.cfg.reward.kind == "verifier" else self._random_rewards(step, problem, correct)

    def _random_rewards(self, step: int, problem: Problem, correct: list[float]) -> list[float]:
        """The random-reward control: Bernoulli(p) per rollout, a pure function of (seed, step, data position,
        problem, rollout) so a resume draws the same; the verifier's rewards are counted for the log."""
        p = self.state["reward_p"]
        self._verified = [a + b for a, b in zip(getattr(self, "_verified", (0.0, 0)), (sum(correct), len(correct)),
                                                strict=True)]
        cursor = self.state["cursor"]
        return [1.0 if random.Random(sample_seed(self.cfg.seed, f"reward/{step}/{cursor}", problem.id, i)).random() < p
                else 0.0 for i in range(len(correct))]

    # ---- update --------------------------------------------------------------------------------

    def _tensors(self, rows: list[_Rollout]):
        """input_ids/attention [R, L] (right-padded), response tokens/mask [R, T], gather positions."""
        import torch

        pad = self.tok.pad_token_id
        seqs = [x.prompt_ids + x.response_ids for x in rows]
        width = max(len(s) for s in seqs)
        t_resp = max(len(x.response_ids) for x in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        tokens = torch.full((len(rows), t_resp), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), t_resp), dtype=torch.float32)
        pos = torch.zeros((len(rows), t_resp), dtype=torch.long)
        for i, (x, s) in enumerate(zip(rows, seqs, strict=True)):
            ids[i, :len(s)] = torch.tensor(s)
            attn[i, :len(s)] = 1
            n = len(x.response_ids)
            tokens[i, :n] = torch.tensor(x.response_ids)
            mask[i, :n] = 1.0
            # the hidden state at position j predicts token j+1
            pos[i] = torch.arange(t_resp).clamp(max=max(n - 1, 0)) + len(x.prompt_ids) - 1
        d = self.device
        return ids.to(d), attn.to(d), tokens.to(d), mask.to(d), pos.to(d)

    def _hidden(self, model, ids, attn, pos):
        """Final hidden states at the positions that predict the response tokens: [R, T, H]."""
        import torch

        backbone = getattr(model, model.base_model_prefix)
        h = backbone(input_ids=ids, attention_mask=attn).last_hidden_state
        return torch.gather(h, 1, pos.unsqueeze(-1).expand(-1, -1, h.shape[-1]))

    def _update(self, step: int, rows: list[_Rollout]) -> dict:
        import torch
        from rlvr.harness.train.token_stats import (
            old_pass_fields,
            one_pass_fields,
            token_stats,
            update_pass_fields,
        )
        from rlvr.methods.aggregation import AggScale
        from rlvr.methods.base import TokenBatch

        cfg, m = self.cfg, self.method
        temp = cfg.sampling.temperature if cfg.sampling.temperature > 0 else 1.0
        weight = self.model.get_output_embeddings().weight
        rewards = torch.tensor([x.reward for x in rows], device=self.device)
        _, group_ids = torch.unique(torch.tensor([x.group for x in rows], device=self.device), return_inverse=True)
        mb = cfg.micro_batch_size

        # behaviour-policy fields, reference log-probs and logging statistics (no gradients); skipped when
        # they equal the update's own forward, detached (`one_pass`)
        one_pass = self._one_pass(len(rows))
        old: dict[str, list] = {}
        ent_sum = top1_sum = tok_sum = 0.0
        with torch.no_grad():
            for s in range(0, len(rows), mb) if not one_pass else ():
                ids, attn, tokens, mask, pos = self._tensors(rows[s:s + mb])
                h = self._hidden(self.model, ids, attn, pos)
                fields = old_pass_fields(m, h, weight, tokens, mask, temperature=temp)
                if self.ref is not None:
                    hr = self._hidden(self.ref, ids, attn, pos)
                    fields["ref_logp"] = token_stats(hr, self.ref.get_output_embeddings().weight, tokens,
                                                     temperature=temp, mask=mask)["logp"]
                log = token_stats(h, weight, tokens, temperature=temp, mask=mask, entropy=True, top_n=1)
                ent_sum += float((log["entropy"] * mask).sum())
                top1_sum += float((log["topk_logp"][..., 0].exp() * mask).sum())
                tok_sum += float(mask.sum())
                for k, v in fields.items():
                    old.setdefault(k, []).append(v)

        def rows_slice(name: str, idx: list[int]):
            """Old fields for chosen rows, re-padded to those rows' response width."""
            chunks = []
            width = max(len(rows[i].response_ids) for i in idx)
            for i in idx:
                t = old[name][i // mb][i % mb]
                pad_shape = (width - t.shape[0],) + tuple(t.shape[1:])
                chunks.append(torch.cat([t[:width], t.new_zeros(pad_shape)]) if t.shape[0] < width else t[:width])
            return torch.stack(chunks)

        full_mask = torch.zeros((len(rows), max(len(x.response_ids) for x in rows)), device=self.device)
        for i, x in enumerate(rows):
            full_mask[i, :len(x.response_ids)] = 1.0
        advantages = m.advantages(rewards, group_ids, full_mask)

        mini = cfg.mini_batch_size or len(rows)
        rng = random.Random(cfg.seed * 1_000_003 + step)
        stats_acc: dict[str, float] = {}
        n_stats = 0
        grad_norms = []
        lr = self._lr(step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        for _ in range(cfg.ppo_epochs):
            order = list(range(len(rows)))
            rng.shuffle(order)
            for ms in range(0, len(order), mini):
                mini_idx = order[ms:ms + mini]
                if one_pass and m.split_invariant and not m.microbatch_weighted:
                    # rows of similar length share a micro-batch (less padding); the mini-batch's gradient is
                    # the same sum whatever the split, to float rounding
                    mini_idx.sort(key=lambda i: len(rows[i].prompt_ids) + len(rows[i].response_ids))
                scale = AggScale.of(full_mask[mini_idx], t_pad=cfg.sampling.max_new_tokens)
                self.opt.zero_grad(set_to_none=True)
                for idx in self._micro_batches(mini_idx, rows):
                    sub = [rows[i] for i in idx]
                    ids, attn, tokens, mask, pos = self._tensors(sub)
                    h = self._hidden(self.model, ids, attn, pos)
                    if one_pass:
                        cur, extra, log = one_pass_fields(m, h, weight, tokens, mask, temperature=temp)
                        ent_sum += float((log["entropy"] * mask).sum())
                        top1_sum += float((log["top1_prob"] * mask).sum())
                        tok_sum += float(mask.sum())
                    else:
                        old_top = rows_slice("old_topk_ids", idx) if "old_topk_ids" in old else None
                        cur = update_pass_fields(m, h, weight, tokens, mask, temperature=temp, old_topk_ids=old_top)
                        extra = {k: rows_slice(k, idx) for k in old}
                    width = mask.shape[1]
                    tb = TokenBatch(logp=cur.pop("logp"), old_logp=extra.pop("old_logp"), mask=mask,
                                    advantages=advantages[idx][:, :width], rewards=rewards[idx],
                                    group_ids=group_ids[idx], agg_scale=scale,
                                    **{k: v for k, v in extra.items() if k in TokenBatch.__dataclass_fields__},
                                    **cur)
                    loss, st = m.loss(tb)
                    loss.backward()
                    for k, v in st.items():
                        stats_acc[k] = stats_acc.get(k, 0.0) + float(v)
                    n_stats += 1
                gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optimizer.grad_clip)
                grad_norms.append(float(gn))
                self.opt.step()
        self.state["step"] = step + 1
        out = {f"method/{k}": v / n_stats for k, v in stats_acc.items()}
        out.update({"entropy": ent_sum / max(tok_sum, 1), "top1_prob": top1_sum / max(tok_sum, 1),
                    "grad_norm": sum(grad_norms) / len(grad_norms), "lr": lr})
        return out

    def _micro_batches(self, idx: list[int], rows: list[_Rollout]) -> list[list[int]]:
        """The update micro-batches of a mini-batch's rows: micro_batch_size rows each, or with
        micro_batch_tokens consecutive rows up to that many prompt + response tokens (`token_budget_split`)."""
        if self.cfg.micro_batch_tokens is None:
            mb = self.cfg.micro_batch_size
            return [idx[s:s + mb] for s in range(0, len(idx), mb)]
        lengths = [len(rows[i].prompt_ids) + len(rows[i].response_ids) for i in idx]
        return token_budget_split(idx, lengths, self.cfg.micro_batch_tokens)

    def _one_pass(self, n_rows: int) -> bool:
        """Whether the behaviour policy's fields equal the update's own forward, detached, so that the separate
        no-grad pass can be skipped: one PPO epoch over one mini-batch (no optimizer step between sampling
        and any forward), rollouts sampled by the training model itself (not vLLM's copy), and no reference
        model (its pass stays). The ratio is then exactly 1, as in TRL's GRPOTrainer, which reuses the
        detached current log-probs in that case."""
        cfg = self.cfg
        return (self.one_pass_allowed and cfg.ppo_epochs == 1 and (cfg.mini_batch_size or n_rows) >= n_rows
                and cfg.rollout_engine == "hf" and self.ref is None)

    def _lr(self, step: int) -> float:
        o = self.cfg.optimizer
        return o.lr * min(1.0, (step + 1) / o.warmup_steps) if o.warmup_steps else o.lr

    # ---- checkpoints and evaluation ------------------------------------------------------------

    def _checkpoint(self, step: int) -> Path:
        import torch

        ckpt = self.ckpt_root / f"step_{step}"
        ckpt.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(ckpt)
        self.tok.save_pretrained(ckpt)
        torch.save(self.opt.state_dict(), ckpt / "optimizer.pt")
        # the method goes with the checkpoint: `rlvr eval` of it records its step and method in run.json
        write_json_atomic(ckpt / "trainer_state.json", {**self.state, "time": utc_now(), "method": self._method_dict()})
        write_json_atomic(ckpt / TRAIN_INFO, {**self._train_info(), "step": step})
        last = self.ckpt_root / "last"
        tmp = self.ckpt_root / ".last.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(ckpt.name)
        tmp.replace(last)  # atomic switch: a crash leaves the previous "last" intact
        return ckpt

    def _prune_checkpoints(self) -> None:
        """With `checkpoint_keep: N`, delete all but the newest N step_* checkpoints (after the newest one was
        written and evaluated, so `last` and a resume never point at a deleted one)."""
        import shutil

        if not self.cfg.checkpoint_keep:
            return
        steps = sorted(int(p.name.removeprefix("step_")) for p in self.ckpt_root.glob("step_*")
                       if p.name.removeprefix("step_").isdigit())
        for step in steps[:-self.cfg.checkpoint_keep]:
            shutil.rmtree(self.ckpt_root / f"step_{step}")

    def _evaluate(self, step: int, ckpt: Path, engine) -> None:
        from rlvr.harness.eval.evaluate import EvalConfig, evaluate

        e = self.cfg.eval
        cfg = EvalConfig(model=str(ckpt), tasks=list(e.tasks), out=str(self.out / "eval" / f"step_{step}"), n=e.n,
                         sampling=SamplingParams(e.temperature, e.top_p, 0,
                                                 e.max_new_tokens or self.cfg.sampling.max_new_tokens),
                         seed=self.cfg.seed, limit=e.limit, data_dir=e.data_dir, workers=self.cfg.workers,
                         task_options=self.cfg.eval_task_options(),
                         label=self.cfg.label or f"{self.method.name} step {step}", step=step,
                         method=self._method_dict(), arm=self.arm, train_seed=self.cfg.seed)
        evaluate(cfg, engine=engine, tokenizer=self.tok, progress=self.progress, print_table=self.progress)

    def _method_dict(self) -> dict:
        return {"name": self.method.name, **dataclasses.asdict(self.method)}


# TrainConfig fields a resume may change: how long, what is evaluated and logged, and the machine side.
RESUME_MAY_CHANGE = frozenset({"steps", "eval", "checkpoint_every", "checkpoint_keep", "loggers", "project",
                               "workers", "verify_deadline_s", "label", "arm", "device"})


def token_budget_split(items: list[Any], lengths: list[int], budget: int) -> list[list[Any]]:
    """Cut `items` (in order) into consecutive micro-batches whose `lengths` sum to at most `budget`; an item
    longer than the budget is a micro-batch of its own.

    verl's dynamic batch size (`use_dynamic_bsz`, `ppo_max_token_len_per_gpu`), which Lp-Reg's official
    runs use, also caps each micro-batch's tokens (counted without padding, as here) but first fixes the
    number of micro-batches, ceil(total / budget), and balances the rows across them; this greedy cut keeps
    the shuffled order instead, so its micro-batches hold about as many tokens, not the same rows.
    Our trainer pads a micro-batch to its longest row, so its memory follows rows x longest, not the sum.
    """
    out: list[list[Any]] = []
    used = 0
    for item, n in zip(items, lengths, strict=True):
        if out and used + n <= budget:
            out[-1].append(item)
            used += n
        else:
            out.append([item])
            used = n
    return out


def _field_value(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def train(cfg: TrainConfig, progress: bool = True, pool=None) -> Path:
    return Trainer(cfg, progress).train(pool)
