"""Paper recipes, `reproduce/<name>/recipe.yaml`: the recipe, its validation, what is available here, the plan.

    rlvr reproduce nsr --dry-run        validate; check that the model, data, GPUs and backend are here
                                        (naming what is missing and how to get it); print the plan and an
                                        estimate of GPU-hours from the throughput assumption below
    rlvr reproduce nsr                  train every arm and evaluate it under each of the recipe's protocols,
                                        then tabulate ours beside the paper's with deltas (one device: our
                                        trainer; several: `rlvr train --backend verl`)
    rlvr reproduce nsr --scale micro    the recipe's method configs (every arm's hyperparameters) trained and
                                        evaluated on the micro world on CPU (harness/reproduce/micro.py), beside the
                                        paper's table

A recipe is YAML over `Recipe`: the model, training data, shared training settings, arms (one method
config each; an arm may instead evaluate another arm's checkpoint, or start from one), evaluation
protocols (each tied to a table of the folder's `reference.json`), the paper's hardware and the facts the
spec could not find (`unknowns`). Mistakes name the file and the field. Running a recipe, at full or at
micro scale, is harness/reproduce/runner.py.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr.harness.errors import UserError
from rlvr.harness.train.trainer import OptimizerConfig, SamplingConfig


def _recipes_dir() -> Path:
    """The paper recipes: the checkout's top-level reproduce/ folder, or its copy inside an installed wheel
    (package data `rlvr.recipes`, pyproject.toml)."""
    checkout = Path(__file__).resolve().parents[2] / "reproduce"
    if checkout.is_dir():
        return checkout
    import importlib.util

    spec = importlib.util.find_spec("rlvr.recipes")
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations \
        else checkout


REPRODUCE_DIR = _recipes_dir()

# Throughput assumption behind every GPU-hour estimate (H100-hours):
# - generation: about 10,000 generated tokens/s for a 7B model on one H100 with vLLM (a planning figure
#   below third-party measurements of 12.5k tok/s for Llama-3.1-8B); other sizes scaled by 7.6B / size;
# - training: 8 x params FLOPs per trained token (6N forward + backward, 2N for the old-log-prob pass,
#   +2N when a reference model is scored) at 20% MFU of the H100's 989 dense bf16 TFLOPS (verl's
#   DeepSeek-671B training run reports MFU 0.19).
DECODE_TOKENS_PER_S_7B = 10_000.0
H100_BF16_TFLOPS = 989.0
ASSUMED_MFU = 0.2
THROUGHPUT_SOURCE = "a planning figure for vLLM on a 7B model on 1 H100; verl's DeepSeek training run reports MFU 0.19"

CHECKPOINT_RULES = ("last", "best_avg", "best_per_task")
EXTRACTION_RULES = ("boxed", "any_boxed", "task")


# ---- the recipe ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    hub: str | None = None               # hub id (checked in the local HF cache, never on the network)
    path: str | None = None              # a local directory instead of (or in front of) the hub id
    revision: str | None = None
    params_b: float = 7.0                # billions, for the compute estimate


@dataclass(frozen=True)
class TrainData:
    task: str                            # the task whose row format and verifier the rows use
    file: str | None = None              # JSONL rows; relative paths are under $RLVR_DATA_DIR
    problems: int | None = None
    hub: str | None = None               # where the paper's data lives (text, for the user)
    get: str | None = None               # a command that fetches it into `file`
    note: str = ""


@dataclass(frozen=True)
class Training:
    prompts_per_step: int
    rollouts_per_prompt: int
    steps: int
    mini_batch_size: int | None = None   # rows per optimizer step (None: all rows of the step)
    micro_batch_size: int = 8
    ppo_epochs: int = 1
    max_prompt_tokens: int = 1024        # for the estimate, and verl.max_prompt_length (verl drops longer
                                         # prompts; our trainer neither drops nor truncates them)
    checkpoint_every: int = 0
    max_refill_rounds: int = 4
    dtype: str = "bfloat16"
    seed: int = 0
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


@dataclass(frozen=True)
class Arm:
    id: str
    label: str                           # the row label; matches the reference row of the same name
    method: dict[str, Any] = field(default_factory=dict)
    from_arm: str | None = None          # evaluate this arm's checkpoint at `step` instead of training
    step: int | None = None
    init_arm: str | None = None          # start from this arm's checkpoint at `init_step` (a warm-up)
    init_step: int | None = None
    steps: int | None = None             # this arm's steps (default: training.steps)
    mini_batch_size: int | None = None   # this arm's mini-batch (default: training.mini_batch_size)
    verl_overrides: dict[str, Any] = field(default_factory=dict)   # method fields changed on the verl backend
    note: str = ""

    def method_for(self, backend: str) -> dict[str, Any]:
        return {**self.method, **self.verl_overrides} if backend == "verl" else dict(self.method)

    @property
    def trained(self) -> bool:
        return self.from_arm is None


@dataclass(frozen=True)
class Evaluation:
    id: str
    tasks: list[str]
    n: int
    temperature: float
    top_p: float
    max_new_tokens: int
    ks: list[int]
    answer_extraction: str = "boxed"     # boxed (last box) | any_boxed | task (the task's own rule)
    checker: str = ""
    templates: dict[str, str] = field(default_factory=dict)   # task -> template (default: recipe template)
    models: list[str] | None = None      # arm ids (and "base") to evaluate (default: all)
    include_base: bool = True
    checkpoint: str = "last"             # last | best_avg | best_per_task (over checkpoints every `every`)
    every: int = 0
    limit: int | None = None             # first L problems per task (smoke tests)
    engine: str = "vllm"
    reference_table: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Hardware:
    gpus: int                            # 0: runs on CPU (small test recipes)
    gpu: str
    backend: str                         # local (our trainer, one device) | verl
    paper_compute: str = ""


@dataclass(frozen=True)
class Throughput:
    decode_tokens_per_s: float | None = None   # per GPU; default DECODE_TOKENS_PER_S_7B scaled by size
    mfu: float = ASSUMED_MFU
    mean_response_tokens: int = 1000           # for the "typical" estimate (an assumption)
    mean_prompt_tokens: int = 200


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    arxiv: str
    version: str
    model: ModelSpec
    train_data: TrainData
    training: Training
    arms: list[Arm]
    evaluations: list[Evaluation]
    hardware: Hardware
    code: str = ""
    status: str = "paper"                # paper | reconstruction
    template: str | None = None
    throughput: Throughput = field(default_factory=Throughput)
    verl: dict[str, Any] = field(default_factory=dict)   # extra `verl:` section fields (VerlSection)
    unknowns: list[str] = field(default_factory=list)

    def arm(self, arm_id: str) -> Arm:
        return next(a for a in self.arms if a.id == arm_id)

    def arm_steps(self, arm: Arm) -> int:
        return arm.steps or self.training.steps


def available_recipes() -> list[str]:
    return sorted(p.parent.name for p in REPRODUCE_DIR.glob("*/recipe.yaml"))


def recipe_path(name: str) -> Path:
    """`nsr` -> reproduce/nsr/recipe.yaml; a path to a recipe file or folder is taken as is."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    if (p / "recipe.yaml").is_file() and (os.sep in name or name.startswith(".")):
        return p / "recipe.yaml"
    if (REPRODUCE_DIR / name / "recipe.yaml").is_file():
        return REPRODUCE_DIR / name / "recipe.yaml"
    raise UserError(f"unknown recipe {name!r}; available: micro, {', '.join(available_recipes())} "
                    f"(or a path to a recipe.yaml)")


