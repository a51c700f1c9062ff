"""rlvr-harness: a benchmark suite and reproducibility harness for RLVR methods.

The package holds three subpackages, which are also the repository's top-level folders:

    rlvr.tasks     benchmarks: loaders, prompts, verifiers, the code sandbox (imports nothing of the harness)
    rlvr.methods   the RLVR methods, one file each (pure: tensors in, loss out)
    rlvr.harness   the pipeline: sampling, verification, run store, reports, training, reproduction, CLI

and the public Python API below, imported lazily (``import rlvr`` loads neither torch nor transformers):

    rlvr.evaluate(rlvr.EvalConfig(...))      `rlvr eval`
    rlvr.train(rlvr.TrainConfig(...))        `rlvr train`
    rlvr.table([...]), rlvr.plot_runs(...), rlvr.compare_runs(a, b), rlvr.assert_no_regression(a, b)
    rlvr.regrade(run_dir), rlvr.Run.open(run_dir), rlvr.pass_at_k(n, c, k), rlvr.passk_curve(n, c)
"""

from __future__ import annotations

import importlib
from pathlib import Path

__version__ = "0.1.0"

# In a source checkout the subpackages live in the repository's top-level folders (harness/, tasks/,
# methods/) beside this one; an installed wheel places them inside this package (pyproject.toml's
# package-dir). Let the checkout import without an install, as `PYTHONPATH=. python -m rlvr.harness.cli` does.
_here = Path(__file__).resolve().parent
if not (_here / "harness").is_dir() and (_here.parent / "harness" / "__init__.py").is_file() \
        and (_here.parent / "pyproject.toml").is_file():
    __path__.append(str(_here.parent))  # noqa: F821  (a package's __path__)

_API = {
    "evaluate": "rlvr.harness.eval.evaluate", "EvalConfig": "rlvr.harness.eval.evaluate",
    "regrade": "rlvr.harness.eval.regrade",
    "train": "rlvr.harness.train.trainer", "TrainConfig": "rlvr.harness.train.trainer",
    "table": "rlvr.harness.report.tables", "plot_runs": "rlvr.harness.report.plots",
    "compare_runs": "rlvr.harness.report.compare", "assert_no_regression": "rlvr.harness.report.compare",
    "pass_at_k": "rlvr.harness.report.passk", "passk_curve": "rlvr.harness.report.passk",
    "Run": "rlvr.harness.runs.store", "SamplingParams": "rlvr.harness.sample.engine",
    "UserError": "rlvr.tasks.errors",
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rlvr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
