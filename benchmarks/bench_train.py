"""Our training step against TRL's GRPOTrainer, side by side on the micro world (needs `pip install trl==1.16.0`;
`tox -e bench` installs it; the harness itself never imports TRL).

    python benchmarks/bench_train.py [--rounds 8] [--steps 30] [--threads 1] [--json results/bench/train-cpu.json]

Both sides train the shipped micro base (harness/reproduce/assets/micro-base) on the micro world's training
prompts in the same order (our trainer's seeded shuffle; TRL gets them as a dataset in that order with
`shuffle_dataset=False`), as a new user would set them up: 16 prompts x 8 rollouts per step, 48 new tokens,
temperature 1 (no top-p/top-k cut), fp32, no KL, AdamW at a constant 2e-4 (betas 0.9/0.999, eps 1e-8, no weight
decay), gradient clipping at 1.0, one optimizer step per batch of 128 completions in two micro-batches of 64, GRPO's
loss with group-normalised advantages and per-sequence token means (ours: method grpo with kl_coef 0, its
defaults; TRL: loss_type="grpo", scale_rewards="group", beta=0), gradient checkpointing and bf16 off,
report_to="none", no checkpoints during the run. Rewards: 1 when the task's verifier says correct, else 0 (ours
through the verifier pool; TRL's reward function submits to the same running pool).

Rounds are interleaved (ours then TRL, then TRL then ours, ...), each a fresh run of --steps steps on each
side; a run's step time is the median over its steps after the first (the first step warms the allocator and
BLAS). The ratio of a round is ours / TRL; the result is the median ratio with its range over rounds, and the
per-phase medians (generation, verification, update: ours from its log's time_* fields, TRL's from timers
wrapped around its `_generate` and reward function; its update is the rest of the step). Both sides run with
the same torch thread count (--threads, set here and recorded).

Learning: each side's mean reward over the last third of the first round's steps, against a frozen control,
the base model's own rollouts (our sampler, the same prompts, never updated) scored by the same verifier
(computed before the rounds, which also warms the verifier pool).

Absolute times only mean something on the machine that printed them; the JSON records the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = ROOT / "harness" / "reproduce" / "assets" / "micro-base"
PROMPTS, G, NEW_TOKENS, LR, MICRO = 16, 8, 48, 2e-4, 64

DIFFERENCES = [
    "threads: both sides run torch with --threads threads in one process, one side at a time; the pool's "
    "worker processes verify beside it",
    "sampling: ours draws each token by inverse-CDF sampling with a per-sample counter-based uniform (seeded per "
    "problem and sample) and decodes training rollouts with the multi-prompt shared-prefix decoder; TRL calls "
    "transformers' generate (multinomial sampling from torch's global generator) on a left-padded batch. Both "
    "sample from softmax(logits / 1.0) without cuts, so the samples differ but not their distribution",
    "old log-probs: both skip the separate pass (one epoch, one mini-batch) and use the detached current "
    "log-probs",
    "verification: both sides use the same running verifier pool (TRL's reward function submits the batch's "
    "completions to it and waits); ours submits each rollout as it finishes decoding, so verification overlaps "
    "the decoding of the longer ones, TRL calls its reward function after generation",
    "logging: ours computes per-step entropy and top-1 mass and writes a JSON line per step; TRL logs its own "
    "metrics (report_to='none')",
    "micro-batches: ours cuts the 128 rows into micro-batches of 64 after a seeded shuffle, rows of similar "
    "length together (GRPO's loss does not depend on the split); TRL takes the generated batch in its order",
    "end of run: ours writes a checkpoint after the last step (outside the timed steps); TRL saves nothing "
    "(save_strategy='no')",
]


def _problems():
    import random

    from rlvr.harness.config import from_dict
    from rlvr.harness.reproduce.micro import MicroRecipe
    from rlvr.harness.train.trainer import TrainConfig, training_problems

    recipe = MicroRecipe()
    cfg = from_dict(TrainConfig, _our_config(recipe, "unused", 1))
    problems = training_problems(cfg)
    order = list(range(len(problems)))
    random.Random(cfg.seed).shuffle(order)          # the trainer's own order (Trainer.__init__)
    return [problems[i] for i in order]


def _our_config(recipe, out: str, steps: int) -> dict:
    return {"model": str(BASE), "out": out, "tasks": list(recipe.families), "method": {"name": "grpo", "kl_coef": 0.0},
            "prompts_per_step": PROMPTS, "rollouts_per_prompt": G, "micro_batch_size": MICRO, "steps": steps,
            "optimizer": {"lr": LR}, "sampling": {"temperature": 1.0, "max_new_tokens": NEW_TOKENS},
            "seed": recipe.seed, "label": "bench"}


def run_ours(steps: int, out: Path, pool) -> dict:
    import json

    from rlvr.harness.config import from_dict
    from rlvr.harness.reproduce.micro import MicroRecipe
    from rlvr.harness.train.trainer import TrainConfig, train

    cfg = from_dict(TrainConfig, _our_config(MicroRecipe(), str(out), steps))
    train(cfg, progress=False, pool=pool)
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    return {"step_s": [r["time_step_s"] for r in log], "generate_s": [r["time_generate_s"] for r in log],
            "verify_s": [r["time_rollout_s"] - r["time_generate_s"] for r in log],
            "update_s": [r["time_update_s"] for r in log], "reward": [r["reward_mean"] for r in log]}


def run_trl(steps: int, out: Path, problems, pool) -> dict:
    from datasets import Dataset
    from rlvr.harness.sample.models import load_model
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model, tok = load_model(str(BASE))
    rows = problems[: steps * PROMPTS]
    ds = Dataset.from_list([{"prompt": task.prompt(p, None, tok), "row": i} for i, (task, p) in enumerate(rows)])
    timers = {"generate": 0.0, "verify": 0.0}

    def reward(prompts, completions, row, **kwargs):
        t = time.perf_counter()
        futures = [pool.submit(rows[r][0].name, rows[r][1], c) for r, c in zip(row, completions, strict=True)]
        out = [1.0 if f.result().verdict.correct else 0.0 for f in futures]
        timers["verify"] += time.perf_counter() - t
        return out

    args = GRPOConfig(output_dir=str(out), per_device_train_batch_size=MICRO, gradient_accumulation_steps=2,
                      num_generations=G, max_completion_length=NEW_TOKENS, temperature=1.0, top_p=1.0, top_k=0,
                      learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                      adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, beta=0.0,
                      loss_type="grpo", scale_rewards="group", num_iterations=1, gradient_checkpointing=False,
                      bf16=False, fp16=False, report_to="none", max_steps=steps, logging_steps=1,
                      save_strategy="no", shuffle_dataset=False, seed=0, use_cpu=True, dataloader_num_workers=0,
                      disable_tqdm=True, remove_unused_columns=False)
    marks: list[float] = []
    phases: list[tuple[float, float]] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            marks.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            marks.append(time.perf_counter())
            phases.append((timers["generate"], timers["verify"]))
            timers["generate"] = timers["verify"] = 0.0

    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok,
                          callbacks=[Clock()])
    trainer.remove_callback(PrinterCallback)       # its per-step dicts on stdout (ours prints nothing either)
    real = trainer._generate

    def timed_generate(*a, **k):
        t = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            timers["generate"] += time.perf_counter() - t

    trainer._generate = timed_generate
    trainer.train()
    step_s = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    return {"step_s": step_s, "generate_s": [g for g, _ in phases], "verify_s": [v for _, v in phases],
            "update_s": [s - g - v for s, (g, v) in zip(step_s, phases, strict=True)], "reward": rewards}


def frozen_control(steps: int, problems, pool) -> list[float]:
    """Mean reward per step of the base model's own rollouts on each step's prompts (never updated). Run before
    the rounds, it also warms the verifier pool (the first verifications of a fresh pool are slower)."""
    from rlvr.harness.sample.engine import HFEngine, SamplingParams, sample_seed
    from rlvr.harness.sample.models import load_model

    model, tok = load_model(str(BASE))
    engine = HFEngine(model, tok, merge_prompts=True)
    params = SamplingParams(1.0, 1.0, 0, NEW_TOKENS)
    out = []
    for s in range(steps):
        batch = problems[s * PROMPTS:(s + 1) * PROMPTS]
        reqs = [(t.prompt(p, None, tok), [sample_seed(0, f"control/{s}", p.id, i) for i in range(G)]) for t, p in batch]
        comps = engine.generate(reqs, params)
        futures = [pool.submit(t.name, p, c.text) for (t, p), cs in zip(batch, comps, strict=True) for c in cs]
        scores = [f.result().verdict.correct for f in futures]
        out.append(sum(scores) / len(scores))
    return out


def _after_first(xs: list[float]) -> float:
    return statistics.median(xs[1:] if len(xs) > 1 else xs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8, help="interleaved rounds (a fresh run of each side per round)")
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per run (the micro recipe's rl_steps)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both sides")
    ap.add_argument("--json", help="also write the measurements here (results/bench/train-cpu.json)")
    ap.add_argument("--note", help="a note recorded with the settings (e.g. that the machine was shared)")
    a = ap.parse_args(argv)
    if a.rounds < 1 or a.steps < 2:
        ap.error("--rounds must be >= 1 and --steps >= 2 (the first step of a run is not timed)")

    import torch
    from rlvr.harness.provenance import collect, write_measurements
    from rlvr.harness.reproduce.micro import MicroRecipe
    from rlvr.harness.verify.pool import VerifierPool

    try:
        import trl
    except ImportError:
        print("bench_train: TRL is not installed (pip install trl==1.16.0, or tox -e bench)", file=sys.stderr)
        return 2
    provenance = collect(["benchmarks/bench_train.py", *(argv if argv is not None else sys.argv[1:])])
    torch.set_num_threads(a.threads)
    problems = _problems()
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp, \
            VerifierPool(preload=sorted({type(t).__module__ for t, _ in problems})) as pool:
        control = frozen_control(a.steps, problems, pool)
        for r in range(a.rounds):
            sides = [("ours", ours), ("trl", theirs)]
            for name, acc in (sides if r % 2 == 0 else sides[::-1]):
                out = Path(tmp) / f"{name}-{r}"
                res = run_ours(a.steps, out, pool) if name == "ours" else run_trl(a.steps, out, problems, pool)
                acc.append(res)
                print(f"round {r + 1}/{a.rounds} {name}: step {_after_first(res['step_s']):.3f} s "
                      f"(generate {_after_first(res['generate_s']):.3f}, verify {_after_first(res['verify_s']):.3f}, "
                      f"update {_after_first(res['update_s']):.3f})", flush=True)

    ratios = [_after_first(o["step_s"]) / _after_first(t["step_s"]) for o, t in zip(ours, theirs, strict=True)]

    def phases(runs):
        return {k: round(statistics.median(_after_first(x[f"{k}_s"]) for x in runs), 4)
                for k in ("step", "generate", "verify", "update")}

    tail = max(1, a.steps // 3)

    def learned(rewards):
        last = rewards[-tail:]
        ctl = control[-tail:]
        return {"reward_last_third": round(sum(last) / len(last), 4), "control_last_third": round(sum(ctl) / len(ctl), 4),
                "gain": round(sum(last) / len(last) - sum(ctl) / len(ctl), 4),
                "learns": sum(last) / len(last) > sum(ctl) / len(ctl), "reward_per_step": [round(x, 4) for x in rewards]}

    results = {"ratio_median": round(statistics.median(ratios), 3), "ratio_min": round(min(ratios), 3),
               "ratio_max": round(max(ratios), 3), "ratios": [round(x, 3) for x in ratios],
               "ours_s": phases(ours), "trl_s": phases(theirs),
               "learning": {"ours": learned(ours[0]["reward"]), "trl": learned(theirs[0]["reward"]),
                            "control_per_step": [round(x, 4) for x in control]},
               "differences": DIFFERENCES}
    settings = {"rounds": a.rounds, "steps": a.steps, "torch_threads": torch.get_num_threads(),
                "prompts_per_step": PROMPTS, "rollouts_per_prompt": G, "max_new_tokens": NEW_TOKENS, "lr": LR,
                "micro_batch_size": MICRO, "base": str(BASE.relative_to(ROOT)), "trl": trl.__version__,
                "families": list(MicroRecipe().families), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "note": a.note}
    o, t = results["ours_s"], results["trl_s"]
    print(f"\nstep time, median over {a.rounds} rounds (s): ours {o['step']:.3f}  TRL {t['step']:.3f}")
    for k in ("generate", "verify", "update"):
        print(f"  {k:<9} ours {o[k]:.3f}  TRL {t[k]:.3f}")
    print(f"ours / TRL: {results['ratio_median']:.2f}x (rounds {results['ratio_min']:.2f} to {results['ratio_max']:.2f})")
    for side in ("ours", "trl"):
        lr_ = results["learning"][side]
        print(f"learning ({side}): reward over the last {tail} steps {lr_['reward_last_third']:.3f} against the "
              f"frozen control's {lr_['control_last_third']:.3f} ({'learns' if lr_['learns'] else 'DOES NOT LEARN'})")
    print("remaining differences between the setups:")
    for d in DIFFERENCES:
        print(f"  - {d}")
    if a.json:
        write_measurements(a.json, settings, results, provenance)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
