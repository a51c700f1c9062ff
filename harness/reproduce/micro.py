"""`rlvr reproduce micro`: the papers' pass@K story end to end on a CPU.

Stages (each timed and printed):
  base   a small Qwen2-architecture model pre-trained from scratch on noisy worked solutions of the
         micro world's three task families (tasks/micro.py). The default recipe's base ships with the
         package (harness/reproduce/assets/micro-base, checked against the hashes in harness/reproduce/assets/micro-base.json
         before use); `rebuild_base=True` (`--rebuild-base`) pre-trains it from scratch and says whether
         the weights came out bit for bit the shipped ones. Other recipes build their base once and cache
         it under the cache directory, keyed by the recipe, the code, the library versions and the CPU
         kernels PyTorch runs (harness/cpu_isa.py), any of which changes the weights.
  train  every registered method, from that base, with the same budget (steps, prompts, rollouts), once
         per training seed (`train_seeds`; runs ARM-sN), and the random-reward control arm `random_reward`:
         GRPO trained on rewards drawn at random with the base model's solve rate on the training prompts
         (measured by the trainer from the base model's rollouts and recorded in its train.json). A method
         that does not beat that control has shown no learning signal.
  eval   the base model and every trained model, K samples per held-out problem (`eval_n`; 64 with
         --quick), through `rlvr eval`'s run store; each run.json records its `arm` and `train_seed`.
  report `rlvr table` and `rlvr plot` over all runs, and the boundary table (boundary.md / boundary.csv:
         per run, the problems the base model never solves in its K samples that the run solves, and the
         reverse), into OUT; then one line per model on whether its per-problem counts equal the committed
         run's (results/micro, or tests/goldens/micro-quick for --quick), and one on the base model.

The budget (seeds, steps, held-out problems, K) is the recipe's: `MicroRecipe` and `QUICK` below;
`estimate_seconds` prints what a recipe costs from the measured per-unit times of `UNIT_SECONDS`.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from rlvr.harness.errors import UserError
from rlvr.harness.sample.models import TinyModelSpec
from rlvr.harness.train.pretrain import PretrainConfig
from rlvr.tasks.loading import sha256_file

BASE_RECIPE_VERSION = "base-v1"
ASSETS = Path(__file__).resolve().parent / "assets"
SHIPPED_BASE = ASSETS / "micro-base"               # the default recipe's base model, package data
SHIPPED_MANIFEST = ASSETS / "micro-base.json"      # its recipe key, fingerprint and per-file sha256
SHIPPED_FILES = ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja", "rlvr_model_spec.json", "rlvr_pretrain.json")
REGRESSION_TOLERANCE = 2.0     # points of pass@k; tests/test_micro_regression.py's tolerance


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
    # training seeds: every method (and the random-reward control) is trained once per seed
    train_seeds: tuple[int, ...] = (0, 1, 2)
    random_reward: bool = True      # the random-reward control arm (GRPO, with grpo's overrides, on random rewards)
    # evaluation
    eval_n: int = 512
    eval_limit: int = 24            # held-out problems per family
    seed: int = 0                   # the base model's and the evaluations' seed (not a training seed)

    def arms(self, only: list[str] | None = None) -> list[tuple[str, str, dict, dict | None]]:
        """(arm, method name, method overrides, reward section or None) of every trained arm; with `only`, the
        named ones among the recipe's methods, the random-reward control and `OPTIONAL_METHODS`."""
        chosen = self.methods if only is None else select_arms(self, only)
        out = [(name, name, dict(over), None) for name, over in chosen]
        if self.random_reward and (only is None or RANDOM_REWARD_ARM in only):
            grpo = dict(dict(self.methods).get("grpo", ()))
            out.append((RANDOM_REWARD_ARM, "grpo", grpo, {"kind": "random"}))
        return out

    def trained_runs(self, only: list[str] | None = None) -> list[tuple[str, str, str, dict, dict | None, int]]:
        """(run label ARM-sSEED, arm, method, overrides, reward, seed) of every training, seed by seed."""
        return [(run_label(arm, seed), arm, name, over, reward, seed) for seed in self.train_seeds
                for arm, name, over, reward in self.arms(only)]

    def base_recipe_key(self) -> str:
        """A hash of what the recipe says about its base model (which base it is, not how it was made)."""
        blob = json.dumps({"v": BASE_RECIPE_VERSION, "families": self.families, "spec": asdict(self.base_spec),
                           "n": self.base_problems_per_family, "err": self.base_error_rate,
                           "pretrain": asdict(self.pretrain), "seed": self.seed}, sort_keys=True)
        from rlvr.tasks.micro import MICRO_VERSION

        return hashlib.sha256((blob + MICRO_VERSION).encode()).hexdigest()[:16]

    def base_key(self) -> str:
        """The base model's cache key: its recipe and everything else that decides its weights
        (`build_environment()`: the code, the library versions, the CPU kernels)."""
        blob = json.dumps({"recipe": self.base_recipe_key(), **build_environment()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_environment() -> dict:
    """What besides a recipe decides the bits of a model built or trained here: a hash of the code (every
    source file of harness, tasks and methods, so an edited tree never shares a key with a clean one),
    the versions of torch, transformers and tokenizers, and the instruction set of PyTorch's CPU kernels."""
    from rlvr.harness import cpu_isa
    from rlvr.harness.provenance import package_versions, source_digest

    versions = package_versions()
    return {"code": source_digest(), "harness": versions["rlvr-harness"],
            **{name: versions[name] for name in ("torch", "transformers", "tokenizers")},
            "cpu_capability": cpu_isa.current()}


RANDOM_REWARD_ARM = "random_reward"


def run_label(arm: str, seed: int) -> str:
    """The run (and training folder) name of one seed of an arm: grpo-s1."""
    return f"{arm}-s{seed}"


QUICK = dict(eval_n=64, eval_limit=6, rl_steps=8, train_seeds=(0, 1, 2))

# Measured seconds per unit of work on the reference machine (2 cores, the shipped base, the trainer at
# the time of the last results/micro run), for `estimate_seconds`: one RL step of one training run
# (prompts_per_step x rollouts_per_prompt rollouts and the update) per method, the random-reward p
# measurement per sampled rollout, one evaluation sample, and the fixed costs (per training: loading,
# set-up, the checkpoint). Derived from results/micro/times.json and tests/goldens/micro-quick/times.json of
# the one-seed recipe (GRPO ran first there and paid the warm-ups, so its rate is an upper bound for its
# later seeds); update them from the times.json of a new run.
UNIT_SECONDS = {"step": {"grpo": 0.94, "psr": 0.28, "nsr": 0.23, "w_reinforce": 0.30, "lp_reg": 0.30,
                         "casp": 0.32, "bbg": 1.65, "other": 0.5}, "training": 1.1,
                "p_rollout": 0.002, "eval_sample": 10.4 / (8 * 3 * 1024), "eval_fixed": 0.4,
                "base_eval_factor": 2.4, "base_eval_extra": 1.5, "report": 3.0}


def estimate_seconds(recipe: MicroRecipe, only: list[str] | None = None) -> dict[str, float]:
    """The expected seconds of each stage of `run_micro` for `recipe` (already with QUICK applied for a
    quick run), from `UNIT_SECONDS`: {"train": ..., "eval": ..., "report": ..., "total": ...}."""
    u = UNIT_SECONDS
    train = 0.0
    for _, _arm, name, _, reward, _ in recipe.trained_runs(only):
        train += u["training"] + recipe.rl_steps * u["step"].get(name, u["step"]["other"])
        if reward is not None:
            train += 64 * recipe.rollouts_per_prompt * u["p_rollout"]
    per_eval = recipe.eval_n * recipe.eval_limit * len(recipe.families) * u["eval_sample"] + u["eval_fixed"]
    # the base model's evaluation comes first and costs more (measured: 25.4 s against 10.5 s, 3.9 against 0.7)
    ev = len(recipe.trained_runs(only)) * per_eval + u["base_eval_factor"] * per_eval + u["base_eval_extra"]
    out = {"train": train, "eval": ev, "report": u["report"]}
    return {k: round(v, 1) for k, v in {**out, "total": sum(out.values())}.items()}


# Arms `--methods` can select beyond the recipe's default list (the main job runs only the default):
# the methods people compare against and the GRPO presets, each at its documented defaults.
OPTIONAL_METHODS: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = (
    ("dapo", ()), ("dr_grpo", ()), ("gspo", ()), ("cispo", ()), ("rloo", ()), ("reinforce_pp", ()),
    ("reinforce_pp_baseline", ()), ("clip_cov", ()), ("kl_cov", ()), ("passk", ()), ("gmpo", ()))


def select_arms(recipe: MicroRecipe, only: list[str] | None) -> list[tuple[str, tuple]]:
    """The recipe's methods (only None), else the named arms among those and `OPTIONAL_METHODS`, in that
    order; an unknown name is a UserError listing the known ones."""
    if only is None:
        return list(recipe.methods)
    arms = list(recipe.methods) + [a for a in OPTIONAL_METHODS if a[0] not in dict(recipe.methods)]
    unknown = [n for n in only if n not in dict(arms) and n != RANDOM_REWARD_ARM]
    if unknown:
        raise UserError(f"--methods: unknown method {', '.join(map(repr, unknown))} for the micro world; known: "
                        f"{', '.join(n for n, _ in arms)}")
    return [(n, o) for n, o in arms if n in only]


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


def build_base(recipe: MicroRecipe, cache: Path, progress: bool = True, rebuild: bool = False) -> Path:
    """The cached base model for this recipe, pre-trained from scratch when missing (or with `rebuild`)."""
    from rlvr.harness.sample.models import init_model
    from rlvr.harness.train.pretrain import pretrain

    key = recipe.base_key()
    target = cache / f"base-{key}"
    if (target / "rlvr_pretrain.json").exists() and not rebuild:
        return target
    tmp = cache / f".building-{key}"
    shutil.rmtree(tmp, ignore_errors=True)
    docs = base_documents(recipe)
    init_model(tmp, recipe.base_spec, corpus=[p + s for p, s in docs])
    summary = pretrain(tmp, docs, recipe.pretrain, progress=progress)
    env = build_environment()
    summary["built_with"] = {k: env[k] for k in ("torch", "transformers", "tokenizers", "cpu_capability")}
    (tmp / "rlvr_pretrain.json").write_text(json.dumps(summary, indent=2) + "\n")   # not in the fingerprint
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    return target


# ---- the shipped base ----------------------------------------------------------------------------

def shipped_manifest(manifest: Path | None = None) -> dict | None:
    """The shipped base's manifest (recipe key, fingerprint, per-file sha256), None when absent."""
    manifest = manifest or SHIPPED_MANIFEST
    try:
        return json.loads(manifest.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{manifest}: unreadable ({e}); reinstall rlvr-harness or pass --rebuild-base") from None


def check_shipped_base(model_dir: Path | None = None, manifest: Path | None = None) -> str:
    """Check the shipped base's files against its manifest; returns its fingerprint. A missing or changed
    file is a UserError (one line) that names it."""
    from rlvr.harness.sample.models import model_fingerprint

    model_dir, manifest = model_dir or SHIPPED_BASE, manifest or SHIPPED_MANIFEST
    info = shipped_manifest(manifest)
    if info is None:
        raise UserError(f"the shipped micro base is missing ({manifest} not found); reinstall rlvr-harness or "
                        f"pass --rebuild-base")
    for name, want in sorted(info["files"].items()):
        f = model_dir / name
        if not f.is_file():
            raise UserError(f"the shipped micro base is damaged: {f} is missing; reinstall rlvr-harness or pass "
                            f"--rebuild-base")
        if sha256_file(f) != want:
            raise UserError(f"the shipped micro base is damaged: {f} does not match its sha256 in {manifest.name}; "
                            f"reinstall rlvr-harness or pass --rebuild-base")
    sha = model_fingerprint(str(model_dir))["sha256"]
    if sha != info["sha256"]:
        raise UserError(f"the shipped micro base is damaged: its weights and tokenizer hash to {sha[:16]}, not "
                        f"{info['sha256'][:16]} ({manifest.name}); reinstall rlvr-harness or pass --rebuild-base")
    return sha


def ship_base(model_dir: str | Path, dest: Path | None = None, manifest: Path | None = None,
              recipe: MicroRecipe | None = None) -> dict:
    """Copy a base built by `build_base` into the package (the files of SHIPPED_FILES; rlvr_pretrain.json
    without its wall-clock seconds) and write its manifest. For maintainers, after a change of the base
    recipe: `python -c "from rlvr.harness.reproduce.micro import ship_base; ship_base('.cache/rlvr/base-KEY')"`."""
    from rlvr.harness import provenance
    from rlvr.harness.sample.models import model_fingerprint

    src, dest, manifest = Path(model_dir), dest or SHIPPED_BASE, manifest or SHIPPED_MANIFEST
    recipe = recipe or MicroRecipe()
    pretrain_info = json.loads((src / "rlvr_pretrain.json").read_text())
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in SHIPPED_FILES:
        if name == "rlvr_pretrain.json":
            kept = {k: v for k, v in pretrain_info.items() if k not in ("seconds", "built_with")}
            (dest / name).write_text(json.dumps(kept, indent=2) + "\n")
        else:
            shutil.copyfile(src / name, dest / name)
    env = build_environment()      # where the build did not record them: this process's (run it as the build ran)
    built = {k: env[k] for k in ("torch", "transformers", "tokenizers", "cpu_capability")}
    info = {"recipe_key": recipe.base_recipe_key(), "sha256": model_fingerprint(str(dest))["sha256"],
            "files": {name: sha256_file(dest / name) for name in SHIPPED_FILES},
            "built_with": {**built, **pretrain_info.get("built_with", {}), "cpu": provenance.cpu_name(),
                           "pretrain_seconds": pretrain_info.get("seconds"), "harness_git": provenance.git_state()}}
    manifest.write_text(json.dumps(info, indent=2) + "\n")
    return info


def compare_weights(a: str | Path, b: str | Path) -> dict:
    """Whether two model directories hold the same weights bit for bit: {"identical", "tensors",
    "differing", "max_abs_diff", "tokenizer_identical"} (max_abs_diff over the tensors both have)."""
    import torch
    from rlvr.harness.sample.models import fingerprint_files
    from safetensors.torch import load_file

    wa, wb = load_file(str(Path(a) / "model.safetensors")), load_file(str(Path(b) / "model.safetensors"))
    differing, max_abs = sorted(set(wa) ^ set(wb)), 0.0
    for name in sorted(set(wa) & set(wb)):
        x, y = wa[name], wb[name]
        if x.dtype != y.dtype or x.shape != y.shape:
            differing.append(name)
        elif not torch.equal(x.contiguous().view(-1).view(torch.uint8), y.contiguous().view(-1).view(torch.uint8)):
            differing.append(name)
            max_abs = max(max_abs, (x.double() - y.double()).abs().max().item())
    toks = [{f.name: f.read_bytes() for f in fingerprint_files(d)[1]} for d in (a, b)]
    return {"identical": not differing, "tensors": len(set(wa) | set(wb)), "differing": len(differing),
            "max_abs_diff": max_abs, "tokenizer_identical": toks[0] == toks[1]}


def describe_rebuild(diff: dict) -> str:
    """One line on a rebuilt base against the shipped one."""
    tok = "" if diff["tokenizer_identical"] else "; its tokenizer files differ"
    if diff["identical"]:
        return f"the rebuilt base reproduces the shipped weights bit for bit ({diff['tensors']} tensors){tok}"
    return (f"the rebuilt base does NOT reproduce the shipped weights: {diff['differing']} of {diff['tensors']} "
            f"tensors differ, max abs difference {diff['max_abs_diff']:.3g}{tok}")


def micro_base(recipe: MicroRecipe, cache: Path, progress: bool = True, rebuild: bool = False) -> tuple[Path, str]:
    """(base model directory, one line on where it came from) for this recipe: the shipped base when the
    recipe's base is the shipped one's (checked), else (or with `rebuild`) a base built in the cache."""
    from rlvr.harness.sample.models import model_fingerprint

    info = shipped_manifest()
    ours = info is not None and info.get("recipe_key") == recipe.base_recipe_key()
    if info is None and not rebuild and recipe.base_recipe_key() == MicroRecipe().base_recipe_key():
        check_shipped_base()          # the default recipe's base must ship: says that it is missing
    if ours and not rebuild:
        sha = check_shipped_base()
        return SHIPPED_BASE, f"base model: the shipped base, weights and tokenizer as recorded (sha256 {sha[:16]})"
    path = build_base(recipe, Path(cache), progress, rebuild=rebuild)
    sha = model_fingerprint(str(path))["sha256"]
    if not ours:
        why = "no shipped base was found" if info is None else "this recipe's base is not the shipped one"
        return path, f"base model: built for this recipe in {path} (sha256 {sha[:16]}; {why})"
    if sha == info["sha256"]:
        return path, (f"base model: rebuilt from scratch in {path}; weights and tokenizer equal the shipped base "
                      f"bit for bit (sha256 {sha[:16]})")
    if not (SHIPPED_BASE / "model.safetensors").is_file():
        return path, f"base model: rebuilt from scratch in {path} (sha256 {sha[:16]}); the shipped base is missing"
    return path, f"base model: rebuilt from scratch in {path} (sha256 {sha[:16]}); " \
                 f"{describe_rebuild(compare_weights(SHIPPED_BASE, path))}"


def train_method(recipe: MicroRecipe, base: Path, out: Path, name: str, overrides=(), progress: bool = True,
                 pool=None, seed: int | None = None, label: str | None = None, arm: str | None = None,
                 reward: dict | None = None) -> Path:
    """Train one method from the base with the recipe's budget and training seed `seed` (default: the
    recipe's first) into OUT/train/LABEL (default: NAME); returns its last checkpoint (resumes when one
    exists). `reward`: the trainer's `reward:` section (e.g. {"kind": "random"})."""
    from rlvr.harness.config import from_dict
    from rlvr.harness.train.trainer import TrainConfig, train

    cfg = from_dict(TrainConfig, {
        "model": str(base), "out": str(out / "train" / (label or name)), "tasks": list(recipe.families),
        "method": {"name": name, **dict(overrides)}, "prompts_per_step": recipe.prompts_per_step,
        "rollouts_per_prompt": recipe.rollouts_per_prompt, "micro_batch_size": 64,
        "steps": recipe.rl_steps, "optimizer": {"lr": recipe.lr},
        "sampling": {"temperature": recipe.temperature, "max_new_tokens": recipe.max_new_tokens},
        "seed": recipe.train_seeds[0] if seed is None else seed, "label": label or name, "arm": arm or name,
        **({"reward": reward} if reward else {})})
    train(cfg, progress=progress, pool=pool)
    return out / "train" / (label or name) / "checkpoints" / "last"


def evaluate_model(recipe: MicroRecipe, model: str | Path, out: Path, label: str, progress: bool = True,
                   pool=None, method: str | None = None, arm: str | None = None, train_seed: int | None = None) -> Path:
    """K = recipe.eval_n samples per held-out problem into the run directory OUT/runs/LABEL (`method`: the
    trained method's name, default LABEL unless it is the base; `arm`, `train_seed`: run.json's grouping,
    by default the checkpoint's own)."""
    from rlvr.harness.eval.evaluate import EvalConfig, evaluate
    from rlvr.harness.sample.engine import SamplingParams

    run_dir = out / "runs" / label
    sampling = SamplingParams(recipe.temperature, 1.0, 0, recipe.max_new_tokens)
    evaluate(EvalConfig(model=str(model), tasks=list(recipe.families), out=str(run_dir), n=recipe.eval_n,
                        sampling=sampling, seed=recipe.seed, limit=recipe.eval_limit, chunk=256, label=label,
                        method=None if label == "base" else {"name": method or label},
                        arm=arm or ("base" if label == "base" else None), train_seed=train_seed),
             progress=progress, print_table=False, pool=pool)
    return run_dir


def micro_metric_columns(eval_n: int) -> list:
    """The cells of OUT/metrics.md, the metrics beside pass@k (docs/metrics.md): majority voting over 16 and
    over all n samples, G-Pass@16 at thresholds 0.5 and 1, mG-Pass@16, and the no-answer and truncation rates."""
    from rlvr.harness.report.columns import parse_columns

    k = min(16, eval_n)
    return parse_columns(f"pass@1,maj@{k},maj@{eval_n},gpass@{k}/0.5,gpass@{k}/1,mgpass@{k},no-answer,truncated")


OUT_STAMP = "rlvr_micro_env.json"     # in OUT: what made the trainings and runs there (resumes must match)


def check_out_environment(out: Path, env: dict) -> None:
    """A resume picks up finished trainings and evaluations in OUT: only when they were made by the same
    code, libraries, CPU kernels and base model. Records `env` in OUT on the first run."""
    stamp = out / OUT_STAMP
    if stamp.exists():
        old = json.loads(stamp.read_text())
        changed = [k for k in sorted(set(old) | set(env)) if old.get(k) != env.get(k)]
        if changed:
            raise UserError(f"{out} holds a run made with another {', '.join(changed)} ({stamp}); use another --out "
                            f"or delete it")
        return
    stamp.write_text(json.dumps(env, indent=2) + "\n")


def committed_dir(quick: bool) -> Path:
    """Where the committed run of the main job is: results/micro, or tests/goldens/micro-quick for --quick
    (in a git checkout; an installed package has neither)."""
    from rlvr.harness.provenance import REPO_ROOT

    return REPO_ROOT / ("tests/goldens/micro-quick" if quick else "results/micro")


def _counts(metrics_file: Path) -> dict[str, dict[str, tuple[int, int]]]:
    data = json.loads(metrics_file.read_text())
    return {t: {p: (int(v[0]), int(v[1])) for p, v in m["problems"].items()} for t, m in data["tasks"].items()}


def compare_with_committed(out: Path, labels: list[str], committed: Path, recipe_json: dict | None = None,
                           tolerance: float = REGRESSION_TOLERANCE) -> list[str]:
    """One line per evaluated model on whether its per-problem (n, c) counts equal those of the committed
    run of the same label, and, where they differ, whether `rlvr compare` (the regression test's check,
    run both ways) finds a pass@k change beyond `tolerance` points; then one line on the whole table."""
    from rlvr.harness.report.compare import compare_runs

    if not (committed / "runs").is_dir():
        return [f"committed table: {committed} not found (it is in the git checkout, not in an installed "
                f"package): not compared"]
    if recipe_json is not None and (committed / "recipe.json").exists():
        theirs = json.loads((committed / "recipe.json").read_text())
        ours = json.loads(json.dumps(recipe_json, default=str))
        if theirs != ours:
            diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            return [f"committed table: not compared: this run's recipe differs from {committed / 'recipe.json'} "
                    f"({', '.join(diff)})"]
    lines, same_all = [], True
    for label in labels:
        mine, theirs = out / "runs" / label, committed / "runs" / label
        if not (theirs / "metrics.json").exists():
            lines.append(f"{label}: no committed run in {committed / 'runs'}: not compared")
            same_all = False
            continue
        a, b = _counts(mine / "metrics.json"), _counts(theirs / "metrics.json")
        if a == b:
            lines.append(f"{label}: matches the committed table digit for digit (every per-problem (n, c) count)")
            continue
        same_all = False
        parts = []
        for task in sorted(set(a) | set(b)):
            if task not in a or task not in b:
                parts.append(f"{task} only in {'this run' if task in a else 'the committed run'}")
                continue
            ids = set(a[task]) | set(b[task])
            differ = sum(a[task].get(i) != b[task].get(i) for i in ids)
            if differ:
                parts.append(f"{task} {differ} of {len(ids)} problems")
        try:
            flagged = [f"{r.task} pass@{r.k} {'drop' if direction == 'down' else 'rise'} {100 * abs(r.diff):.1f}"
                       for direction, (base, cand) in (("down", (theirs, mine)), ("up", (mine, theirs)))
                       for r in compare_runs(str(base), str(cand), tolerance=tolerance).regressions]
        except UserError as e:
            lines.append(f"{label}: differs from the committed counts ({'; '.join(parts)}); not comparable: {e}")
            continue
        verdict = (f"within the regression test's statistical tolerance ({tolerance:g} points, no pass@k change "
                   f"flagged either way)" if not flagged else
                   f"beyond the regression test's tolerance: {', '.join(flagged[:4])}"
                   f"{' ...' if len(flagged) > 4 else ''} points")
        lines.append(f"{label}: differs from the committed counts ({'; '.join(parts)}); {verdict}")
    lines.append("table: matches the committed table digit for digit" if same_all else
                 "table: differs from the committed table (per model above)")
    return lines


# ---- the learning-signal check ---------------------------------------------------------------------

LEARNING_ALPHA = 0.05          # one-sided level of "the arm beats the base model / the random-reward control"


def _pass1(runs: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """{task: {problem id: [S] pass@1 (c / n) of each run}} over the problems every run judged."""
    from rlvr.harness.report.metrics import run_counts
    from rlvr.harness.runs.store import Run

    counts = [run_counts(Run.open(r)) for r in runs]
    out = {}
    for task in sorted(set.intersection(*(set(c) for c in counts))):
        ids = sorted(set.intersection(*(set(p for p, (n, _) in c[task].items() if n > 0) for c in counts)))
        if ids:
            out[task] = {p: np.array([c[task][p][1] / c[task][p][0] for c in counts]) for p in ids}
    return out


def beats(runs: list[str], others: list[str], iterations: int = 4000, seed: int = 0,
          alpha: float = LEARNING_ALPHA) -> dict:
    """Whether the runs of one arm (one per training seed) beat the runs of another (its seeds; one run for
    the base model) in mean pass@1 over the problems both judged, macro-averaged over the tasks: the seed
    mean of one minus the other's, with a two-level paired bootstrap (the seeds of each side with
    replacement, then the problems of each task with replacement, the same draw for both sides).
    Returns {"diff", "lo", "hi" (the alpha and 1-alpha quantiles), "p" (the share of resampled
    differences <= 0, the one-sided p of "beats"), "p_below" (the share >= 0, the one-sided p of "is
    beaten"), "beats" (p < alpha), "seeds", "problems", "tasks": {task: {"diff", "p", "p_below"}}}."""
    a, b = _pass1(runs), _pass1(others)
    tasks = [t for t in a if t in b]
    if not tasks:
        raise UserError(f"{runs[0]} and {others[0]} share no judged problem")
    rng = np.random.default_rng(seed)

    def ps(boot: np.ndarray) -> tuple[float, float]:
        return (float((np.count_nonzero(boot <= 0) + 1) / (iterations + 1)),
                float((np.count_nonzero(boot >= 0) + 1) / (iterations + 1)))

    boot = np.zeros(iterations)
    point, per_task, problems = 0.0, {}, 0
    for task in tasks:
        ids = [p for p in a[task] if p in b[task]]
        problems += len(ids)
        A = np.stack([a[task][p] for p in ids], axis=1)      # [S_a, P]
        B = np.stack([b[task][p] for p in ids], axis=1)      # [S_b, P]
        d_task = float(A.mean() - B.mean())
        point += d_task
        sa = rng.integers(A.shape[0], size=(iterations, A.shape[0]))
        sb = rng.integers(B.shape[0], size=(iterations, B.shape[0]))
        d = A[sa].mean(axis=1) - B[sb].mean(axis=1)          # [iterations, P]: seed-resampled per-problem differences
        idx = rng.integers(len(ids), size=(iterations, len(ids)))
        task_boot = np.take_along_axis(d, idx, axis=1).mean(axis=1)
        boot += task_boot
        up, down = ps(task_boot)
        per_task[task] = {"diff": d_task, "p": up, "p_below": down}
    boot /= len(tasks)
    point /= len(tasks)
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    up, down = ps(boot)
    return {"diff": point, "lo": float(lo), "hi": float(hi), "p": up, "p_below": down, "beats": up < alpha,
            "seeds": len(runs), "problems": problems, "tasks": per_task}


def moved(runs: list[str], base: list[str], iterations: int = 20000, seed: int = 0) -> dict:
    """Whether an arm moved away from the base model at all: for each of its runs (seeds) and each task, the
    two-sided paired bootstrap p of "its mean pass@1 differs from the base's" (`beats` of that run alone),
    and the smallest of them, Bonferroni-corrected over runs x tasks. A run whose weights are the base's
    (a loss that is zero, an optimizer that never steps) samples exactly the base's completions (the
    evaluations share their sample seeds) and has p = 1; a trained seed moves by several points on some task
    even where the seeds' mean does not (training seeds pull different ways). Returns {"p", "run", "task",
    "diff"} (where the smallest p is)."""
    best = {"p": 1.0, "run": None, "task": None, "diff": 0.0}
    tests = 0
    for run in runs:
        r = beats([run], base, iterations=iterations, seed=seed)
        for task, t in r["tasks"].items():
            tests += 1
            p = min(1.0, 2 * min(t["p"], t["p_below"]))
            if p < best["p"] or best["run"] is None:
                best = {"p": p, "run": Path(run).name, "task": task, "diff": t["diff"]}
    best["p"] = min(1.0, best["p"] * max(tests, 1))
    return best


def signal_changes(golden: dict, now: dict, strong: float, alpha: float = LEARNING_ALPHA) -> list[str]:
    """Where a golden `beats` result (of an arm against the base or the control) shows a clear difference,
    overall or on a task, in either direction (one-sided p below `strong`), whether `now` still shows it
    (p below `alpha`): one line per difference that is gone. A method that stopped learning loses them all."""
    lost = []
    scopes = [("overall", golden, now)] + [(t, g, now.get("tasks", {}).get(t)) for t, g in
                                           golden.get("tasks", {}).items()]
    for scope, g, n in scopes:
        for key, word in (("p", "above"), ("p_below", "below")):
            if g.get(key, 1.0) < strong and (n is None or n[key] >= alpha):
                was = f"{100 * g['diff']:+.1f} points (p = {g[key]:.4f})"
                got = "no result" if n is None else f"{100 * n['diff']:+.1f} (p = {n[key]:.3f})"
                lost.append(f"{scope}: the golden was {word} by {was}, this run {got}")
    return lost


def arm_runs(out: Path, arm: str) -> list[str]:
    """The run directories of one arm in OUT/runs (its seeds, by run.json's `arm`; the base: runs/base)."""
    found = []
    for d in sorted((Path(out) / "runs").iterdir()):
        try:
            info = json.loads((d / "run.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (info.get("arm") or info.get("label")) == arm and (d / "metrics.json").exists():
            found.append(str(d))
    return found


def learning_signal(out: Path, arms: list[str] | None = None, control: str = RANDOM_REWARD_ARM) -> dict[str, dict]:
    """For each trained arm in OUT: `beats` against the base model and against the random-reward control
    (when OUT has one): {arm: {"base": {...}, "control": {...}}}."""
    out = Path(out)
    base = arm_runs(out, "base")
    if not base:
        raise UserError(f"{out / 'runs'}: no base run")
    names = arms if arms is not None else sorted({json.loads((d / "run.json").read_text()).get("arm")
                                                  for d in (out / "runs").iterdir() if (d / "run.json").exists()}
                                                 - {"base", None})
    ctrl = arm_runs(out, control)
    result = {}
    for arm in names:
        runs = arm_runs(out, arm)
        if not runs:
            raise UserError(f"{out / 'runs'}: no run of arm {arm}")
        result[arm] = {"base": beats(runs, base)}
        if ctrl and arm != control:
            result[arm]["control"] = beats(runs, ctrl)
        result[arm]["moved"] = moved(runs, base)
    return result


def learning_lines(signal: dict[str, dict]) -> list[str]:
    """One line per arm: its mean pass@1 difference from the base and the control, with the verdict."""
    def part(name: str, r: dict) -> str:
        return (f"vs {name} {100 * r['diff']:+.1f} points [{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}] "
                f"(p = {r['p']:.3f}: {'beats' if r['beats'] else 'does not beat'})")

    def where(m: dict) -> str:
        return (f"moved from the base: {m['run']} {m['task']} {100 * m['diff']:+.1f} points (p = {m['p']:.3f}, "
                f"Bonferroni over seeds x tasks)" if m["run"] else "moved from the base: no run")

    return [f"{arm} ({v['base']['seeds']} seeds): " + "; ".join(part(k if k == "base" else "random reward", r)
                                                                 for k, r in v.items() if k != "moved")
            + f"; {where(v['moved'])}" for arm, v in signal.items()]


def run_micro(out: str | Path, cache: str | Path, quick: bool = False, progress: bool = True,
              recipe: MicroRecipe | None = None, only: list[str] | None = None, rebuild_base: bool = False,
              committed: str | Path | None = None, seeds: list[int] | None = None) -> dict:
    """Run every stage; returns the per-stage times. Resumable: finished trainings and evaluations are
    picked up from OUT (the trainer resumes from checkpoints, `rlvr eval` from its samples) when OUT was
    made with the same code, libraries, CPU kernels and base model. `committed`: the committed run to
    compare with (default: `committed_dir(quick)`); `seeds`: the training seeds (default: the recipe's)."""
    from rlvr.harness import cpu_isa
    from rlvr.harness.report.plots import plot_runs
    from rlvr.harness.report.tables import table
    from rlvr.harness.sample.models import model_fingerprint
    from rlvr.harness.verify.pool import VerifierPool, preflight

    from rlvr import tasks

    recipe = recipe or MicroRecipe()
    if only is not None:
        recipe.arms(only)        # an unknown name is a one-line error before anything is built
    preflight(recipe.families)   # micro_code runs programs: the sandbox must work before anything is built
    if quick:
        recipe = replace(recipe, **QUICK)
    if seeds:
        recipe = replace(recipe, train_seeds=tuple(seeds))
    out, cache = Path(out), Path(cache)
    note = cpu_isa.note()
    print(f"PyTorch CPU kernels: {cpu_isa.current()}" + (" (pinned)" if note is None else ""), flush=True)
    if note:
        print(f"rlvr: note: {note}", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    t0 = time.monotonic()
    base, base_line = micro_base(recipe, cache, progress, rebuild=rebuild_base)
    times["base model"] = time.monotonic() - t0
    print(base_line, flush=True)
    check_out_environment(out, {**build_environment(), "base": model_fingerprint(str(base))["sha256"]})

    est = estimate_seconds(recipe, only)
    print(f"expected time on 2 cores: training {est['train']:.0f} s, evaluation {est['eval']:.0f} s, total "
          f"{est['total']:.0f} s ({len(recipe.train_seeds)} training seeds)", flush=True)
    models: dict[str, tuple] = {"base": (base, None, "base", None)}
    chosen = recipe.trained_runs(only)
    runs = []
    # one verifier pool for every stage: its workers start once and its verdict cache is shared
    with VerifierPool(preload=sorted({type(tasks.get(f)).__module__ for f in recipe.families})) as pool:
        for label, arm, name, overrides, reward, seed in chosen:
            t0 = time.monotonic()
            ckpt = train_method(recipe, base, out, name, tuple(overrides.items()), progress, pool, seed=seed,
                                label=label, arm=arm, reward=reward)
            models[label] = (ckpt, name, arm, seed)
            times[f"train {label}"] = time.monotonic() - t0
        for label, (model, name, arm, seed) in models.items():
            t0 = time.monotonic()
            runs.append(str(evaluate_model(recipe, model, out, label, progress, pool, method=name, arm=arm,
                                           train_seed=seed)))
            times[f"eval {label}"] = time.monotonic() - t0

    t0 = time.monotonic()
    ks = sorted({k for k in (1, 16, 256, 1024) if k <= recipe.eval_n} | {recipe.eval_n})
    text = table(runs, ks=ks)
    (out / "table.md").write_text(text + "\n")
    (out / "table.csv").write_text(table(runs, ks=[k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
                                                   if k <= recipe.eval_n], fmt="csv"))
    (out / "metrics.md").write_text(table(runs, ks=micro_metric_columns(recipe.eval_n)) + "\n")
    plot_runs(runs, out / "passk.png", title=f"micro world: pass@k of {len(runs)} models "
                                              f"(n={recipe.eval_n} samples per problem)")
    from rlvr.harness.report.boundary import boundary, boundary_csv, boundary_md

    rows = boundary(str(out / "runs" / "base"), runs[1:])
    (out / "boundary.md").write_text(boundary_md(rows, "base") + "\n")
    (out / "boundary.csv").write_text(boundary_csv(rows))
    signal = learning_signal(out, [arm for arm, *_ in recipe.arms(only)])
    learning = learning_lines(signal)
    (out / "learning.json").write_text(json.dumps(signal, indent=2) + "\n")
    recipe_json = asdict(recipe) | {"quick": quick}
    (out / "recipe.json").write_text(json.dumps(recipe_json, indent=2, default=str) + "\n")
    times["report"] = time.monotonic() - t0
    (out / "times.json").write_text(json.dumps(times, indent=2) + "\n")
    print(text)
    print("\nper-stage time (s):")
    for stage, secs in times.items():
        print(f"  {stage:<20} {secs:8.1f}")
    print(f"  {'total':<20} {sum(times.values()):8.1f}")
    print(f"\nlearning signal: mean pass@1 over the seeds, minus the base model's and the random-reward control's "
          f"(two-level paired bootstrap, one-sided level {LEARNING_ALPHA:g}):")
    for line in learning:
        print(f"  {line}")
    committed = Path(committed) if committed is not None else committed_dir(quick)
    print(f"\nagainst the committed run ({committed}):")
    print(f"  {base_line}")
    for line in compare_with_committed(out, list(models), committed, recipe_json):
        print(f"  {line}")
    return times


__all__ = ["MicroRecipe", "QUICK", "RANDOM_REWARD_ARM", "REGRESSION_TOLERANCE", "SHIPPED_BASE", "UNIT_SECONDS",
           "arm_runs", "beats", "build_base", "signal_changes", "build_environment", "estimate_seconds", "learning_signal", "moved", "run_label",
           "check_shipped_base", "compare_weights", "compare_with_committed", "evaluate_model", "micro_base",
           "run_micro", "ship_base", "train_method", "OPTIONAL_METHODS", "select_arms"]
