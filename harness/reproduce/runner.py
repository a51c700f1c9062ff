"""`rlvr reproduce NAME`: run a paper recipe (harness/reproduce/recipes.py) at full scale or on the micro world.

Full scale: every trained arm gets a training YAML in OUT/configs (written first, so a machine that cannot
train still hands them over), trained by our trainer on one device or by `rlvr train --backend verl`; then
every evaluation protocol scores the base model and each arm's checkpoints (the last one, or every
`every` steps for best-checkpoint protocols) into OUT/eval/<protocol>/<arm>, and the rows go beside the
recipe's reference table, with deltas, in OUT/table-<table>.md. Rows are matched to published rows by arm id.

Micro scale: the recipe's method configs with the micro world's budget (harness/reproduce/micro.py), then the micro
runs beside each reference table (no benchmark is shared, which the table says).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from rlvr.harness.errors import UserError
from rlvr.harness.reproduce.recipes import (
    Arm,
    Recipe,
    checkpoints_evaluated,
    eval_models,
    eval_task_options,
    format_plan,
    load_recipe,
    model_source,
    plan,
    reference_file,
    train_data_file,
)

# ---- the full run --------------------------------------------------------------------------------

def seeded(name: str, seed: int | None) -> str:
    """An arm's id or label for one training seed (`--seeds`): grpo -> grpo-s1; unchanged without seeds."""
    return name if seed is None else f"{name}-s{seed}"


def train_config(recipe: Recipe, arm: Arm, out: Path, data_dir: str | Path | None, seed: int | None = None) -> dict:
    """The training YAML (TrainConfig fields, plus a `verl:` section on the verl backend) of one trained arm;
    with `seed` (`--seeds`), of that training seed, into train/ARM-sSEED (a warm start from the same seed)."""
    t = recipe.training
    backend = recipe.hardware.backend
    if arm.init_arm:
        model = str(checkpoint_dir(out, seeded(arm.init_arm, seed), arm.init_step))
    else:
        model, _ = model_source(recipe.model)
        model = model or recipe.model.hub
    file = train_data_file(recipe.train_data, data_dir)
    return {"model": model, "out": str(out / "train" / seeded(arm.id, seed)), "tasks": [recipe.train_data.task],
            "data_file": str(file) if file else recipe.train_data.file, "method": arm.method_for(backend),
            "prompts_per_step": t.prompts_per_step, "rollouts_per_prompt": t.rollouts_per_prompt,
            "mini_batch_size": arm.mini_batch_size or t.mini_batch_size, "micro_batch_size": t.micro_batch_size,
            "ppo_epochs": t.ppo_epochs, "steps": recipe.arm_steps(arm), "max_refill_rounds": t.max_refill_rounds,
            "optimizer": dataclasses.asdict(t.optimizer), "sampling": dataclasses.asdict(t.sampling),
            "checkpoint_every": t.checkpoint_every, "seed": t.seed if seed is None else seed, "dtype": t.dtype,
            "label": seeded(arm.label, seed), "arm": arm.id,
            **({"verl": verl_section(recipe)} if backend == "verl" else {})}


def verl_section(recipe: Recipe) -> dict:
    gpus = max(recipe.hardware.gpus, 1)
    per_node = min(gpus, 8)
    return {"nnodes": math.ceil(gpus / per_node), "n_gpus_per_node": per_node,
            "max_prompt_length": recipe.training.max_prompt_tokens, **recipe.verl}


def checkpoint_dir(out: Path, arm_id: str, step: int) -> Path:
    """Where a trained arm's checkpoint of `step` is, in Hugging Face format."""
    return out / "train" / arm_id / "checkpoints" / f"step_{step}"


