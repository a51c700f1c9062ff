"""`rlvr` command line: a thin layer over functions the Python API exposes.

Each verb is a function `_cmd_<verb>(args) -> int` registered in `VERBS` with its argument setup.
User mistakes raise `UserError` and become one line on stderr with exit status 2; so does an `OSError`
that escapes a verb (a file that cannot be read or written, a full disk).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from rlvr.harness.errors import UserError

Setup = Callable[[argparse.ArgumentParser], None]
Handler = Callable[[argparse.Namespace], int]
VERBS: dict[str, tuple[str, Setup, Handler]] = {}


def verb(name: str, help_line: str, setup: Setup):
    def deco(fn: Handler) -> Handler:
        VERBS[name] = (help_line, setup, fn)
        return fn
    return deco


def _csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _seed_list(text: str) -> list[int]:
    """`--seeds 0,1,2`: distinct non-negative integers."""
    try:
        seeds = [int(x) for x in _csv_list(text)]
    except ValueError:
        raise UserError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds: expected distinct integers >= 0, got {text!r}")
    return seeds


# ---- table -------------------------------------------------------------------------------------

def _setup_table(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN", help="run directories (rows)")
    p.add_argument("--k", help="comma-separated k values per cell (default: 1,256, with 256 lowered to "
                               "the largest power of two <= n when runs have fewer samples)")
    p.add_argument("--metrics", metavar="LIST",
                   help="comma-separated cell metrics instead of --k: pass@K, avg@n, maj@K, gpass@K/TAU, mgpass@K, "
                        "no-answer, truncated (e.g. pass@1,pass@256,maj@16,avg@n; definitions: docs/metrics.md)")
    p.add_argument("--format", default="md", choices=["md", "latex", "csv"], help="output format (default: md)")
    p.add_argument("--reference", metavar="FILE", help="JSON file of published numbers, added as marked rows")
    p.add_argument("--tasks", type=_csv_list, help="comma-separated benchmark columns (default: all present)")
    p.add_argument("--boundary", metavar="BASE", help="instead: the boundary table against the base run BASE, per "
                   "run and task the problems BASE never solves in its samples that the run solves, and the reverse")
    p.add_argument("--allow-different-problems", action="store_true",
                   help="tabulate runs that scored a benchmark on different problem sets")
    p.add_argument("--out", metavar="FILE", help="write the table here instead of stdout")
    p.add_argument("--seed-std", action="store_true",
                   help="rows of several training seeds (run.json arm/train_seed) also show the std across seeds")


@verb("table", "result table: runs x benchmarks, 'pass@1 / pass@256' cells, domain averages", _setup_table)
def _cmd_table(a: argparse.Namespace) -> int:
    from rlvr.harness.report.metrics import incomplete_notes
    from rlvr.harness.report.tables import parse_ks, table

    if a.boundary:
        from rlvr.harness.report.boundary import boundary, boundary_csv, boundary_md
        from rlvr.harness.runs.store import Run

        if a.format == "latex":
            raise UserError("--boundary: writes md or csv, not latex")
        if not a.runs:
            raise UserError("--boundary: give the runs to set against the base run")
        rows = boundary(a.boundary, a.runs)
        _emit(boundary_csv(rows).rstrip("\n") if a.format == "csv" else boundary_md(rows, Run.open(a.boundary).label), a.out)
        return 0
    if a.k and a.metrics:
        raise UserError("--k and --metrics both choose the cells: give one (pass@K is a --metrics entry)")
    if a.metrics:
        from rlvr.harness.report.columns import parse_columns

        cells = parse_columns(a.metrics)
    else:
        cells = parse_ks(a.k) if a.k else None
    text = table(a.runs, cells, a.format, a.reference, a.tasks, a.allow_different_problems,
                 seed_std=a.seed_std)
    for note in incomplete_notes(a.runs):
        print(note, file=sys.stderr)
    _emit(text, a.out)
    return 0


# ---- plot --------------------------------------------------------------------------------------

def _setup_plot(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (one colour and marker each)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="image to write")
    p.add_argument("--tasks", type=_csv_list, help="comma-separated benchmarks (default: all present)")
    p.add_argument("--iterations", type=int, default=1000, help="bootstrap iterations for the bands")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--title", help="figure title (the caption about the bands is kept below it)")
    p.add_argument("--width", type=float, metavar="INCHES",
                   help="figure width; 3.5 fits one column of a two-column paper (default: 7, or 3.5 for one "
                        "benchmark); text is 8 pt at this width, raster images 300 dpi")
    p.add_argument("--allow-different-problems", action="store_true",
                   help="plot runs that scored a benchmark on different problem sets")
    p.add_argument("--maj", action="store_true",
                   help="also draw each run's maj@k curve (dashed) beside its pass@k curve; tasks without a final "
                        "answer (code) have none")
    p.add_argument("--delta", metavar="BASELINE",
                   help="plot each arm's paired difference in pass@k from the arm BASELINE (its arm name or "
                        "label) across k, with the seed-aware interval of rlvr compare")


@verb("plot", "pass@k curves per benchmark with bootstrap bands, one colour per run", _setup_plot)
def _cmd_plot(a: argparse.Namespace) -> int:
    from rlvr.harness.report.metrics import incomplete_notes
    from rlvr.harness.report.plots import plot_runs

    if a.delta:
        from rlvr.harness.report.plots import plot_delta

        if a.maj:
            raise UserError("--delta and --maj: a difference plot is of pass@k only; give one")
        path = plot_delta(a.runs, a.delta, a.out, a.tasks, title=a.title, width=a.width)
    else:
        path = plot_runs(a.runs, a.out, a.tasks, a.iterations, a.seed, title=a.title,
                         allow_different_problems=a.allow_different_problems, maj=a.maj, width=a.width)
    for note in incomplete_notes(a.runs):
        print(note, file=sys.stderr)
    print(path)
    return 0


# ---- compare -----------------------------------------------------------------------------------

def _setup_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("baseline", metavar="BASELINE",
                   help="run directory of the reference (e.g. a golden run); several runs of one arm, one per "
                        "training seed, joined by commas (or a folder holding them) make the test seed-aware")
    p.add_argument("candidate", metavar="CANDIDATE", help="run directory to check (or several, as BASELINE)")
    p.add_argument("--tolerance", type=float, default=1.0, metavar="POINTS",
                   help="a drop must exceed this many percentage points to count (default: 1.0)")
    p.add_argument("--alpha", type=float, default=0.05, help="one-sided test level (default: 0.05)")
    p.add_argument("--iterations", type=int, default=5000, help="bootstrap iterations (default: 5000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--correction", default="holm", choices=["holm", "none"],
                   help="multiple-testing correction over the (task, k) rows (default: holm)")
    p.add_argument("--k", help="comma-separated k values (default: 1, 2, 4, ... up to n)")
    p.add_argument("--metric", default="pass@k", choices=["pass@k", "maj@k", "avg@n"],
                   help="what is compared per problem (default: pass@k); maj@k at the same k values, avg@n (the "
                        "mean accuracy of all n samples, one row per task)")
    p.add_argument("--tasks", type=_csv_list, help="comma-separated benchmarks (default: all shared)")
    p.add_argument("--max-error-rate", type=float, default=0.0, metavar="FRACTION",
                   help="fail (exit 1) when more than this fraction of either run's samples could not be verified "
                        "(verifier errors, which pass@k leaves out; default: 0, any error fails; rerun the run's "
                        "`rlvr eval` or `rlvr regrade` to verify them again)")


@verb("compare", "paired-bootstrap pass@k regression check; exit 1 on a significant drop", _setup_compare)
def _cmd_compare(a: argparse.Namespace) -> int:
    from rlvr.harness.report.compare import compare_runs, compare_seeded, side_paths
    from rlvr.harness.report.metrics import incomplete_notes
    from rlvr.harness.report.tables import parse_ks

    if not 0 <= a.max_error_rate <= 1:
        raise UserError(f"--max-error-rate must be in [0, 1], got {a.max_error_rate}")
    if not 0 <= a.tolerance < float("inf"):   # (NaN fails this too)
        raise UserError(f"--tolerance must be a number of points >= 0, got {a.tolerance}")
    sides = side_paths(a.baseline), side_paths(a.candidate)
    if len(sides[0]) == 1 and len(sides[1]) == 1:
        res = compare_runs(sides[0][0], sides[1][0], a.tolerance, a.alpha, a.iterations, a.seed,
                           parse_ks(a.k) if a.k else None, a.tasks, a.correction, metric=a.metric)
    else:      # several training seeds on a side: the seed-aware test (harness/report/seeds.py)
        if a.metric != "pass@k":
            raise UserError(f"--metric {a.metric}: the seed-aware test (several runs on a side) compares pass@k "
                            f"only")
        res = compare_seeded(sides[0], sides[1], a.tolerance, a.alpha, parse_ks(a.k) if a.k else None, a.tasks,
                             a.correction)
    for note in incomplete_notes(sides[0] + sides[1]):
        print(note, file=sys.stderr)
    over = [(path, rate) for path, rate in res.error_rates.items() if rate > a.max_error_rate]
    for t, n in res.unshared.items():
        if n:
            print(f"rlvr: note: task {t}: {n} problems are in only one run, or have no verified sample in one, "
                  f"and were left out", file=sys.stderr)
    print(res.render())
    if over:
        print("\n" + "; ".join(f"ERRORS: {100 * rate:.2f}% of the samples of {path} could not be verified"
                                for path, rate in over)
              + f" (more than --max-error-rate {a.max_error_rate:g}): the comparison cannot pass")
        return 1
    if res.regressions:
        worst = min(res.regressions, key=lambda r: r.diff)
        print(f"\nREGRESSION: {len(res.regressions)} (task, k) cells dropped by more than {a.tolerance:g} "
              f"points (worst: {worst.task} {worst.name} {100 * worst.diff:+.2f})")
        return 1
    print("\nno regression")
    return 0


# ---- regrade -----------------------------------------------------------------------------------

def _setup_regrade(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory (its samples.jsonl must hold the completions)")
    p.add_argument("--tasks", type=_csv_list, help="comma-separated tasks of the run (default: all)")
    p.add_argument("--data-dir", help="where the benchmark data lives (default: $RLVR_DATA_DIR), as for the run")
    p.add_argument("--workers", type=int, help="verifier processes (default: the CPUs)")
    p.add_argument("--deadline", type=float, default=10.0, metavar="S",
                   help="seconds one check may take before it counts as a verifier error (default: 10)")


@verb("regrade", "verify a run's stored completions again with the current verifiers (no sampling)", _setup_regrade)
def _cmd_regrade(a: argparse.Namespace) -> int:
    from rlvr.harness.eval.regrade import regrade, render

    if a.workers is not None and a.workers < 1:
        raise UserError(f"--workers must be >= 1, got {a.workers}")
    if not a.deadline > 0:
        raise UserError(f"--deadline must be > 0, got {a.deadline}")
    print(render(regrade(a.run, a.tasks, a.data_dir, a.workers, a.deadline)))
    return 0


# ---- tasks -------------------------------------------------------------------------------------

def _setup_tasks(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="local benchmark directory (default: $RLVR_DATA_DIR)")


@verb("tasks", "list the benchmarks: name, domain, size, source, whether the data is available here", _setup_tasks)
def _cmd_tasks(a: argparse.Namespace) -> int:
    from rlvr.tasks.loading import local_file
    from tabulate import tabulate

    from rlvr import tasks as registry

    rows = []
    suites = {t: s for s, names in registry.SUITES.items() if s != "all10" for t in names}
    for name in registry.available():
        task = registry.get(name)
        hub = task.hub.path + (f" ({task.hub.name})" if task.hub and task.hub.name else "") if task.hub else "–"
        path = local_file(task, a.data_dir)
        if not task.local_dir and task.hub is None:   # generated in code (the micro world): always here
            try:
                size, state = str(len(task.load(a.data_dir))), "generated"
            except (NotImplementedError, UserError):  # a task with no evaluation split (training only)
                size, state = "–", "no evaluation split"
        elif path is not None:
            try:
                size, state = str(len(task.load(a.data_dir))), f"local: {path.parent}"
            except UserError as e:
                size, state = "?", f"local data unusable: {e}"
        else:
            size, state = "?", "hub only (not reachable offline)" if task.hub else "missing"
        rows.append([name, task.domain, suites.get(name, "extra"), size, hub, state])
    for name in (n for names in registry.SUITES.values() for n in names):
        if name not in registry.available() and name not in [r[0] for r in rows]:
            rows.append([name, "?", suites.get(name, ""), "?", "–", "not implemented yet"])
    print(tabulate(rows, headers=["task", "domain", "suite", "problems", "hub source", "here"], tablefmt="github"))
    print("\nsuites: " + "; ".join(f"{s} = {', '.join(n)}" for s, n in registry.SUITES.items()))
    return 0


# ---- init-model --------------------------------------------------------------------------------

def _setup_init_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="directory to write the model and tokenizer to")
    p.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary size (default: 1024)")
    p.add_argument("--hidden-size", type=int, default=64, help="hidden size (default: 64)")
    p.add_argument("--layers", type=int, default=2, help="transformer layers (default: 2)")
    p.add_argument("--heads", type=int, default=4, help="attention heads; hidden size / heads must be even "
                                                         "(default: 4; key/value heads: half of them when even)")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model directory")


@verb("init-model", "build a small Qwen2-architecture model and tokenizer offline, in HF format", _setup_init_model)
def _cmd_init_model(a: argparse.Namespace) -> int:
    from rlvr.harness.sample.models import TinyModelSpec, init_model

    spec = TinyModelSpec(vocab_size=a.vocab_size, hidden_size=a.hidden_size, num_layers=a.layers,
                         num_heads=a.heads, num_kv_heads=a.heads // 2 if a.heads % 2 == 0 else a.heads,
                         seed=a.seed)
    print(init_model(a.out, spec, overwrite=a.overwrite))
    return 0


# ---- eval --------------------------------------------------------------------------------------

def _setup_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="hub id or local directory of a causal LM")
    p.add_argument("--tasks", required=True, help="comma-separated tasks and suites (math6, logic2, code2, all10)")
    p.add_argument("--out", required=True, help="run directory (resumed when it exists with the same settings)")
    p.add_argument("--n", type=int, default=16, help="samples per problem (default: 16)")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default: 0.6)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default: 0.95)")
    p.add_argument("--top-k", type=int, default=0, help="top-k sampling, 0 = off (default: 0)")
    p.add_argument("--max-new-tokens", type=int, default=4096, help="generation limit (default: 4096)")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable); completion-style templates add their task's own (bbh cot_3shot: a blank line; humaneval completion: the Codex stop sequences)")
    p.add_argument("--seed", type=int, default=0, help="run seed; sample seeds derive from it (default: 0)")
    p.add_argument("--engine", default="hf", choices=["hf", "vllm"], help="sampler (default: hf)")
    p.add_argument("--template", help="prompt template: NAME for every task offering it, or task=NAME,...")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="scoring option for every task that accepts it (repeatable): answer_mode=any_boxed "
                        "(math: correct if any \\boxed{} matches, as BBG scores), fallback=true")
    p.add_argument("--data-dir", help="local benchmark directory (default: $RLVR_DATA_DIR, then the hub)")
    p.add_argument("--shard", default="0/1", help="evaluate shard i of N of the problems (default: 0/1)")
    p.add_argument("--limit", type=int, help="only the first L problems of each task")
    p.add_argument("--chunk", type=int, default=64,
                   help="samples of one problem per batch (default: 64). The same chunk gives the same samples, so a "
                        "resume keeps it; larger is faster and holds more KV memory (benchmarks/bench_sampling.py)")
    p.add_argument("--workers", type=int, help="verifier processes (default: all CPUs)")
    p.add_argument("--deadline", type=float, default=10.0, help="seconds per verification (default: 10); code tasks get at least their own test time limits")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    p.add_argument("--revision", help="hub revision of the model")
    p.add_argument("--no-completions", action="store_true", help="do not store completion texts")
    p.add_argument("--label", help="row label in tables and plots (a resume may change it)")


@verb("eval", "sample n completions per problem, verify them, write a run directory with pass@k", _setup_eval)
def _cmd_eval(a: argparse.Namespace) -> int:
    from rlvr.harness.eval.evaluate import EvalConfig, evaluate, parse_shard, parse_templates
    from rlvr.harness.sample.engine import SamplingParams
    from rlvr.harness.verify.task_options import parse_task_options
    from rlvr.tasks import expand

    names = expand(a.tasks)
    cfg = EvalConfig(
        model=a.model, tasks=names, out=a.out, n=a.n,
        sampling=SamplingParams(a.temperature, a.top_p, a.top_k, a.max_new_tokens, tuple(a.stop)),
        seed=a.seed, engine=a.engine, templates=parse_templates(a.template, names),
        task_options=parse_task_options(a.task_option, names), data_dir=a.data_dir,
        shard=parse_shard(a.shard), limit=a.limit, chunk=a.chunk, workers=a.workers, deadline_s=a.deadline,
        device=a.device, dtype=a.dtype, revision=a.revision, keep_completions=not a.no_completions,
        label=a.label)
    evaluate(cfg)
    return 0


# ---- merge -------------------------------------------------------------------------------------

def _setup_merge(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="shard run directories of one evaluation")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--allow-partial", action="store_true", help="merge even when some shards are missing")


@verb("merge", "combine the shards of one evaluation into one run (refuses differing settings)", _setup_merge)
def _cmd_merge(a: argparse.Namespace) -> int:
    from rlvr.harness.eval.merge import merge_runs

    run = merge_runs(a.runs, a.out, a.allow_partial)
    print(run.path)
    return 0


# ---- methods -----------------------------------------------------------------------------------

def _setup_methods(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show one method's full documentation")


@verb("methods", "list the RLVR methods with their hyperparameters and defaults", _setup_methods)
def _cmd_methods(a: argparse.Namespace) -> int:
    from rlvr import methods

    names = [a.name] if a.name else methods.available()
    for name in names:
        if name not in methods.available():
            raise UserError(f"unknown method {name!r} (known: {', '.join(methods.available())})")
        d = methods.describe(name)
        print(f"{name}: {d['summary']}")
        if a.name:
            print("\n" + d["doc"] + "\n")
        for f in d["fields"]:
            print(f"    {f['name']:<24} {f['type']:<28} default {f['default']!r}")
        print()
    return 0


# ---- train -------------------------------------------------------------------------------------

def _setup_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training config (YAML); see reproduce/ for examples")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set steps=20 --set method.kl_coef=0 (repeatable)")
    p.add_argument("--backend", default="local", choices=["local", "verl"],
                   help="training backend: local (this process, CPU or one GPU) or verl (multi-GPU, "
                        "multi-node; reads the config's optional verl: section) (default: local)")
    p.add_argument("--print-only", action="store_true",
                   help="with --backend verl: write the data files and print the verl launch, do not run it")


@verb("train", "train a model with an RLVR method (resumes from the last checkpoint in the config's out: "
               "directory)", _setup_train)
def _cmd_train(a: argparse.Namespace) -> int:
    if a.backend == "verl":
        from rlvr.harness.backends.verl import launch

        plan = launch.prepare(a.config, a.set)
        print(plan.render(), flush=True)
        return 0 if a.print_only else launch.run(plan)
    if a.print_only:
        raise UserError("--print-only: only with --backend verl")
    from rlvr.harness.config import load_config
    from rlvr.harness.train.trainer import TrainConfig, train

    cfg = load_config(TrainConfig, a.config, a.set, ignore=("verl",))   # verl: is for --backend verl
    if not (Path(cfg.out) / "checkpoints" / "last").exists():   # (a resume starts from its checkpoint)
        from rlvr.harness.config import field_source
        from rlvr.harness.sample.models import resolve_model

        resolve_model(cfg.model, what=field_source("model", a.config, a.set))
    _check_creatable(cfg.out, field_source("out", a.config, a.set))
    print(train(cfg))
    return 0


# ---- reproduce ---------------------------------------------------------------------------------

def _setup_reproduce(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="recipe: micro (the embedded default), a folder of reproduce/ (nsr, casp, casp_logic, "
                                "casp_code, lp_reg, bbg) or a path to a recipe.yaml")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the recipe, check model/data/GPUs here, print the plan and a GPU-hour estimate")
    p.add_argument("--scale", default="full", choices=["full", "micro"],
                   help="full: the paper's setting (default); micro: the recipe's method configs on the micro "
                        "world, on CPU")
    p.add_argument("--quick", action="store_true", help="micro world: fewer problems, K = 64, fewer RL steps "
                                                        "(about 3 minutes on 2 cores, every training seed)")
    p.add_argument("--out", help="output directory (default: runs/micro[-quick], runs/reproduce/NAME[-micro])")
    p.add_argument("--cache", default=".cache/rlvr", help="where base models built here are cached (--rebuild-base, "
                                                          "recipes of another base) (default: .cache/rlvr)")
    p.add_argument("--methods", help="comma-separated methods (micro: the default arms and any other registered "
                                     "method of OPTIONAL_METHODS, e.g. dapo,gspo,cispo,rloo) or arm ids (recipes) "
                                     "to run (default: the recipe's arms)")
    p.add_argument("--seeds", help="comma-separated training seeds: every trained arm is trained and evaluated once "
                                   "per seed, into runs named ARM-sSEED (default: the micro recipe's 0,1,2; a "
                                   "paper recipe's one seed)")
    p.add_argument("--data-dir", help="local benchmark directory (default: $RLVR_DATA_DIR)")
    p.add_argument("--rebuild-base", action="store_true",
                   help="micro world: pre-train the base model from scratch instead of loading the shipped one, "
                        "and say whether it reproduced the shipped weights bit for bit")


@verb("reproduce", "run a paper's recipe (--dry-run: plan and availability; --scale micro: on CPU); "
                   "'micro' trains every method on CPU and compares pass@k", _setup_reproduce)
def _cmd_reproduce(a: argparse.Namespace) -> int:
    if a.name == "micro" or a.scale == "micro":
        # before anything imports torch: PyTorch reads ATEN_CPU_CAPABILITY once, on import
        from rlvr.harness import cpu_isa

        cpu_isa.pin()
    only = _csv_list(a.methods) if a.methods else None
    seeds = _seed_list(a.seeds) if a.seeds else None
    if a.rebuild_base and a.name != "micro":
        raise UserError("--rebuild-base applies to `rlvr reproduce micro`")
    if a.name != "micro":
        from rlvr.harness.reproduce.runner import reproduce

        return reproduce(a.name, dry_run=a.dry_run, scale=a.scale, quick=a.quick, out=a.out, cache=a.cache,
                         arms=only, data_dir=a.data_dir, seeds=seeds)
    if a.dry_run:
        raise UserError("--dry-run applies to the paper recipes; `rlvr reproduce micro --quick` is the short run")
    from rlvr.harness.reproduce.micro import run_micro

    out = a.out or ("runs/micro-quick" if a.quick else "runs/micro")
    run_micro(out, a.cache, quick=a.quick, only=only, rebuild_base=a.rebuild_base, seeds=seeds)
    return 0


# ---- export-lm-eval ----------------------------------------------------------------------------

def _setup_export_lm_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", required=True, help="comma-separated tasks and suites (math6, logic2, code2, all10)")
    p.add_argument("--out", required=True, help="folder for the task YAMLs and their helper (lm_eval --include_path)")
    p.add_argument("--n", type=int, default=16, help="samples per problem, lm-eval's repeats (default: 16)")
    p.add_argument("--k", help="comma-separated pass@k columns (default: 1, 2, 4, ... up to n)")
    p.add_argument("--template", help="prompt template: NAME for every task offering it, or task=NAME,...")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default: 0.6)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default: 0.95)")
    p.add_argument("--top-k", type=int, default=0, help="top-k sampling, 0 = not set (default: 0)")
    p.add_argument("--max-new-tokens", type=int, default=4096, help="generation limit (default: 4096)")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable); completion-style templates add their task's own (bbh cot_3shot: a blank line; humaneval completion: the Codex stop sequences)")
    p.add_argument("--limit", type=int, help="only the first L problems of each task")
    p.add_argument("--data-dir", help="benchmark directory to bake in (default at run time: $RLVR_DATA_DIR)")
    p.add_argument("--model", help="tokenizer for chat-template prompts (default at run time: lm-eval's "
                                   "tokenizer= or pretrained= model argument)")
    p.add_argument("--deadline", type=float, default=10.0, help="seconds per verification (default: 10); code tasks get at least their own test time limits")
    p.add_argument("--workers", type=int, help="verifier processes (default: all CPUs)")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a scoring option of the tasks that accept it, as in rlvr eval (repeatable)")


@verb("export-lm-eval", "write our tasks as lm-eval task YAMLs (our prompts, verifiers, unbiased pass@k)",
      _setup_export_lm_eval)
def _cmd_export_lm_eval(a: argparse.Namespace) -> int:
    from rlvr.harness.backends.lmeval import ExportConfig, export_lm_eval
    from rlvr.harness.eval.evaluate import parse_templates
    from rlvr.harness.report.tables import parse_ks
    from rlvr.harness.sample.engine import SamplingParams
    from rlvr.harness.verify.task_options import parse_task_options
    from rlvr.tasks import expand

    names = expand(a.tasks)
    cfg = ExportConfig(task_options=parse_task_options(a.task_option, names),
        out=a.out, tasks=names, n=a.n, ks=parse_ks(a.k) if a.k else None,
        templates=parse_templates(a.template, names),
        sampling=SamplingParams(a.temperature, a.top_p, a.top_k, a.max_new_tokens, tuple(a.stop)),
        limit=a.limit, data_dir=a.data_dir, model=a.model, deadline_s=a.deadline, workers=a.workers)
    for path in export_lm_eval(cfg):
        print(path)
    return 0


# ---- metrics ------------------------------------------------------------------------------------

def _setup_metrics(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (each needs its samples.jsonl)")
    p.add_argument("--iterations", type=int, default=1000, help="bootstrap iterations for the intervals (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")


@verb("metrics", "recompute metrics.json of existing runs from their samples (pass@k, avg@n, maj@k, G-Pass@k, "
                 "no-answer and truncation rates); samples.jsonl is only read", _setup_metrics)
def _cmd_metrics(a: argparse.Namespace) -> int:
    from rlvr.harness.report.metrics import check_bootstrap_args, update_metrics
    from rlvr.harness.runs.store import Run

    check_bootstrap_args(a.iterations, a.seed)
    runs = [Run.open(p) for p in a.runs]
    for run in runs:     # every run is checked before any metrics.json is written
        if not run.samples_path.exists():
            raise UserError(f"{run.path}: no samples.jsonl, so its metrics cannot be recomputed (a run kept "
                            f"without samples, like results/micro, needs its command run again)")
    for run in runs:
        metrics = update_metrics(run, iterations=a.iterations, seed=a.seed)
        for task, m in metrics["tasks"].items():
            curve = m["curve"]
            errors = f", {m['errors']} samples not verified (errors)" if m.get("errors") else ""
            if curve is None:
                print(f"{run.path}: {task}: {len(m['problems'])} problems, no judged sample{errors}")
                continue
            print(f"{run.path}: {task}: {curve['problems']} problems, n={m['n_min']}{errors}"
                  + "".join(f"  pass@{k}={100 * v:.1f}" for k, v in zip(curve["ks"], curve["mean"], strict=True)))
            maj = m.get("maj")
            top = maj["ks"][-1] if maj else None
            print(f"{run.path}: {task}: avg@n {_pct(m.get('avg', {}).get('mean'))}, "
                  + (f"maj@{top} {_pct(maj['mean'][-1])}" if maj else f"maj@k {m.get('maj_note', 'n/a')}")
                  + f", no-answer {_pct(m['no_answer_rate'])}, truncated {_pct(m['truncation_rate'])}, "
                  f"mean tokens correct {_num(m.get('mean_tokens_correct'))} / incorrect "
                  f"{_num(m.get('mean_tokens_incorrect'))}")
        print(run.path / "metrics.json")
    return 0


def _pct(v) -> str:
    return "unknown" if v is None else f"{100 * v:.1f}%"


def _num(v) -> str:
    return "–" if v is None else f"{v:.1f}"


# ---- plumbing ----------------------------------------------------------------------------------

def _emit(text: str, out: str | None) -> None:
    if out:
        try:
            Path(out).parent.mkdir(parents=True, exist_ok=True)   # as plot and merge do
            with open(out, "w", encoding="utf-8") as f:
                f.write(text if text.endswith("\n") else text + "\n")
        except OSError as e:
            raise UserError(f"--out: cannot write {out} ({e.strerror})") from None
        print(out)
    else:
        print(text)


def version_text() -> str:
    """`rlvr --version`: the package version, and the git commit when running from a source checkout."""
    from rlvr.harness import __version__
    from rlvr.harness.provenance import REPO_ROOT, git_state

    text = f"rlvr-harness {__version__}"
    if (Path(REPO_ROOT) / "pyproject.toml").is_file() and (Path(REPO_ROOT) / ".git").exists():
        git = git_state()
        if git["sha"]:
            text += f" (git {git['sha'][:12]}{', modified' if git['dirty'] else ''})"
    return text


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version (and the git commit of a source checkout) and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def _check_creatable(path: str, what: str) -> None:
    """A UserError naming `what` unless directory `path` exists or can be created (tried, then undone)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UserError(f"{what}: {path} exists and is not a directory")
    missing = [d for d in (p, *p.parents) if not d.exists()]
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{what}: cannot create {path} ({e.strerror or e})") from None
    for d in missing:          # deepest first: leave nothing behind
        d.rmdir()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlvr", description="RLVR benchmark and reproducibility harness.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run 'rlvr VERB --help' for a verb's flags.")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (help_line, setup, fn) in VERBS.items():
        p = sub.add_parser(name, help=help_line, description=help_line)
        setup(p)
        p.set_defaults(func=fn)
    return parser


def _quiet_library_bars() -> None:
    """Hugging Face's own progress bars (loading weights, writing shards, downloads) redraw with carriage
    returns; where stderr is a log rather than a terminal, switch them off (ours write plain lines,
    `rlvr.harness.progress`)."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")   # read when huggingface_hub is imported
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    import os

    if not sys.stderr.isatty():
        _quiet_library_bars()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        code = args.func(args)
        sys.stdout.flush()   # so that a closed pipe shows here, not as a warning when Python exits
        return code
    except UserError as e:
        print(f"rlvr: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlvr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`rlvr methods | head`): stop quietly with the status a SIGPIPE gives git or
        # ls (128 + 13). stdout now points at devnull, so Python's final flush has nowhere to fail
        # (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        # a file that cannot be read or written, a full disk, a network failure: the machine's state,
        # not a bug of ours, so one line (the verbs name their flags where they can; this is the net)
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"rlvr: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
