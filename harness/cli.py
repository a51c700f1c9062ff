"""`rlvr` command line: a thin layer over functions the Python API exposes.

Each verb is a function `_cmd_<verb>(args) -> int` registered in `VERBS` with its argument setup.
User mistakes raise `UserError` and become one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from harness.errors import UserError

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


# ---- table -------------------------------------------------------------------------------------

def _setup_table(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN", help="run directories (rows)")
    p.add_argument("--k", help="comma-separated k values per cell (default: 1,256, with 256 lowered to "
                               "the largest power of two <= n when runs have fewer samples)")
    p.add_argument("--format", default="md", choices=["md", "latex", "csv"], help="output format (default: md)")
    p.add_argument("--reference", metavar="FILE", help="JSON file of published numbers, added as marked rows")
    p.add_argument("--tasks", type=_csv_list, help="comma-separated benchmark columns (default: all present)")
    p.add_argument("--allow-different-problems", action="store_true",
                   help="tabulate runs that scored a benchmark on different problem sets")
    p.add_argument("--out", metavar="FILE", help="write the table here instead of stdout")


@verb("table", "result table: runs x benchmarks, 'pass@1 / pass@256' cells, domain averages", _setup_table)
def _cmd_table(a: argparse.Namespace) -> int:
    from harness.tables import parse_ks, table

    text = table(a.runs, parse_ks(a.k) if a.k else None, a.format, a.reference, a.tasks, a.allow_different_problems)
    _emit(text, a.out)
    return 0


# ---- plot --------------------------------------------------------------------------------------

def _setup_plot(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (one colour each)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="image to write")
    p.add_argument("--tasks", type=_csv_list, help="comma-separated benchmarks (default: all present)")
    p.add_argument("--iterations", type=int, default=1000, help="bootstrap iterations for the bands")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--title", help="figure title")


@verb("plot", "pass@k curves per benchmark with bootstrap bands, one colour per run", _setup_plot)
def _cmd_plot(a: argparse.Namespace) -> int:
    from harness.plots import plot_runs

    print(plot_runs(a.runs, a.out, a.tasks, a.iterations, a.seed, title=a.title))
    return 0


# ---- compare -----------------------------------------------------------------------------------

def _setup_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("baseline", metavar="BASELINE", help="run directory of the reference (e.g. a golden run)")
    p.add_argument("candidate", metavar="CANDIDATE", help="run directory to check")
    p.add_argument("--tolerance", type=float, default=1.0, metavar="POINTS",
                   help="a drop must exceed this many percentage points to count (default: 1.0)")
    p.add_argument("--alpha", type=float, default=0.05, help="one-sided test level (default: 0.05)")
    p.add_argument("--iterations", type=int, default=5000, help="bootstrap iterations (default: 5000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--correction", default="holm", choices=["holm", "none"],
                   help="multiple-testing correction over the (task, k) rows (default: holm)")
    p.add_argument("--k", help="comma-separated k values (default: 1, 2, 4, ... up to n)")
    p.add_argument("--tasks", type=_csv_list, help="comma-separated benchmarks (default: all shared)")


@verb("compare", "paired-bootstrap pass@k regression check; exit 1 on a significant drop", _setup_compare)
def _cmd_compare(a: argparse.Namespace) -> int:
    from harness.compare import compare_runs
    from harness.tables import parse_ks

    res = compare_runs(a.baseline, a.candidate, a.tolerance, a.alpha, a.iterations, a.seed,
                       parse_ks(a.k) if a.k else None, a.tasks, a.correction)
    for t, n in res.unshared.items():
        if n:
            print(f"rlvr: note: task {t}: {n} problems are in only one run and were left out", file=sys.stderr)
    print(res.render())
    if res.regressions:
        worst = min(res.regressions, key=lambda r: r.diff)
        print(f"\nREGRESSION: {len(res.regressions)} (task, k) cells dropped by more than {a.tolerance:g} "
              f"points (worst: {worst.task} pass@{worst.k} {100 * worst.diff:+.2f})")
        return 1
    print("\nno regression")
    return 0


# ---- metrics -----------------------------------------------------------------------------------

def _setup_metrics(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--iterations", type=int, default=1000, help="bootstrap iterations (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")


@verb("metrics", "recompute a run's metrics.json (pass@k curves) from its samples", _setup_metrics)
def _cmd_metrics(a: argparse.Namespace) -> int:
    from harness.metrics import update_metrics
    from harness.runstore import Run

    m = update_metrics(Run.open(a.run), iterations=a.iterations, seed=a.seed)
    for t, tm in m["tasks"].items():
        curve = tm["curve"]
        print(f"{t}: {curve['problems']} problems, n={tm['n_min']}"
              + "".join(f"  pass@{k}={100 * v:.1f}" for k, v in zip(curve["ks"], curve["mean"], strict=True)))
    return 0


# ---- plumbing ----------------------------------------------------------------------------------

def _emit(text: str, out: str | None) -> None:
    if out:
        try:
            with open(out, "w", encoding="utf-8") as f:
                f.write(text if text.endswith("\n") else text + "\n")
        except OSError as e:
            raise UserError(f"--out: cannot write {out} ({e.strerror})") from None
        print(out)
    else:
        print(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlvr", description="RLVR benchmark and reproducibility harness.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="verbs:\n" + "\n".join(f"  {name:<14}{h}" for name, (h, _, _) in VERBS.items())
        + "\n\nrun 'rlvr VERB --help' for a verb's flags.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (help_line, setup, fn) in VERBS.items():
        p = sub.add_parser(name, help=help_line, description=help_line)
        setup(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UserError as e:
        print(f"rlvr: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlvr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