def load_recipe(name: str) -> tuple[Recipe, Path]:
    """Load and validate a recipe by name or path; returns (recipe, its file)."""
    from rlvr.harness.config import load_config

    path = recipe_path(name)
    recipe = load_config(Recipe, path)
    validate(recipe, path)
    return recipe, path


def reference_file(path: Path) -> Path:
    return path.parent / "reference.json"


def validate(recipe: Recipe, path: Path) -> None:
    """Cross-field checks; every error names the file and the field."""
    from rlvr import methods
    from rlvr import tasks as task_registry

    def fail(where: str, why: str) -> None:
        raise UserError(f"{path}: field '{where}': {why}")

    def task(where: str, name: str):
        try:
            return task_registry.get(name)
        except UserError as e:
            fail(where, str(e))

    if recipe.status not in ("paper", "reconstruction"):
        fail("status", f"expected paper or reconstruction, got {recipe.status!r}")
    if not (recipe.model.hub or recipe.model.path):
        fail("model", "needs 'hub' or 'path'")
    if recipe.model.params_b <= 0:
        fail("model.params_b", f"must be > 0, got {recipe.model.params_b}")
    tp = recipe.throughput
    if not 0 < tp.mfu <= 1 or (tp.decode_tokens_per_s is not None and tp.decode_tokens_per_s <= 0):
        fail("throughput", "mfu must be in (0, 1] and decode_tokens_per_s > 0")
    if recipe.hardware.backend not in ("local", "verl"):
        fail("hardware.backend", f"expected local or verl, got {recipe.hardware.backend!r}")
    if recipe.hardware.gpus < 0:
        fail("hardware.gpus", "must be >= 0")
    if recipe.hardware.backend == "local" and recipe.hardware.gpus > 1:
        fail("hardware.backend", "our local trainer uses one device; recipes needing several GPUs use verl")
    if recipe.verl:
        from rlvr.harness.backends.verl.launch import VerlSection
        from rlvr.harness.config import from_dict

        try:
            from_dict(VerlSection, dict(recipe.verl), "verl")
        except UserError as e:
            raise UserError(f"{path}: {e}") from None
    task("train_data.task", recipe.train_data.task)
    t = recipe.training
    for name in ("prompts_per_step", "rollouts_per_prompt", "steps", "micro_batch_size", "ppo_epochs",
                 "mini_batch_size"):
        if getattr(t, name) is not None and getattr(t, name) < 1:
            fail(f"training.{name}", f"must be >= 1, got {getattr(t, name)}")
    if recipe.template is not None and not any(recipe.template in task(f"evaluations[{i}].tasks", n).templates
                                               for i, ev in enumerate(recipe.evaluations) for n in ev.tasks):
        fail("template", f"no evaluated task offers a template named {recipe.template!r}")

    ids: list[str] = []
    for i, arm in enumerate(recipe.arms):
        where = f"arms[{i}]"
        if arm.id in ids or arm.id == "base":
            fail(f"{where}.id", f"{arm.id!r} is taken (ids are unique and 'base' is the base model)")
        if arm.label in [a.label for a in recipe.arms[:i]]:
            fail(f"{where}.label", f"{arm.label!r} is used by another arm")
        for name in ("steps", "mini_batch_size"):
            if getattr(arm, name) is not None and getattr(arm, name) < 1:
                fail(f"{where}.{name}", f"must be >= 1, got {getattr(arm, name)}")
        if arm.from_arm is not None:
            if arm.method:
                fail(f"{where}.method", "an arm with 'from_arm' evaluates a checkpoint and trains nothing")
            if arm.from_arm not in ids or not recipe.arm(arm.from_arm).trained:
                fail(f"{where}.from_arm", f"{arm.from_arm!r} is not an earlier trained arm")
            if arm.step is None or not 1 <= arm.step <= recipe.arm_steps(recipe.arm(arm.from_arm)):
                fail(f"{where}.step", "needs a step within the source arm's training")
            if not t.checkpoint_every or arm.step % t.checkpoint_every:
                fail(f"{where}.step", f"{arm.step} is not a checkpoint (training.checkpoint_every = "
                                      f"{t.checkpoint_every})")
        else:
            if "name" not in arm.method:
                fail(f"{where}.method", "needs a 'name' (or give 'from_arm' for an evaluation-only arm)")
            for key, spec in (("method", arm.method), ("verl_overrides", arm.method_for("verl"))):
                try:
                    methods.build_spec(spec)
                except ValueError as e:
                    fail(f"{where}.{key}", str(e))
        if arm.init_arm is not None:
            if arm.init_arm not in ids or not recipe.arm(arm.init_arm).trained:
                fail(f"{where}.init_arm", f"{arm.init_arm!r} is not an earlier trained arm")
            if arm.init_step is None or not t.checkpoint_every or arm.init_step % t.checkpoint_every:
                fail(f"{where}.init_step", f"needs a checkpoint step (training.checkpoint_every = "
                                           f"{t.checkpoint_every})")
        ids.append(arm.id)

    ref_path = reference_file(path)
    for i, ev in enumerate(recipe.evaluations):
        where = f"evaluations[{i}]"
        if ev.id in [e.id for e in recipe.evaluations[:i]]:
            fail(f"{where}.id", f"{ev.id!r} is used twice")
        if not ev.tasks:
            fail(f"{where}.tasks", "empty")
        domains = {task(f"{where}.tasks", name).domain for name in ev.tasks}
        if ev.n < 1 or not ev.ks or min(ev.ks) < 1 or max(ev.ks) > ev.n:
            fail(f"{where}.ks", f"needs values in 1..n (n = {ev.n}), got {ev.ks}")
        if ev.temperature < 0 or not 0 < ev.top_p <= 1 or ev.max_new_tokens < 1:
            fail(where, "temperature >= 0, 0 < top_p <= 1 and max_new_tokens >= 1 are required")
        if ev.temperature == 0 and ev.n > 1:
            fail(f"{where}.n", "greedy decoding (temperature 0) gives one distinct sample: use n = 1")
        if ev.answer_extraction not in EXTRACTION_RULES:
            fail(f"{where}.answer_extraction", f"expected one of {', '.join(EXTRACTION_RULES)}")
        if ev.answer_extraction != "task" and domains != {"math"}:
            fail(f"{where}.answer_extraction", "boxed / any_boxed apply to math tasks only; use 'task'")
        if ev.answer_extraction == "any_boxed":
            rigid = [n for n in ev.tasks if "answer_mode" not in task(f"{where}.tasks", n).eval_options]
            if rigid:
                fail(f"{where}.answer_extraction", f"any_boxed: task {rigid[0]} has no answer_mode option")
        for name, tpl in ev.templates.items():
            if name not in ev.tasks or tpl not in task(f"{where}.templates", name).templates:
                fail(f"{where}.templates.{name}", f"not an evaluated task offering template {tpl!r}")
        if ev.checkpoint not in CHECKPOINT_RULES:
            fail(f"{where}.checkpoint", f"expected one of {', '.join(CHECKPOINT_RULES)}")
        if ev.checkpoint != "last" and (not ev.every or not t.checkpoint_every or ev.every % t.checkpoint_every):
            fail(f"{where}.every", f"best-checkpoint protocols need 'every', a multiple of "
                                   f"training.checkpoint_every ({t.checkpoint_every})")
        for m in ev.models or []:
            if m != "base" and m not in ids:
                fail(f"{where}.models", f"{m!r} is not an arm id or 'base'")
        if ev.engine not in ("hf", "vllm"):
            fail(f"{where}.engine", f"expected hf or vllm, got {ev.engine!r}")
        if ev.reference_table is not None:
            from rlvr.harness.report.tables import reference_rows

            try:
                reference_rows(f"{ref_path}#{ev.reference_table}", ev.ks)
            except UserError as e:
                fail(f"{where}.reference_table", str(e))