def hf_checkpoint(recipe: Recipe, out: Path, arm_id: str, step: int) -> Path:
    """The checkpoint as a Hugging Face directory. Our trainer writes one; verl writes FSDP shards under
    checkpoints/global_step_N/actor, merged here with verl's own model merger (as the verl backend's
    launch notes say)."""
    import subprocess
    import sys

    target = checkpoint_dir(out, arm_id, step)
    if target.is_dir() or recipe.hardware.backend != "verl":
        if not target.is_dir():
            raise UserError(f"arm {arm_id}: no checkpoint at {target} (did its training finish?)")
        return target
    shards = out / "train" / arm_id / "checkpoints" / f"global_step_{step}" / "actor"
    if not shards.is_dir():
        raise UserError(f"arm {arm_id}: no verl checkpoint at {shards} (did its training finish?)")
    cmd = [sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir", str(shards),
           "--target_dir", str(target)]
    if subprocess.call(cmd) != 0:
        raise UserError(f"arm {arm_id}: merging {shards} failed ({' '.join(cmd)})")
    return target


def run_recipe(recipe: Recipe, path: Path, out: str | Path, data_dir: str | Path | None = None,
               arms: list[str] | None = None, progress: bool = True, seeds: list[int] | None = None) -> dict[str, str]:
    """Train the arms, evaluate every protocol, write the tables; returns {table name: markdown}. `seeds`
    (`--seeds`): every trained arm once per training seed (train/ARM-sSEED, eval/PROTOCOL/ARM-sSEED, a
    row ARM-sSEED each); without it, one run per arm with the recipe's seed, named by the arm alone."""
    import yaml
    from rlvr.harness.config import load_config
    from rlvr.harness.train.trainer import TrainConfig, train

    out = Path(out)
    chosen = _choose_arms(recipe, arms)
    p = plan(recipe, path, data_dir)
    ids = {a.id for a in chosen}
    blocking = [m for m in p.missing if not (m.what.startswith("arm ") and m.what[4:] not in ids)]
    # the per-arm training configs are written first: where this machine cannot train, they go to one that can
    configs = out / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    trained = [a for a in chosen if a.trained]
    runs = [(arm, seed) for seed in (seeds or [None]) for arm in trained]
    for arm, seed in runs:
        (configs / f"{seeded(arm.id, seed)}.yaml").write_text(
            yaml.safe_dump(train_config(recipe, arm, out, data_dir, seed), sort_keys=False))
    if blocking:
        what = "; ".join(f"{m.kind} {m.what}" for m in blocking)
        verl = " with `rlvr train --backend verl --config FILE`" if recipe.hardware.backend == "verl" else ""
        raise UserError(f"recipe {recipe.name} cannot run here: missing {what} (details: rlvr reproduce "
                        f"{recipe.name} --dry-run); the per-arm training configs are in {configs}, to train "
                        f"each arm{verl} where they are available")
    for m in p.missing:
        print(f"rlvr: warning: {m.what}: {m.how}")
    from rlvr.harness.verify.pool import preflight

    preflight(dict.fromkeys(t for ev in recipe.evaluations for t in ev.tasks))   # before hours of training
    for arm, seed in runs:
        cfg_path = configs / f"{seeded(arm.id, seed)}.yaml"
        if arm.init_arm:
            hf_checkpoint(recipe, out, seeded(arm.init_arm, seed), arm.init_step)
        if recipe.hardware.backend == "verl":
            from rlvr.harness.backends.verl import launch  # what `rlvr train --backend verl` runs

            verl_plan = launch.prepare(str(cfg_path), [])
            print(verl_plan.render(), flush=True)
            if launch.run(verl_plan) != 0:
                raise UserError(f"arm {arm.id}: rlvr train --backend verl --config {cfg_path} failed")
        else:
            train(load_config(TrainConfig, cfg_path), progress=progress)
    tables = _evaluate_and_tabulate(recipe, path, out, chosen, data_dir, progress, seeds)
    (out / "reproduce.json").write_text(json.dumps({"recipe": str(path), "arms": [a.id for a in chosen],
                                                    "seeds": seeds, "tables": sorted(tables)}, indent=2) + "\n")
    return tables


