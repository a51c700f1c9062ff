"""`rlvr train` output directories in real use: a resume after an interruption (log cut back to the checkpoint,
unfinished evaluations finished), and the experiment trackers (wandb, trackio) against the JSON-lines log."""

import glob
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from rlvr.harness.errors import UserError
from rlvr.harness.eval import evaluate as evaluate_mod
from rlvr.harness.runs.store import Run
from rlvr.harness.train.loggers import tag
from rlvr.harness.train.trainer import Trainer, train

from tests.test_train import config  # registers the test task test_first_digit

ROOT = Path(__file__).resolve().parents[1]
GRPO = {"name": "grpo", "kl_coef": 0.0}


def log_steps(path):
    return [json.loads(line)["step"] for line in Path(path).read_text().splitlines()]


def sample_set(run_dir):
    return sorted((r["task"], r["problem_id"], r["sample_index"], r["seed"], r["completion"], r["correct"])
                  for r in Run.open(run_dir).iter_samples())


# ---- resume ----------------------------------------------------------------------------------------

def test_a_resume_cuts_the_log_back_to_the_checkpoint_it_resumes_from(tmp_path, tiny_model, monkeypatch, capsys):
    cfg = config(tmp_path, tiny_model, "grpo", steps=3, checkpoint_every=2, method=GRPO)
    checkpoint = Trainer._checkpoint

    def interrupted_at_3(self, step):        # step 3 is logged, then the run stops before its checkpoint
        if step == 3:
            raise KeyboardInterrupt
        return checkpoint(self, step)

    monkeypatch.setattr(Trainer, "_checkpoint", interrupted_at_3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    out = tmp_path / "grpo"
    assert log_steps(out / "train_log.jsonl") == [1, 2, 3]
    first_step_3 = (out / "train_log.jsonl").read_text().splitlines()[2]
    monkeypatch.undo()
    train(cfg, progress=False)                # resumes from the checkpoint of step 2
    assert log_steps(out / "train_log.jsonl") == [1, 2, 3]
    assert (out / "train_log.discarded.jsonl").read_text().splitlines() == [first_step_3]
    assert "1 lines of train_log.jsonl past it moved to train_log.discarded.jsonl" in capsys.readouterr().err


def test_a_resume_finishes_an_evaluation_that_was_interrupted(tmp_path, tiny_model, monkeypatch, capsys):
    ev = {"tasks": ["test_first_digit"], "n": 6}
    whole = train(config(tmp_path / "a", tiny_model, "nsr", steps=1, eval=ev), progress=False)
    cfg = config(tmp_path / "b", tiny_model, "nsr", steps=1, eval=ev)
    sample = evaluate_mod._sample_and_verify

    def interrupted(cfg, run, units, *rest):          # half of the problems are sampled, then Ctrl-C
        sample(cfg, run, units[:len(units) // 2], *rest)
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_mod, "_sample_and_verify", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    out = tmp_path / "b" / "nsr"
    partial = out / "eval" / "step_1"
    assert not (partial / "metrics.json").exists() and 0 < len(sample_set(partial)) < 4 * 6
    monkeypatch.undo()
    capsys.readouterr()
    train(cfg, progress=False)
    assert "finishing the evaluation of step 1" in capsys.readouterr().err
    assert (partial / "metrics.json").exists() and json.loads((partial / "run.json").read_text())["end_time"]
    assert sample_set(partial) == sample_set(whole / "eval" / "step_1")
    assert log_steps(out / "train_log.jsonl") == [1]


def test_a_second_train_into_the_same_out_stops_naming_the_first(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model, "grpo", steps=1, method=GRPO)
    out = tmp_path / "grpo"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom rlvr.harness.runs.store import locked\n"
                               f"with locked({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n"],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"{out}: training output in use by another rlvr process \(pid {holder.pid}"):
            train(cfg, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "train_log.jsonl").exists()


# ---- trackers --------------------------------------------------------------------------------------

def expected_scalars(out):
    """What every tracker must hold: each numeric field of each JSON line, by tag and step."""
    lines = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: {tag(k): v for k, v in r.items() if k != "step" and isinstance(v, (int, float))} for r in lines}


def expected_config(out):
    info = json.loads((out / "train.json").read_text())
    return {"config": info["config"], "method": info["method"]}


def test_a_missing_tracker_package_is_a_one_line_config_error(tmp_path, tiny_model, monkeypatch):
    for name in ("wandb", "trackio"):
        monkeypatch.setitem(sys.modules, name, None)          # as if not installed
        with pytest.raises(UserError, match=rf"field 'loggers': '{name}' needs the {name} package "
                                            rf"\(pip install 'rlvr-harness\[{name}\]'\)"):
            config(tmp_path, tiny_model, "grpo", loggers=["jsonl", name])
    with pytest.raises(UserError, match="unknown logger 'mlflow'"):
        config(tmp_path, tiny_model, "grpo", loggers=["mlflow"])


def wandb_records(path):
    """The records of a wandb run file (.wandb): a 7-byte header, then LevelDB-log framed protobuf records."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    pos, block, parts = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:                 # a block's tail too short for a record header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        parts += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):                          # a full record, or the last part of one
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(parts)
            parts = b""
            yield rec


def test_wandb_offline_logs_the_json_lines_and_the_config(tmp_path, tiny_model, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = train(config(tmp_path, tiny_model, "grpo", steps=2, loggers=["jsonl", "wandb"], method=GRPO,
                       label="wandb-test"), progress=False)
    run_id = (out / "wandb_run_id").read_text().strip()
    [run_file] = glob.glob(str(out / "wandb" / f"offline-run-*-{run_id}" / f"run-{run_id}.wandb"))
    history, cfg, name = {}, None, None
    for rec in wandb_records(run_file):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            items = {("/".join(i.nested_key) or i.key): json.loads(i.value_json) for i in rec.history.item}
            history[rec.history.step.num] = {k: v for k, v in items.items() if not k.startswith("_")}
        elif kind == "run":
            cfg = {i.key: json.loads(i.value_json) for i in rec.run.config.update if i.key != "_wandb"}
            name = rec.run.display_name
    assert history == expected_scalars(out)
    assert cfg == json.loads(json.dumps(expected_config(out)))
    assert name == "wandb-test"


def test_trackio_local_store_logs_the_json_lines_and_the_config(tmp_path, tiny_model, monkeypatch):
    if "trackio" in sys.modules:
        pytest.skip("trackio was imported before its store could be pointed at a temporary directory")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))   # trackio reads it once, on import
    pytest.importorskip("trackio")
    from trackio.sqlite_storage import SQLiteStorage

    project = f"rlvr-test-{os.getpid()}-{tmp_path.name}"
    out = train(config(tmp_path, tiny_model, "grpo", steps=2, loggers=["jsonl", "trackio"], method=GRPO,
                       project=project, label="trackio-test"), progress=False)
    logs = SQLiteStorage.get_logs(project, "trackio-test")
    got = {r["step"]: {k: v for k, v in r.items() if k not in ("step", "timestamp") and not k.startswith("_")}
           for r in logs}
    assert got == expected_scalars(out)
    stored = SQLiteStorage.get_run_config(project, "trackio-test")
    assert {k: v for k, v in stored.items() if not k.startswith("_")} == json.loads(json.dumps(expected_config(out)))
