"""Run directories in real use: one writer at a time (a lock), n grown on resume, no directory left by a failed
`rlvr eval`, and the step and method of an evaluated training checkpoint."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rlvr.harness import cli
from rlvr.harness.runs.store import HOLDER_FILE, Run

ROOT = Path(__file__).resolve().parents[1]


def eval_argv(model, out, data_dir, *extra):
    return ["eval", "--model", str(model), "--tasks", "aime24,bbh", "--limit", "2", "--n", "2", "--chunk", "3",
            "--max-new-tokens", "8", "--temperature", "1.0", "--workers", "1", "--data-dir", str(data_dir),
            "--out", str(out), *extra]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("rlvr: error:") and err.count("\n") == 1, err
    return err


def sample_set(run_dir):
    """Every sample as (task, problem, index, seed, completion, verdict, finish, tokens), in key order."""
    return sorted((r["task"], r["problem_id"], r["sample_index"], r["seed"], r["completion"], r["correct"],
                   r["finish_reason"], r["tokens"]) for r in Run.open(run_dir).iter_samples())


def metrics_of(run_dir):
    """metrics.json per task without the fields that name the execution."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())["tasks"]


# ---- growing n -----------------------------------------------------------------------------------

def test_a_resume_with_a_larger_n_equals_a_fresh_run_with_that_n(tiny_model, data_dir, tmp_path, capsys):
    grown, fresh = tmp_path / "grown", tmp_path / "fresh"
    assert cli.main(eval_argv(tiny_model, grown, data_dir, "--n", "2")) == 0
    assert cli.main(eval_argv(tiny_model, grown, data_dir, "--n", "5")) == 0
    err = capsys.readouterr().err
    # chunk 3: the old run drew samples 0-1 in a batch of 2, a fresh n=5 run draws 0-2 in one batch
    assert "growing n from 2 to 5; samples 0-1 of each problem are drawn again" in err
    assert cli.main(eval_argv(tiny_model, fresh, data_dir, "--n", "5")) == 0
    assert len(sample_set(grown)) == 2 * 2 * 5
    assert sample_set(grown) == sample_set(fresh)
    assert metrics_of(grown) == metrics_of(fresh)
    info = json.loads((grown / "run.json").read_text())
    assert info["n"] == 5 and info["grown"][0]["from"] == 2 and info["grown"][0]["to"] == 5
    assert info["end_time"]