def _choose_arms(recipe: Recipe, arms: list[str] | None, micro: bool = False) -> list[Arm]:
    """The arms named by --methods (all by default); an arm that needs another arm's checkpoint needs it chosen
    too (not at micro scale, where warm-ups are dropped)."""
    if arms is None:
        return list(recipe.arms)
    unknown = [a for a in arms if a not in [x.id for x in recipe.arms]]
    if unknown:
        raise UserError(f"--methods: recipe {recipe.name} has no arm {unknown[0]!r} (arms: "
                        f"{', '.join(a.id for a in recipe.arms)})")
    chosen = [a for a in recipe.arms if a.id in arms]
    for a in chosen:
        need = a.from_arm or (None if micro else a.init_arm)
        if need and need not in arms:
            raise UserError(f"--methods: arm {a.id} needs arm {need}; add it")
    return chosen


def _evaluate_and_tabulate(recipe: Recipe, path: Path, out: Path, chosen: list[Arm], data_dir, progress,
                           seeds: list[int] | None = None) -> dict:
    from rlvr.harness.eval.evaluate import EvalConfig, evaluate
    from rlvr.harness.report.tables import Row, run_row, table_from_rows
    from rlvr.harness.runs.store import Run
    from rlvr.harness.sample.engine import SamplingParams

    base_model, _ = model_source(recipe.model)
    ids = {a.id for a in chosen}
    rows_by_table: dict[str, tuple[list[Row], set[int]]] = {}
    for ev in recipe.evaluations:
        templates = {n: recipe.template for n in ev.tasks if recipe.template in _templates(n)} | ev.templates
        rows = []
        models = [(m, None) for m in eval_models(recipe, ev) if m == "base"]
        models += [(m, seed) for seed in (seeds or [None]) for m in eval_models(recipe, ev) if m != "base" and m in ids]
        for model, seed in models:
            arm = None if model == "base" else recipe.arm(model)
            label = "base" if arm is None else seeded(arm.label, seed)
            trained_arm = None if arm is None else recipe.arm(arm.from_arm) if arm.from_arm else arm
            method = None if trained_arm is None else trained_arm.method_for(recipe.hardware.backend)
            candidates = []
            for step in checkpoints_evaluated(recipe, ev, model):
                ckpt = None if step is None else hf_checkpoint(recipe, out, seeded(trained_arm.id, seed), step)
                name = seeded(model, seed)
                run_dir = out / "eval" / ev.id / ("base" if step is None else name if ev.checkpoint == "last"
                                                  else f"{name}/step_{step}")
                cfg = EvalConfig(model=str(ckpt) if ckpt else str(base_model), tasks=list(ev.tasks), out=str(run_dir),
                                 n=ev.n, sampling=SamplingParams(ev.temperature, ev.top_p, 0, ev.max_new_tokens),
                                 seed=recipe.training.seed, engine=ev.engine, templates=templates, data_dir=data_dir,
                                 limit=ev.limit, label=label, step=step, method=method,
                                 task_options=eval_task_options(ev), arm=model,
                                 train_seed=None if step is None else seed if seed is not None
                                 else recipe.training.seed)
                evaluate(cfg, progress=progress, print_table=False)
                candidates.append(run_row(Run.open(run_dir), ev.ks))
            rows.append(select_checkpoint(candidates, ev.checkpoint, label, model))
        key = ev.reference_table or f"eval:{ev.id}"
        acc = rows_by_table.setdefault(key, ([], set()))
        acc[0].extend(rows)
        acc[1].update(ev.ks)
    tables = {}
    for key, (rows, ks) in rows_by_table.items():
        ref = None if key.startswith("eval:") else f"{reference_file(path)}#{key}"
        name = key.removeprefix("eval:")
        text = table_from_rows(rows, sorted(ks), "md", ref)
        (out / f"table-{name}.md").write_text(text + "\n")
        print(f"\n{name}:\n{text}")
        tables[name] = text
    return tables


