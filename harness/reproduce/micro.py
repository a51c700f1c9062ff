"""`rlvr reproduce micro`: the papers' pass@K story end to end on a CPU.

Stages (each timed and printed):
  base   a small Qwen2-architecture model pre-trained from scratch on noisy worked solutions of the
         micro world's three task families (tasks/micro.py). Cached under the cache directory by a
         hash of its recipe, so a second run reuses it and a changed recipe rebuilds it.
  train  every registered method, from that base, with the same budget (steps, prompts, rollouts).
  eval   the base model and every trained model, K samples per held-out problem (K = 1024; 64 with
         --quick), through `rlvr eval`'s run store.
  report `rlvr table` (pass@1 / 16 / 256 / 1024) and `rlvr plot` over all runs, into OUT.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rlvr.harness.sample.models import TinyModelSpec
from rlvr.harness.train.pretrain import PretrainConfig

BASE_RECIPE_VERSION = "base-v1"


@dataclass(frozen=True)
class MicroRecipe:
    families: tuple[str, ...] = ("micro_arith", "micro_order", "micro_code")
    # base model
    base_spec: TinyModelSpec = TinyModelSpec(vocab_size=400, hidden_size=96, num_layers=2, num_heads=4,
                                             num_kv_heads=2, intermediate_size=288, max_position_embeddings=256)
    base_problems_per_family: int = 3000
    base_error_rate: tuple[tuple[str, float], ...] = (("micro_arith", 0.12), ("micro_order", 0.1),
                                                      ("micro_code", 0.15))
    pretrain: PretrainConfig = PretrainConfig(steps=2000, batch_size=64, lr=3e-3, warmup=50)
    # RL: the same budget for every method
    methods: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = (
        ("grpo", (("kl_coef", 0.0),)), ("psr", ()), ("nsr", ()), ("w_reinforce", ()),
        ("lp_reg", ()), ("casp", ()), ("bbg", ()))
    rl_steps: int = 30
    prompts_per_step: int = 16
    rollouts_per_prompt: int = 8
    lr: float = 2e-4
    temperature: float = 1.0
    max_new_tokens: int = 48
    # evaluation
    eval_n: int = 1024
    eval_limit: int = 8             # held-out problems per family
    seed: int = 0

    def base_key(self) -> str:
        blob = json.dumps({"v": BASE_RECIPE_VERSION, "families": self.families, "spec": asdict(self.base_spec),
                           "n": self.base_problems_per_family, "err": self.base_error_rate,
                           "pretrain": asdict(self.pretrain), "seed": self.seed}, sort_keys=True)
        from rlvr.tasks.micro import MICRO_VERSION

        return hashlib.sha256((blob + MICRO_VERSION).encode()).hexdigest()[:16]


QUICK = dict(eval_n=64, eval_limit=6, rl_steps=8)


def base_documents(recipe: MicroRecipe) -> list[tuple[str, str]]:
    from rlvr import tasks

    rng = random.Random(recipe.seed)
    err = dict(recipe.base_error_rate)
    docs = []
    for name in recipe.families:
        t = tasks.get(name)
        docs += [(t.prompt(p), t.solution(p, rng, err[name]))
                 for p in t.train_problems(recipe.base_problems_per_family)]
    return docs


def build_base(recipe: MicroRecipe, cache: Path, progress: bool = True) -> Path:
    """The cached base model for this recipe (built when missing)."""
    from rlvr.harness.sample.models import init_model
    from rlvr.harness.train.pretrain import pretrain

    target = cache / f"base-{recipe.base_key()}"
    if (target / "rlvr_pretrain.json").exists():
        return target
    tmp = cache / f".building-{recipe.base_key()}"
    shutil.rmtree(tmp, ignore_errors=True)
    docs = base_documents(recipe)
    init_model(tmp, recipe.base_spec, corpus=[p + s for p, s in docs])
    pretrain(tmp, docs, recipe.pretrain, progress=progress)
    tmp.replace(target)
    return target


def train_method(recipe: MicroRecipe, base: Path, out: Path, name: str, overrides=(), progress: bool = True,
                 pool=None) -> Path:
    """Train one method from the base with the recipe's budget into OUT/train/NAME; returns its last
    checkpoint (resumes when one exists)."""
    from rlvr.harness.config import from_dict
    from rlvr.harness.train.trainer import TrainConfig, train

    cfg = from_dict(TrainConfig, {
        "model": str(base), "out": str(out / "train" / name), "tasks": list(recipe.families),
        "method": {"name": name, **dict(overrides)}, "prompts_per_step": recipe.prompts_per_step,
        "rollouts_per_prompt": recipe.rollouts_per_prompt, "micro_batch_size": 64,
        "steps": recipe.rl_steps, "optimizer": {"lr": recipe.lr},
        "sampling": {"temperature": recipe.temperature, "max_new_tokens": recipe.max_new_tokens},
        "seed": recipe.seed, "label": name})
    train(cfg, progress=progress, pool=pool)
    return out / "train" / name / "checkpoints" / "last"


def evaluate_model(recipe: MicroRecipe, model: str | Path, out: Path, label: str, progress: bool = True,
                   pool=None) -> Path:
    """K = recipe.eval_n samples per held-out problem into the run directory OUT/runs/LABEL."""
    from rlvr.harness.eval.evaluate import EvalConfig, evaluate
    from rlvr.harness.sample.engine import SamplingParams

    run_dir = out / "runs" / label
    sampling = SamplingParams(recipe.temperature, 1.0, 0, recipe.max_new_tokens)
    evaluate(EvalConfig(model=str(model), tasks=list(recipe.families), out=str(run_dir), n=recipe.eval_n,
                        sampling=sampling, seed=recipe.seed, limit=recipe.eval_limit, chunk=256, label=label,
                        method=None if label == "base" else {"name": label}),
             progress=progress, print_table=False, pool=pool)
    return run_dir


def run_micro(out: str | Path, cache: str | Path, quick: bool = False, progress: bool = True,
              recipe: MicroRecipe | None = None, only: list[str] | None = None) -> dict:
    """Run every stage; returns the per-stage times. Resumable: finished trainings and evaluations are
    picked up from OUT (the trainer resumes from checkpoints, `rlvr eval` from its samples)."""
    from rlvr.harness.report.plots import plot_runs
    from rlvr.harness.report.tables import table
    from rlvr.harness.verify.pool import VerifierPool, preflight

    from rlvr import tasks

    recipe = recipe or MicroRecipe()
    preflight(recipe.families)   # micro_code runs programs: the sandbox must work before anything is built
    if quick:
        recipe = replace(recipe, **QUICK)
    out, cache = Path(out), Path(cache)
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    t0 = time.monotonic()
    base = build_base(recipe, cache, progress)
    times["base model"] = time.monotonic() - t0

    models = {"base": base}
    chosen = [(n, o) for n, o in recipe.methods if only is None or n in only]
    runs = []
    # one verifier pool for every stage: its workers start once and its verdict cache is shared
    with VerifierPool(preload=sorted({type(tasks.get(f)).__module__ for f in recipe.families})) as pool:
        for name, overrides in chosen:
            t0 = time.monotonic()
            models[name] = train_method(recipe, base, out, name, overrides, progress, pool)
            times[f"train {name}"] = time.monotonic() - t0
        for label, model in models.items():
            t0 = time.monotonic()
            runs.append(str(evaluate_model(recipe, model, out, label, progress, pool)))
            times[f"eval {label}"] = time.monotonic() - t0

    t0 = time.monotonic()
    ks = [k for k in (1, 16, 256, 1024) if k <= recipe.eval_n]
    text = table(runs, ks=ks)
    (out / "table.md").write_text(text + "\n")
    (out / "table.csv").write_text(table(runs, ks=[k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
                                                   if k <= recipe.eval_n], fmt="csv"))
    plot_runs(runs, out / "passk.png", title=f"micro world: pass@k of {len(runs)} models "
                                              f"(n={recipe.eval_n} samples per problem)")
    (out / "recipe.json").write_text(json.dumps(asdict(recipe) | {"quick": quick}, indent=2, default=str) + "\n")
    times["report"] = time.monotonic() - t0
    (out / "times.json").write_text(json.dumps(times, indent=2) + "\n")
    print(text)
    print("\nper-stage time (s):")
    for stage, secs in times.items():
        print(f"  {stage:<20} {secs:8.1f}")
    print(f"  {'total':<20} {sum(times.values()):8.1f}")
    return times


__all__ = ["MicroRecipe", "QUICK", "build_base", "evaluate_model", "run_micro", "train_method"]
