"""rlvr eval end to end on CPU with a tiny model: run store, resume after kill -9, shards and merge."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rlvr.harness import cli
from rlvr.harness.errors import UserError
from rlvr.harness.eval.merge import merge_runs
from rlvr.harness.runs.store import Run

ROOT = Path(__file__).resolve().parents[1]


def eval_argv(model, out, data_dir, *extra):
    return ["eval", "--model", str(model), "--tasks", "aime24,bbh", "--limit", "3", "--n", "8", "--chunk", "4",
            "--max-new-tokens", "12", "--temperature", "1.0", "--workers", "1", "--data-dir", str(data_dir),
            "--out", str(out), *extra]


def sample_set(run_dir):
    return sorted((r["task"], r["problem_id"], r["sample_index"], r["seed"], r["completion"], r["correct"],
                   r["finish_reason"], r["tokens"]) for r in Run.open(run_dir).iter_samples())


@pytest.fixture(scope="module")
def reference_run(tiny_model, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert cli.main(eval_argv(tiny_model, out, data_dir)) == 0
    return out


def test_eval_writes_a_complete_run(reference_run, data_dir):
    info = json.loads((reference_run / "run.json").read_text())
    assert set(info["tasks"]) == {"aime24", "bbh"}
    aime = info["tasks"]["aime24"]
    assert aime["source"]["kind"] == "local" and len(aime["source"]["sha256"]) == 64
    assert aime["template"] == "qwen_boxed" and info["tasks"]["bbh"]["template"] == "cot_3shot"
    assert info["sampling"]["temperature"] == 1.0 and info["n"] == 8 and info["model"]["sha256"]
    assert info["end_time"] and info["provenance"]["versions"]["torch"]
    samples = list(Run.open(reference_run).iter_samples())
    assert len(samples) == 2 * 3 * 8
    assert all(s["finish_reason"] in ("stop", "length") and s["tokens"] >= 1 for s in samples)
    metrics = json.loads((reference_run / "metrics.json").read_text())
    assert metrics["tasks"]["aime24"]["n_min"] == 8 and len(metrics["tasks"]["bbh"]["problems"]) == 3


def test_rerun_of_a_finished_run_adds_nothing(reference_run, tiny_model, data_dir, capsys):
    before = (reference_run / "samples.jsonl").read_text()
    assert cli.main(eval_argv(tiny_model, reference_run, data_dir)) == 0
    assert (reference_run / "samples.jsonl").read_text() == before
    assert "already done" in capsys.readouterr().err


def test_resume_after_kill_9_gives_the_same_samples(reference_run, tiny_model, data_dir, tmp_path):
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "rlvr.harness.cli", *eval_argv(tiny_model, out, data_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    samples = out / "samples.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if samples.exists() and samples.read_text().count("\n") >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = samples.read_text().count("\n")
    assert 4 <= partial < 48
    assert subprocess.run(argv, cwd=ROOT, env=env, capture_output=True).returncode == 0
    assert sample_set(out) == sample_set(reference_run)
    m_ref = json.loads((reference_run / "metrics.json").read_text())["tasks"]
    m_new = json.loads((out / "metrics.json").read_text())["tasks"]
    assert {t: m["problems"] for t, m in m_new.items()} == {t: m["problems"] for t, m in m_ref.items()}
    assert json.loads((out / "run.json").read_text())["resumes"]


def test_shards_merge_into_the_unsharded_run(reference_run, tiny_model, data_dir, tmp_path):
    for i in range(2):
        assert cli.main(eval_argv(tiny_model, tmp_path / f"s{i}", data_dir, "--shard", f"{i}/2")) == 0
    s0 = {(r[0], r[1]) for r in sample_set(tmp_path / "s0")}
    s1 = {(r[0], r[1]) for r in sample_set(tmp_path / "s1")}
    assert s0 and s1 and not (s0 & s1)
    assert cli.main(["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m")]) == 0
    assert sample_set(tmp_path / "m") == sample_set(reference_run)
    merged = json.loads((tmp_path / "m" / "metrics.json").read_text())["tasks"]
    ref = json.loads((reference_run / "metrics.json").read_text())["tasks"]
    assert {t: m["problems"] for t, m in merged.items()} == {t: m["problems"] for t, m in ref.items()}


def test_merge_refuses_mismatched_shards(tiny_model, data_dir, tmp_path):
    small = ["--n", "2", "--limit", "3"]
    assert cli.main(eval_argv(tiny_model, tmp_path / "a", data_dir, "--shard", "0/3", *small)) == 0
    assert cli.main(eval_argv(tiny_model, tmp_path / "b", data_dir, "--shard", "1/3", *small)) == 0
    assert cli.main(eval_argv(tiny_model, tmp_path / "c", data_dir, "--shard", "2/3", *small,
                              "--temperature", "0.5")) == 0
    paths = {k: str(tmp_path / k) for k in "abc"}
    with pytest.raises(UserError, match="sampling.temperature"):
        merge_runs([paths["a"], paths["c"]], str(tmp_path / "m"))
    with pytest.raises(UserError, match="given twice"):
        merge_runs([paths["a"], paths["a"]], str(tmp_path / "m"))
    with pytest.raises(UserError, match=r"shards \[2\] of 3 are missing"):
        merge_runs([paths["a"], paths["b"]], str(tmp_path / "m"))
    merged = merge_runs([paths["a"], paths["b"]], str(tmp_path / "m"), allow_partial=True)
    assert len(list(merged.iter_samples())) == 2 * 2 * 2


@pytest.mark.parametrize("extra,match", [
    (["--shard", "2/2"], "--shard"),
    (["--n", "0"], "--n"),
    (["--template", "nope"], "--template"),
    (["--top-p", "0"], "--top-p"),
    (["--workers", "0"], "--workers"),
    (["--deadline", "0"], "--deadline"),
    (["--stop", ""], "--stop"),
])
def test_eval_flag_mistakes_are_one_line_errors(tiny_model, data_dir, tmp_path, capsys, extra, match):
    assert cli.main(eval_argv(tiny_model, tmp_path / "x", data_dir, *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlvr: error:") and match in err and err.count("\n") == 1


def test_eval_with_an_unknown_model_path_is_an_error(data_dir, tmp_path, capsys):
    assert cli.main(eval_argv(tmp_path / "no-model", tmp_path / "x", data_dir)) == 2
    assert "no such directory" in capsys.readouterr().err


@pytest.fixture
def no_model_load(monkeypatch):
    """Fails the test if `rlvr eval` gets as far as loading the model."""
    def fail(cfg):
        pytest.fail("the model was loaded before the error")
    monkeypatch.setattr("rlvr.harness.eval.evaluate.make_engine", fail)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("rlvr: error:") and err.count("\n") == 1, err
    return err


def test_eval_model_dir_without_a_model_is_an_error_that_points_to_the_checkpoint(data_dir, tmp_path, capsys,
                                                                                 no_model_load):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(eval_argv(empty, tmp_path / "x", data_dir)) == 2
    err = one_line_error(capsys)
    assert "--model" in err and "no config.json" in err and "did you mean" not in err
    train_out = tmp_path / "train" / "grpo"               # what `rlvr train --out` leaves
    (train_out / "checkpoints" / "last").mkdir(parents=True)
    (train_out / "checkpoints" / "last" / "config.json").write_text("{}")
    assert cli.main(eval_argv(train_out, tmp_path / "x", data_dir)) == 2
    assert f"did you mean {train_out / 'checkpoints' / 'last'}?" in one_line_error(capsys)


def test_eval_out_that_cannot_be_a_run_directory_is_an_error(tiny_model, data_dir, tmp_path, capsys, no_model_load):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, match in [(a_file, "is not a directory"), (a_file / "run", "cannot create")]:
        assert cli.main(eval_argv(tiny_model, out, data_dir)) == 2
        err = one_line_error(capsys)
        assert "--out" in err and match in err


def test_refused_resume_fails_before_the_model_is_loaded(reference_run, tiny_model, data_dir, capsys, no_model_load):
    before = (reference_run / "run.json").read_text()
    assert cli.main(eval_argv(tiny_model, reference_run, data_dir, "--temperature", "0.5")) == 2
    assert "cannot resume, setting 'sampling.temperature'" in one_line_error(capsys)
    assert (reference_run / "run.json").read_text() == before


def test_resume_may_change_the_label_but_not_the_chunk(tiny_model, data_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    small = ["--limit", "1", "--n", "2"]
    assert cli.main(eval_argv(tiny_model, out, data_dir, *small, "--label", "first")) == 0
    samples = (out / "samples.jsonl").read_text()
    assert cli.main(eval_argv(tiny_model, out, data_dir, *small, "--label", "second")) == 0
    assert json.loads((out / "run.json").read_text())["label"] == "second"
    assert cli.main(eval_argv(tiny_model, out, data_dir, *small)) == 0       # no --label: the stored one stays
    info = json.loads((out / "run.json").read_text())
    assert info["label"] == "second" and len(info["resumes"]) == 2
    assert (out / "samples.jsonl").read_text() == samples
    capsys.readouterr()
    monkeypatch.setattr("rlvr.harness.eval.evaluate.make_engine", lambda cfg: pytest.fail("model loaded"))
    assert cli.main(eval_argv(tiny_model, out, data_dir, *small, "--chunk", "1", "--label", "third")) == 2
    assert "setting 'chunk'" in one_line_error(capsys)
    assert json.loads((out / "run.json").read_text())["label"] == "second"


def test_a_note_when_prompts_and_new_tokens_pass_the_models_positions(tiny_model, data_dir, tmp_path, capsys):
    from rlvr.harness.sample.models import TinyModelSpec, init_model

    short = init_model(tmp_path / "short", TinyModelSpec(hidden_size=32, num_layers=1, max_position_embeddings=64))
    small = ["--limit", "1", "--n", "2", "--max-new-tokens", "4"]
    assert cli.main(eval_argv(short, tmp_path / "a", data_dir, *small)) == 0
    err = capsys.readouterr().err
    for task in ("aime24", "bbh"):     # AIME and BBH 3-shot prompts are longer than 64 tokens
        assert f"rlvr: note: {task}: prompts of up to " in err and "pass the model's 64 positions" in err
    assert cli.main(eval_argv(tiny_model, tmp_path / "b", data_dir, *small)) == 0    # 4,096 positions
    assert "positions" not in capsys.readouterr().err


def test_tasks_lists_the_generated_micro_tasks_with_their_size(data_dir, capsys):
    assert cli.main(["tasks", "--data-dir", str(data_dir)]) == 0
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in capsys.readouterr().out.splitlines() if line.startswith("| micro_")}
    assert set(rows) == {"micro_arith", "micro_order", "micro_code"}
    assert all(r[3] == "64" and r[5] == "generated" for r in rows.values())


def test_an_unreachable_hub_fails_fast_from_the_local_cache(monkeypatch):
    from rlvr.harness.sample import models

    monkeypatch.setattr(models, "hub_reachable", lambda timeout_s=3.0: False)   # the name models calls
    # without the probe, from_pretrained would retry the hub for ~30 s before this error
    with pytest.raises(UserError, match="rlvr-test/no-such-model .*only the local cache was searched"):
        models.load_model("rlvr-test/no-such-model", device="cpu")


def test_hub_probe(monkeypatch):
    import socket

    from huggingface_hub import constants
    from rlvr.tasks.loading import hub_reachable

    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as s:                                         # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert hub_reachable(timeout_s=1.0) is False
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_reachable(timeout_s=1.0) is True
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        assert hub_reachable(timeout_s=1.0) is False