def _templates(task_name: str) -> tuple[str, ...]:
    from rlvr import tasks as task_registry

    return task_registry.get(task_name).templates


def select_checkpoint(rows: list, rule: str, label: str, key: str):
    """One row (labelled `label`, matched to published rows by `key`, the arm id) from the rows of several
    checkpoints in step order: the last, the best mean pass@(smallest k) over the tasks, or per task the
    checkpoint best on that task."""
    from rlvr.harness.report.tables import Row

    def first_k(row: Row, task: str) -> float:
        by_k = row.scores[task]
        return by_k[min(by_k)]

    if rule == "best_per_task" and len(rows) > 1:
        scores = {t: max(rows, key=lambda r: first_k(r, t)).scores[t] for t in rows[0].scores}
        return Row(label, scores, domains=rows[0].domains, key=key)
    chosen = rows[-1] if rule == "last" else max(rows, key=lambda r: sum(first_k(r, t) for t in r.scores)
                                                 / len(r.scores))
    return Row(label, chosen.scores, domains=chosen.domains, key=key)


# ---- the micro world -----------------------------------------------------------------------------

def micro_methods(recipe: Recipe, arms: list[str] | None) -> tuple[tuple, list[str]]:
    """The recipe's trained arms as rlvr.harness.reproduce.micro method entries, and notes on what was left out.

    run_micro names runs and output folders by method name, so one output folder holds one arm per
    method; evaluation-only arms and warm-started arms have no micro counterpart."""
    entries, notes, used = [], [], {}
    for arm in _choose_arms(recipe, arms, micro=True):
        name = arm.method.get("name")
        if not arm.trained:
            notes.append(f"arm {arm.id}: evaluates a checkpoint of {arm.from_arm} (step {arm.step}); not run at "
                         f"micro scale")
            continue
        if name in used:
            notes.append(f"arm {arm.id}: same method ({name}) as arm {used[name]}; run it alone with "
                         f"--methods {arm.id} --out another folder")
            continue
        if arm.init_arm:
            notes.append(f"arm {arm.id}: starts from the micro base model, not from {arm.init_arm}'s step "
                         f"{arm.init_step} (the micro world has no warm-up stage)")
        used[name] = arm.id
        entries.append((name, tuple((k, v) for k, v in arm.method.items() if k != "name")))
    return tuple(entries), notes


def micro_recipe_for(recipe: Recipe, arms: list[str] | None, base=None):
    """(MicroRecipe, notes): the micro budget of `base` (default MicroRecipe()) with the recipe's method
    configs, group size and rollout temperature."""
    from rlvr.harness.reproduce.micro import MicroRecipe

    base = base or MicroRecipe()
    entries, notes = micro_methods(recipe, arms)
    if not entries:
        raise UserError(f"recipe {recipe.name}: no trained arm selected for the micro world")
    temperature = recipe.training.sampling.temperature
    if temperature != base.temperature:
        notes.append(f"rollout temperature {temperature:g} (the recipe's); rlvr.harness.reproduce.micro samples its "
                     f"evaluations at the same temperature")
    return dataclasses.replace(base, methods=entries, rollouts_per_prompt=recipe.training.rollouts_per_prompt,
                               temperature=temperature), notes


def quick_budget(micro):
    """The budget `run_micro(quick=True)` trains and evaluates with (rlvr.harness.reproduce.micro.QUICK)."""
    from rlvr.harness.reproduce.micro import QUICK

    return dataclasses.replace(micro, **QUICK)


def format_micro_plan(recipe: Recipe, micro, notes: list[str]) -> str:
    lines = [f"recipe {recipe.name} on the micro world (harness/reproduce/micro.py), CPU",
             "  method configs: the recipe's, unchanged:"]
    lines += [f"    {name}: {dict(over)}" for name, over in micro.methods]
    budget = {f.name: getattr(micro, f.name) for f in dataclasses.fields(micro)
              if f.name not in ("methods", "base_spec", "base_error_rate")}
    lines.append(f"  micro budget: {budget}")
    lines.append(f"  not carried over: model ({recipe.model.hub or recipe.model.path}), data, lr "
                 f"({recipe.training.optimizer.lr:g}), steps, batch and mini-batch sizes, max tokens, the "
                 f"evaluation protocols (micro tasks, the micro eval_n)")
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)


