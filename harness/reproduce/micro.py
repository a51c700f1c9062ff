"""`rlvr reproduce micro`: the papers' pass@K story end to end on a CPU.

Stages (each timed and printed):
  base   a small Qwen2-architecture model pre-trained from scratch on noisy worked solutions of the
         micro world's three task families (tasks/micro.py). The default recipe's base ships with the
         package (harness/reproduce/assets/micro-base, checked against the hashes in harness/reproduce/assets/micro-base.json
         before use); `rebuild_base=True` (`--rebuild-base`) pre-trains it from scratch and says whether
         the weights came out bit for bit the shipped ones. Other recipes build their base once and cache
         it under the cache directory, keyed by the recipe, the code, the library versions and the CPU
         kernels PyTorch runs (harness/cpu_isa.py), any of which changes the weights.
  train  every registered method, from that base, with the same budget (steps, prompts, rollouts).
  eval   the base model and every trained model, K samples per held-out problem (K = 1024; 64 with
         --quick), through `rlvr eval`'s run store.
  report `rlvr table` (pass@1 / 16 / 256 / 1024) and `rlvr plot` over all runs, into OUT; then one line
         per model on whether its per-problem counts equal the committed run's (results/micro, or
         tests/goldens/micro-quick for --quick), and one on the base model.
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
    # evaluation
    eval_n: int = 1024
    eval_limit: int = 8             # held-out problems per family
    seed: int = 0

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


QUICK = dict(eval_n=64, eval_limit=6, rl_steps=8)
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
    unknown = [n for n in only if n not in dict(arms)]
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


def run_micro(out: str | Path, cache: str | Path, quick: bool = False, progress: bool = True,
              recipe: MicroRecipe | None = None, only: list[str] | None = None, rebuild_base: bool = False,
              committed: str | Path | None = None) -> dict:
    """Run every stage; returns the per-stage times. Resumable: finished trainings and evaluations are
    picked up from OUT (the trainer resumes from checkpoints, `rlvr eval` from its samples) when OUT was
    made with the same code, libraries, CPU kernels and base model. `committed`: the committed run to
    compare with (default: `committed_dir(quick)`)."""
    from rlvr.harness import cpu_isa
    from rlvr.harness.report.plots import plot_runs
    from rlvr.harness.report.tables import table
    from rlvr.harness.sample.models import model_fingerprint
    from rlvr.harness.verify.pool import VerifierPool, preflight

    from rlvr import tasks

    recipe = recipe or MicroRecipe()
    preflight(recipe.families)   # micro_code runs programs: the sandbox must work before anything is built
    if quick:
        recipe = replace(recipe, **QUICK)
    chosen = select_arms(recipe, only)
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

    models = {"base": base}
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
    recipe_json = asdict(recipe) | {"quick": quick}
    (out / "recipe.json").write_text(json.dumps(recipe_json, indent=2, default=str) + "\n")
    times["report"] = time.monotonic() - t0
    (out / "times.json").write_text(json.dumps(times, indent=2) + "\n")
    print(text)
    print("\nper-stage time (s):")
    for stage, secs in times.items():
        print(f"  {stage:<20} {secs:8.1f}")
    print(f"  {'total':<20} {sum(times.values()):8.1f}")
    committed = Path(committed) if committed is not None else committed_dir(quick)
    print(f"\nagainst the committed run ({committed}):")
    print(f"  {base_line}")
    for line in compare_with_committed(out, list(models), committed, recipe_json):
        print(f"  {line}")
    return times


__all__ = ["MicroRecipe", "QUICK", "REGRESSION_TOLERANCE", "SHIPPED_BASE", "build_base", "build_environment",
           "check_shipped_base", "compare_weights", "compare_with_committed", "evaluate_model", "micro_base",
           "run_micro", "ship_base", "train_method", "OPTIONAL_METHODS", "select_arms"]
