"""docs/regression-testing.md runs as written: its bash blocks make a golden run, run the CI job on an
unchanged checkpoint (exit 0) and on a broken one (exit 1), and the seed-aware compare; its python
block raises on the broken one; exit 2 on a usage error, as its table says."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runfactory import bernoulli_outcomes, make_run, seed_rates

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "regression-testing.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def run_block(text: str, cwd: Path, bindir: Path, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", "-e", "-c", text], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture
def workspace(tmp_path):
    """A CI checkout: the repository's shipped model at the path the doc names, `rlvr` on PATH (this
    checkout's code)."""
    (tmp_path / "harness" / "reproduce").mkdir(parents=True)
    (tmp_path / "harness" / "reproduce" / "assets").symlink_to(ROOT / "harness" / "reproduce" / "assets")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "rlvr").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m rlvr.harness.cli "$@"\n')
    (bindir / "rlvr").chmod(0o755)
    return tmp_path, bindir


def test_the_doc_has_the_blocks_this_test_runs():
    bash = blocks("bash")
    assert len(bash) == 3 and "rlvr eval" in bash[0] and "rlvr compare" in bash[1] and "rlvr compare" in bash[2]
    assert len(blocks("python")) == 1


def test_the_ci_job_of_the_doc_passes_an_unchanged_checkpoint_and_fails_a_broken_one(workspace):
    from rlvr.harness.sample.models import TinyModelSpec, init_model

    ws, bindir = workspace
    golden, job, _ = blocks("bash")
    made = run_block(golden, ws, bindir)
    assert made.returncode == 0, made.stderr
    assert (ws / "golden" / "accepted" / "metrics.json").is_file()

    same = run_block(job, ws, bindir)                     # CHECKPOINT unset: the accepted model itself
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.rstrip().endswith("no regression")

    shutil.rmtree(ws / "runs" / "candidate")              # a fresh CI workspace for the next checkpoint
    broken = init_model(ws / "broken", TinyModelSpec(hidden_size=32, num_layers=1))   # untrained: solves nothing
    bad = run_block(job, ws, bindir, CHECKPOINT=str(broken))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "REGRESSION" in bad.stdout and "micro_arith" in bad.stdout

    code = blocks("python")[0]
    here = os.getcwd()
    os.chdir(ws)
    try:
        with pytest.raises(AssertionError, match="pass@k regression"):
            exec(compile(code, str(DOC), "exec"), {})
    finally:
        os.chdir(here)

    compare_line = next(line for line in job.splitlines() if line.startswith("rlvr compare"))
    shutil.rmtree(ws / "runs" / "candidate")              # the eval step did not produce a run
    usage = run_block(compare_line, ws, bindir)
    assert usage.returncode == 2 and usage.stderr.startswith("rlvr: error:") and usage.stderr.count("\n") == 1


def test_the_seed_aware_compare_of_the_doc(workspace):
    ws, bindir = workspace
    rates = [0.05, 0.2, 0.4, 0.6, 0.8] * 6
    for side, offset in (("golden", 0), ("runs", 50)):
        for s in range(3):
            make_run(ws / side / "grpo" / f"seed{s}",
                     {"micro_arith": bernoulli_outcomes(seed_rates(rates, 0.3, offset + s), 16, offset + 10 + s)},
                     label=f"grpo-s{s}", arm="grpo", train_seed=s, metrics=False)
    res = run_block(blocks("bash")[2], ws, bindir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "(3 seeds)" in res.stdout and "MDE" in res.stdout and "no regression" in res.stdout