def run_micro_scale(recipe: Recipe, path: Path, out: str | Path, cache: str | Path, quick: bool = False,
                    arms: list[str] | None = None, base=None, progress: bool = True,
                    seeds: list[int] | None = None) -> dict[str, str]:
    """Train and evaluate the recipe's arms on the micro world, then set the runs beside each reference
    table the recipe uses (micro tasks are not the paper's benchmarks: no cell is shared, so the tables
    show both and say that no delta exists). Returns {table id: markdown}."""
    from rlvr.harness.report.tables import table
    from rlvr.harness.reproduce.micro import run_micro

    micro, notes = micro_recipe_for(recipe, arms, base)
    if seeds:
        micro = dataclasses.replace(micro, train_seeds=tuple(seeds))
    budget = quick_budget(micro) if quick else micro
    if seeds:
        budget = dataclasses.replace(budget, train_seeds=tuple(seeds))
    print(format_micro_plan(recipe, budget, notes))
    out = Path(out)
    run_micro(out, cache, quick=quick, progress=progress, recipe=micro, seeds=seeds)
    eval_n = budget.eval_n
    runs = [str(out / "runs" / "base")] + [str(out / "runs" / label) for label, *_ in budget.trained_runs()]
    texts = {}
    for ref_id in dict.fromkeys(ev.reference_table for ev in recipe.evaluations if ev.reference_table):
        ks = sorted({k for ev in recipe.evaluations if ev.reference_table == ref_id for k in ev.ks if k <= eval_n})
        text = table(runs, ks or [1], reference=f"{reference_file(path)}#{ref_id}")
        (out / f"reference-{ref_id}.md").write_text(text + "\n")
        print(f"\nbeside {recipe.name} reference.json#{ref_id}:\n{text}")
        texts[ref_id] = text
    return texts


# ---- the verb ------------------------------------------------------------------------------------

def reproduce(name: str, dry_run: bool = False, scale: str = "full", quick: bool = False, out: str | None = None,
              cache: str = ".cache/rlvr", arms: list[str] | None = None, data_dir: str | None = None,
              micro_base=None, progress: bool = True, seeds: list[int] | None = None) -> int:
    """`rlvr reproduce NAME` for a paper recipe (the embedded `micro` is handled by the CLI)."""
    recipe, path = load_recipe(name)
    if scale == "micro":
        if dry_run:
            micro, notes = micro_recipe_for(recipe, arms, micro_base)
            budget = quick_budget(micro) if quick else micro
            print(format_micro_plan(recipe, dataclasses.replace(budget, train_seeds=tuple(seeds)) if seeds else budget,
                                    notes))
            return 0
        run_micro_scale(recipe, path, out or f"runs/reproduce/{recipe.name}-micro{'-quick' if quick else ''}",
                        cache, quick, arms, micro_base, progress, seeds)
        return 0
    if quick:
        raise UserError("--quick applies to the micro world: add --scale micro")
    if seeds and dry_run:
        print(f"training seeds: {', '.join(map(str, seeds))} (every trained arm once per seed: the plan's training "
              f"cost times {len(seeds)})")
    if dry_run:
        # the plan of the arms --methods names (all by default), as `rlvr reproduce` would run them
        chosen = dataclasses.replace(recipe, arms=_choose_arms(recipe, arms))
        print(format_plan(plan(chosen, path, data_dir)))
        return 0
    run_recipe(recipe, path, out or f"runs/reproduce/{recipe.name}", data_dir, arms, progress, seeds)
    return 0


__all__ = ["reproduce", "run_recipe", "run_micro_scale", "micro_recipe_for", "seeded", "train_config",
           "select_checkpoint"]