def test_growing_n_by_whole_chunks_keeps_the_samples_already_drawn(tiny_model, data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(eval_argv(tiny_model, out, data_dir, "--n", "3")) == 0
    before = (out / "samples.jsonl").read_text()
    assert cli.main(eval_argv(tiny_model, out, data_dir, "--n", "6")) == 0
    assert "drawn again" not in capsys.readouterr().err
    assert (out / "samples.jsonl").read_text().startswith(before)     # appended to, nothing redrawn
    assert len(sample_set(out)) == 2 * 2 * 6


def test_a_resume_with_a_smaller_n_is_refused_in_one_line(tiny_model, data_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert cli.main(eval_argv(tiny_model, out, data_dir, "--n", "3")) == 0
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    monkeypatch.setattr("rlvr.harness.eval.evaluate.make_engine", lambda cfg: pytest.fail("model loaded"))
    assert cli.main(eval_argv(tiny_model, out, data_dir, "--n", "2")) == 2
    err = one_line_error(capsys)
    assert str(out) in err and "n=2" in err and "n=3" in err and "can only grow" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


# ---- one writer at a time ------------------------------------------------------------------------

def test_a_second_eval_on_a_run_in_use_stops_naming_the_directory_and_the_holder(tiny_model, data_dir, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = [sys.executable, "-m", "rlvr.harness.cli",
             *eval_argv(tiny_model, out, data_dir, "--n", "64", "--max-new-tokens", "48", "--chunk", "4")]
    proc = subprocess.Popen(first, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not (out / "samples.jsonl").exists():
            time.sleep(0.05)
        assert proc.poll() is None, "the first run ended before the second started"
        holder = json.loads((out / HOLDER_FILE).read_text())
        assert holder["pid"] == proc.pid and "rlvr eval" in holder["command"]
        second = subprocess.run([sys.executable, "-m", "rlvr.harness.cli", *eval_argv(tiny_model, out, data_dir,
                                 "--n", "64", "--max-new-tokens", "48", "--chunk", "4")],
                                cwd=ROOT, env=env, capture_output=True, text=True)
        assert proc.poll() is None, "the first run ended while the second ran: the test shows nothing"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert second.returncode == 2
    err = second.stderr
    assert err.startswith("rlvr: error:") and err.count("\n") == 1, err
    assert str(out) in err and f"pid {proc.pid}" in err and "rlvr eval" in err
    # the killed holder left its lock to the OS: the run resumes, with every sample once
    assert cli.main(eval_argv(tiny_model, out, data_dir, "--n", "64", "--max-new-tokens", "48", "--chunk", "4")) == 0
    keys = [(r["task"], r["problem_id"], r["sample_index"])
            for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())]
    assert len(keys) == len(set(keys)) == 2 * 2 * 64
    assert not (out / HOLDER_FILE).exists()


def test_merge_and_metrics_take_the_lock_of_the_run_they_write(tmp_path, capsys):
    from rlvr.harness.runs.store import locked

    from tests.runfactory import make_run

    run = make_run(tmp_path / "a", {"t": {"p": [True, False]}})
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from rlvr.harness.runs.store import locked\n"
                               f"with locked({str(run)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n"],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cli.main(["metrics", str(run)]) == 2
        assert f"{run}: run directory in use by another rlvr process (pid {holder.pid}" in one_line_error(capsys)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    with locked(run), locked(run):      # re-entrant in one process, released after the outer block
        assert (run / HOLDER_FILE).exists()
    assert not (run / HOLDER_FILE).exists()
    assert cli.main(["metrics", str(run)]) == 0


# ---- no directory from a failed eval -------------------------------------------------------------

def test_a_failed_eval_leaves_no_run_directory(tiny_model, data_dir, tmp_path, capsys):
    empty_data = tmp_path / "no-data"
    empty_data.mkdir()
    broken = tmp_path / "broken-model"          # config and tokenizer, no weights
    shutil.copytree(tiny_model, broken)
    for f in broken.glob("*.safetensors"):
        f.unlink()
    cases = [
        (eval_argv(tiny_model, tmp_path / "a" / "run", data_dir, "--device", "cuda:7"), "--device"),
        (eval_argv(tiny_model, tmp_path / "b" / "run", empty_data, "--tasks", "aime24"), "aime24"),
        (eval_argv(broken, tmp_path / "c" / "run", data_dir), "--model: cannot load"),
    ]
    if __import__("torch").cuda.device_count() > 7:
        cases = cases[1:]
    for argv, match in cases:
        assert cli.main(argv) == 2
        assert match in capsys.readouterr().err
        out = Path(argv[argv.index("--out") + 1])
        assert not out.parent.exists(), f"{out.parent} was left behind"


# ---- checkpoints record their step and method ----------------------------------------------------

def test_an_evaluated_training_checkpoint_records_its_step_and_method(tiny_model, data_dir, tmp_path):
    from rlvr.harness.config import load_config
    from rlvr.harness.train.trainer import TrainConfig, train

    cfg = load_config(TrainConfig, base={
        "model": str(tiny_model), "out": str(tmp_path / "grpo"), "tasks": ["micro_arith"],
        "method": {"name": "nsr"}, "prompts_per_step": 2, "rollouts_per_prompt": 2, "steps": 1,
        "sampling": {"max_new_tokens": 2}, "workers": 1})
    out = train(cfg, progress=False)
    for model in (out / "checkpoints" / "last", out / "checkpoints" / "step_1"):
        run_dir = tmp_path / f"eval-{model.name}"
        assert cli.main(eval_argv(model, run_dir, data_dir, "--tasks", "aime24", "--n", "1")) == 0
        info = json.loads((run_dir / "run.json").read_text())
        assert info["step"] == 1 and info["method"]["name"] == "nsr"
        assert Run.open(run_dir).label == "nsr · grpo/step_1"
    # a checkpoint written before trainer_state.json named the method: read from the training's train.json
    state = json.loads((out / "checkpoints" / "step_1" / "trainer_state.json").read_text())
    state.pop("method")
    (out / "checkpoints" / "step_1" / "trainer_state.json").write_text(json.dumps(state))
    run_dir = tmp_path / "eval-old"
    assert cli.main(eval_argv(out / "checkpoints" / "step_1", run_dir, data_dir, "--tasks", "aime24", "--n", "1")) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["step"] == 1 and info["method"]["name"] == "nsr"
    # a plain model records neither
    assert cli.main(eval_argv(tiny_model, tmp_path / "plain", data_dir, "--tasks", "aime24", "--n", "1")) == 0
    info = json.loads((tmp_path / "plain" / "run.json").read_text())
    assert info["step"] is None and info["method"] is None


def test_a_checkpoint_run_recorded_before_step_and_method_resumes_and_fills_them(tiny_model, data_dir, tmp_path):
    """A run evaluated from a checkpoint by an older version has step and method null in run.json; resuming it
    must not refuse ("setting 'step' differs") but fill them in, since they change no sample."""
    from rlvr.harness.config import load_config
    from rlvr.harness.train.trainer import TrainConfig, train

    cfg = load_config(TrainConfig, base={
        "model": str(tiny_model), "out": str(tmp_path / "grpo"), "tasks": ["micro_arith"],
        "method": {"name": "nsr"}, "prompts_per_step": 2, "rollouts_per_prompt": 2, "steps": 1,
        "sampling": {"max_new_tokens": 2}, "workers": 1})
    out = train(cfg, progress=False)
    run_dir = tmp_path / "eval"
    model = out / "checkpoints" / "step_1"
    assert cli.main(eval_argv(model, run_dir, data_dir, "--tasks", "aime24", "--n", "1")) == 0
    info = json.loads((run_dir / "run.json").read_text())
    info["step"], info["method"] = None, None  # as an older version wrote it
    (run_dir / "run.json").write_text(json.dumps(info))
    assert cli.main(eval_argv(model, run_dir, data_dir, "--tasks", "aime24", "--n", "2")) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["step"] == 1 and info["method"]["name"] == "nsr" and info["n"] == 2