# ---- availability --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Missing:
    kind: str                            # model | train data | eval data | gpu | backend | engine
    what: str
    how: str


def hf_cache_dir() -> Path:
    """The hub cache as huggingface_hub resolves it, read at call time (tests point it elsewhere)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def model_source(spec: ModelSpec) -> tuple[str | None, str]:
    """(what to load, where it was found) or (None, why not). Never touches the network."""
    if spec.path:
        p = Path(os.path.expandvars(spec.path)).expanduser()
        if p.is_dir():
            return str(p), f"local {p}"
        if not spec.hub:
            return None, f"no directory {p}"
    assert spec.hub is not None
    if Path(spec.hub).is_dir():
        return spec.hub, f"local {spec.hub}"
    from huggingface_hub import try_to_load_from_cache

    cache = hf_cache_dir()
    config = try_to_load_from_cache(spec.hub, "config.json", cache_dir=cache, revision=spec.revision)
    if isinstance(config, str):
        snapshot = Path(config).parent
        if any(snapshot.glob("*.safetensors")) or any(snapshot.glob("*.bin")):
            return spec.hub, f"HF cache {snapshot}"
        return None, f"config.json but no weights in the HF cache ({snapshot})"
    return None, f"not in the HF cache ({cache})"


def train_data_file(data: TrainData, data_dir: str | Path | None) -> Path | None:
    from rlvr.tasks.loading import resolve_data_dir

    if data.file is None:
        return None
    p = Path(os.path.expandvars(data.file)).expanduser()
    if p.is_absolute():
        return p
    root = resolve_data_dir(data_dir)
    return root / p if root else None


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def task_sizes(recipe: Recipe, data_dir: str | Path | None) -> dict[str, int | None]:
    """Problems per evaluated task from the local copy (None: not here)."""
    from rlvr.tasks.loading import local_file

    from rlvr import tasks as task_registry

    sizes: dict[str, int | None] = {}
    for ev in recipe.evaluations:
        for name in ev.tasks:
            if name not in sizes:
                t = task_registry.get(name)
                if hasattr(t, "train_problems") and not t.local_dir:
                    sizes[name] = len(t.load(data_dir))          # generated (micro world)
                else:
                    path = local_file(t, data_dir)
                    sizes[name] = _lines(path) if path else None
    return sizes


def availability(recipe: Recipe, data_dir: str | Path | None) -> tuple[list[str], list[Missing]]:
    """(lines describing what is here, what is missing and how to get it)."""
    from rlvr import tasks as task_registry

    found: list[str] = []
    missing: list[Missing] = []
    src, where = model_source(recipe.model)
    name = recipe.model.path or recipe.model.hub
    if src:
        found.append(f"model {name}: {where}")
    else:
        how = (f"hf download {recipe.model.hub}" + (f" --revision {recipe.model.revision}" if recipe.model.revision
                                                     else "")
               + " (huggingface-cli download on older huggingface_hub)") if recipe.model.hub else "set model.path"
        missing.append(Missing("model", str(name), f"{where}; get it: {how}"))

    data = recipe.train_data
    task = task_registry.get(data.task)
    file = train_data_file(data, data_dir)
    if data.file is None:
        if hasattr(task, "train_problems"):
            found.append(f"training data: task {data.task}'s generated train split")
        else:
            missing.append(Missing("train data", data.task, "the task has no train split; give train_data.file"))
    elif not hasattr(task, "problem_from_row"):
        missing.append(Missing("train data", data.file, f"task {data.task} cannot read training rows "
                                                        f"(no loader for this format in tasks/)"))
    elif file is None or not file.is_file():
        at = str(file) if file else f"$RLVR_DATA_DIR/{data.file} ($RLVR_DATA_DIR unset)"
        how = f"get it: {data.get}" if data.get else f"source: {data.hub or data.note or 'see README'}"
        missing.append(Missing("train data", data.file, f"no file at {at}; {how}"))
    else:
        found.append(f"training data: {file} ({_lines(file):,} rows)")

    sizes = task_sizes(recipe, data_dir)
    for tname, size in sizes.items():
        t = task_registry.get(tname)
        if size is not None:
            found.append(f"eval data {tname}: {size:,} problems" + (" (local)" if t.local_dir else " (generated)"))
        else:
            hub = f"{t.hub.path}" + (f" ({t.hub.name})" if t.hub and t.hub.name else "") if t.hub else "no hub source"
            missing.append(Missing("eval data", tname, f"not in $RLVR_DATA_DIR/{t.local_dir}/test.jsonl; hub "
                                                       f"{hub} (a dry run never uses the network)"))

    have = gpu_count() if recipe.hardware.gpus else 0
    if have < recipe.hardware.gpus:
        missing.append(Missing("gpu", f"{recipe.hardware.gpus} GPUs", f"this machine has {have}"))
    elif recipe.hardware.gpus:
        found.append(f"GPUs: {have}")
    if recipe.hardware.backend == "verl":
        found_verl, missing_verl = verl_availability(recipe)
        found += found_verl
        missing += missing_verl
    engines = {ev.engine for ev in recipe.evaluations}
    if "vllm" in engines:
        if importlib.util.find_spec("vllm") is None:
            missing.append(Missing("engine", "vllm", "pip install -e '.[vllm]' on the GPU machine "
                                                     "(or set evaluations[].engine: hf, much slower)"))
        else:
            found.append("engine: vllm")
    return found, missing


def verl_availability(recipe: Recipe) -> tuple[list[str], list[Missing]]:
    """The verl backend: verl installed at the pinned version, every arm's method runnable there
    (`launch.check_method`: no row dropping or refilling, no old-policy candidates)."""
    from importlib import metadata

    from rlvr.harness.backends.verl import VERL_VERSION
    from rlvr.harness.backends.verl.launch import check_method

    from rlvr import methods

    found, missing = [], []
    try:
        version = metadata.version("verl")
    except metadata.PackageNotFoundError:
        version = None
    if version == VERL_VERSION:
        found.append(f"backend: verl {version}")
    else:
        missing.append(Missing("backend", "verl", (f"verl {version} is installed, the backend is pinned to "
                                                   f"{VERL_VERSION}; " if version else "not installed; ")
                               + f"pip install 'verl[vllm]=={VERL_VERSION}' on the GPU machine"))
    for arm in (a for a in recipe.arms if a.trained):
        spec = arm.method_for("verl")
        try:
            check_method(methods.build_spec(spec))
        except UserError as e:
            missing.append(Missing("backend", f"arm {arm.id}", f"the verl backend cannot run it: {e}"))
    return found, missing


def eval_task_options(ev: Evaluation) -> dict[str, dict[str, str]]:
    """`EvalConfig.task_options` for an evaluation (`rlvr eval --task-option answer_mode=any_boxed`); the
    default last-box rule and 'task' need none."""
    return {n: {"answer_mode": "any_boxed"} for n in ev.tasks} if ev.answer_extraction == "any_boxed" else {}


# ---- the plan ------------------------------------------------------------------------------------

@dataclass
class Plan:
    recipe: Recipe
    path: Path
    rollouts: dict[str, int]             # per trained arm
    train_gen_tokens: int                # upper bound: every response at max_new_tokens
    train_flops: float                   # upper bound
    eval_samples: dict[str, int]         # per evaluation
    eval_tokens: int                     # upper bound
    gpu_hours_upper: float
    gpu_hours_typical: float
    found: list[str]
    missing: list[Missing]
    unknown_sizes: list[str]

    @property
    def eval_samples_total(self) -> int:
        return sum(self.eval_samples.values())


def _decode_tps(recipe: Recipe) -> float:
    return recipe.throughput.decode_tokens_per_s or DECODE_TOKENS_PER_S_7B * 7.6 / recipe.model.params_b


def eval_models(recipe: Recipe, ev: Evaluation) -> list[str]:
    chosen = ["base"] + [a.id for a in recipe.arms] if ev.include_base else [a.id for a in recipe.arms]
    return [m for m in chosen if ev.models is None or m in ev.models]


def checkpoints_evaluated(recipe: Recipe, ev: Evaluation, model: str) -> list[int | None]:
    """Training steps whose checkpoint `ev` scores for `model` (None: the base model)."""
    if model == "base":
        return [None]
    arm = recipe.arm(model)
    if not arm.trained:
        return [arm.step]
    last = recipe.arm_steps(arm)
    if ev.checkpoint == "last":
        return [last]
    return sorted({*range(ev.every, last + 1, ev.every), last})


def plan(recipe: Recipe, path: Path, data_dir: str | Path | None = None) -> Plan:
    from rlvr import methods

    t = recipe.training
    tp = recipe.throughput
    params = recipe.model.params_b * 1e9
    rollouts: dict[str, int] = {}
    gen_upper = gen_typ = 0.0
    flops_upper = flops_typ = 0.0
    for arm in recipe.arms:
        if not arm.trained:
            continue
        r = recipe.arm_steps(arm) * t.prompts_per_step * t.rollouts_per_prompt
        rollouts[arm.id] = r
        m = methods.build_spec(arm.method)
        passes = 6 * t.ppo_epochs + 2 + (2 if "ref_logp" in m.requires else 0)
        gen_upper += r * t.sampling.max_new_tokens
        gen_typ += r * min(tp.mean_response_tokens, t.sampling.max_new_tokens)
        flops_upper += r * (t.max_prompt_tokens + t.sampling.max_new_tokens) * params * passes
        flops_typ += r * (tp.mean_prompt_tokens + min(tp.mean_response_tokens, t.sampling.max_new_tokens)) \
            * params * passes
    sizes = task_sizes(recipe, data_dir)
    eval_samples: dict[str, int] = {}
    eval_upper = eval_typ = 0.0
    for ev in recipe.evaluations:
        per_model = sum(min(sizes[n], ev.limit or sizes[n]) for n in ev.tasks if sizes[n] is not None) * ev.n
        count = sum(len(checkpoints_evaluated(recipe, ev, m)) for m in eval_models(recipe, ev)) * per_model
        eval_samples[ev.id] = count
        eval_upper += count * ev.max_new_tokens
        eval_typ += count * min(tp.mean_response_tokens, ev.max_new_tokens)
    tps = _decode_tps(recipe)
    flops_per_s = H100_BF16_TFLOPS * 1e12 * tp.mfu
    upper = (gen_upper / tps + flops_upper / flops_per_s + eval_upper / tps) / 3600
    typical = (gen_typ / tps + flops_typ / flops_per_s + eval_typ / tps) / 3600
    found, missing = availability(recipe, data_dir)
    return Plan(recipe, path, rollouts, int(gen_upper), flops_upper, eval_samples, int(eval_upper), upper, typical,
                found, missing, [n for n, s in sizes.items() if s is None])


def _si(x: float) -> str:
    for unit, scale in (("e12", 1e12), ("e9", 1e9), ("e6", 1e6)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:,.0f}"


def format_plan(p: Plan) -> str:
    r, t = p.recipe, p.recipe.training
    out = [f"recipe {r.name}: {r.title}",
           f"  arXiv {r.arxiv}{r.version}; file {p.path}; "
           + ("RECONSTRUCTION (the paper's setting is largely unknown; see unknowns)" if r.status == "reconstruction"
              else "the paper's setting")]
    out.append(f"model      {r.model.hub or r.model.path} ({r.model.params_b:g}B parameters)")
    out.append(f"training   data: task {r.train_data.task}, {r.train_data.file or 'its generated train split'}"
               + (f" ({r.train_data.problems:,} problems)" if r.train_data.problems else ""))
    rows = t.prompts_per_step * t.rollouts_per_prompt
    upd = math.ceil(rows / t.mini_batch_size) if t.mini_batch_size else 1
    out.append(f"           {t.prompts_per_step} prompts x {t.rollouts_per_prompt} rollouts per step, "
               f"{upd} optimizer step(s) per rollout batch, lr {t.optimizer.lr:g}, "
               f"T {t.sampling.temperature:g}, <= {t.sampling.max_new_tokens:,} new tokens")
    for arm in r.arms:
        if arm.trained:
            m = arm.method
            extra = f"; starts from {arm.init_arm} at step {arm.init_step}" if arm.init_arm else ""
            if arm.verl_overrides and r.hardware.backend == "verl":
                extra += f"; on verl: {arm.verl_overrides}"
            out.append(f"  arm {arm.id:<16} {arm.label!r}: {m['name']}, {r.arm_steps(arm)} steps, "
                       f"{p.rollouts[arm.id]:,} rollouts{extra}")
        else:
            out.append(f"  arm {arm.id:<16} {arm.label!r}: evaluates {arm.from_arm} at step {arm.step}")
    out.append(f"           total: {sum(p.rollouts.values()):,} rollouts; <= {_si(p.train_gen_tokens)} generated "
               f"tokens; <= {p.train_flops:.2e} training FLOPs")
    for ev in r.evaluations:
        ref = f"; beside reference.json#{ev.reference_table}" if ev.reference_table else ""
        out.append(f"evaluation {ev.id}: {', '.join(ev.tasks)}; n = {ev.n}, T {ev.temperature:g}, top-p "
                   f"{ev.top_p:g}, <= {ev.max_new_tokens:,} tokens, pass@{{{','.join(map(str, ev.ks))}}}, "
                   f"extraction {ev.answer_extraction}, checkpoint {ev.checkpoint}"
                   + (f" (every {ev.every} steps)" if ev.checkpoint != "last" else "") + ref)
        out.append(f"           models: {', '.join(eval_models(r, ev))}; {p.eval_samples[ev.id]:,} samples")
    if p.unknown_sizes:
        out.append(f"           (not counted: {', '.join(p.unknown_sizes)}, whose size is unknown here)")
    out.append(f"           total: {p.eval_samples_total:,} samples; <= {_si(p.eval_tokens)} generated tokens")
    out.append(f"compute    {p.gpu_hours_upper:,.0f} H100-hours upper bound (every response at its max tokens); "
               f"{p.gpu_hours_typical:,.0f} at about {r.throughput.mean_response_tokens} response tokens")
    out.append(f"           assumption: {_decode_tps(r):,.0f} generated tokens/s per GPU; training at "
               f"{r.throughput.mfu:.0%} MFU of {H100_BF16_TFLOPS:g} TFLOPS ({THROUGHPUT_SOURCE})")
    out.append(f"           paper: {r.hardware.gpus} x {r.hardware.gpu}; {r.hardware.paper_compute or 'compute not stated in the paper'}")
    runner = ("our trainer on one device" if r.hardware.backend == "local" and r.hardware.gpus == 1
              else f"rlvr train --backend verl on {r.hardware.gpus} GPUs")
    out.append(f"runs with  {runner}; evaluation with the {', '.join(sorted({e.engine for e in r.evaluations}))} "
               f"engine")
    out.append("here")
    out += [f"  ok       {line}" for line in p.found]
    out += [f"  MISSING  {m.kind} {m.what}: {m.how}" for m in p.missing]
    if r.unknowns:
        out.append("unknowns (see README.md)")
        out += [f"  - {u}" for u in r.unknowns]
    out.append(f"{len(p.missing)} item(s) unavailable here" if p.missing else "everything is available here")
    return "\n".join(out)


__all__ = ["Recipe", "ModelSpec", "TrainData", "Training", "Arm", "Evaluation", "Hardware", "Throughput", "Missing",
           "Plan", "available_recipes", "recipe_path", "load_recipe", "reference_file", "validate", "availability",
           "model_source", "train_data_file", "eval_models", "checkpoints_evaluated", "plan", "format_plan",
           "DECODE_TOKENS_PER_S_7B", "H100_BF16_TFLOPS", "ASSUMED_MFU"]
