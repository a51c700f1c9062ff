"""Three verdicts: correct, incorrect, and error (the verifier could not judge). An error is never a score.

The test-only tasks below live in this module; the verifier pool's workers import it by module name. The
flaky task's check raises `VerifierError` (as a code task does when its sandbox cannot start) for the
problems listed in a file under the data directory, so a test can break and mend the verifier mid-run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rlvr.harness import cli
from rlvr.harness.errors import UserError
from rlvr.harness.eval.evaluate import EvalConfig, evaluate
from rlvr.harness.eval.regrade import regrade
from rlvr.harness.runs.store import Run
from rlvr.harness.sample.engine import Completion, SamplingParams
from rlvr.harness.verify.pool import VerifierPool
from rlvr.tasks.base import Problem, Task, Verdict, VerifierError

from rlvr import tasks


@tasks.register
class FlakyProbeTask(Task):
    """Three problems with golds 1, 2, 3; the answer is the stripped completion. `check` raises
    VerifierError for the problem ids listed (one per line) in DATA_DIR/broken."""

    name = "flaky_probe"
    domain = "math"

    def load(self, data_dir=None):
        flag = str(Path(data_dir) / "broken")
        self.last_source = {"kind": "generated", "version": "test"}
        return [Problem(id=f"q{i}", task=self.name, text=f"question {i}", answer=str(i), meta={"flag": flag})
                for i in (1, 2, 3)]

    def prompt(self, problem, template=None, tokenizer=None):
        return problem.text

    def extract(self, problem, completion):
        return completion.strip() or None

    def check(self, problem, extracted):
        flag = Path(problem.meta["flag"])
        if flag.exists() and problem.id in flag.read_text().split():
            raise VerifierError("sandbox: cannot start (simulated)")
        ok = extracted == problem.answer
        return Verdict(ok, float(ok), extracted, "ok" if ok else "mismatch")


@tasks.register
class BrokenVerifierTask(FlakyProbeTask):
    """A task whose verifier cannot run here: its preflight says so."""

    name = "broken_verifier_probe"

    def preflight(self):
        raise UserError("broken_verifier_probe: its verifier cannot run here; install the probe tool")


class Scripted:
    """Sample i of a problem answers the gold when i is even, a wrong number otherwise; counts its calls."""

    name = "scripted"

    def __init__(self):
        self.calls = 0

    def generate(self, requests, params):
        self.calls += 1
        out = []
        for prompt, seeds in requests:
            gold = prompt.split()[-1]
            out.append([Completion(gold if j % 2 == 0 else "9", [1], "stop") for j in range(len(seeds))])
        return out


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(workers=1, preload=[__name__]) as p:
        yield p


def run_eval(out: Path, data_dir: Path, pool, engine) -> Run:
    cfg = EvalConfig(model="scripted-model", tasks=["flaky_probe"], out=str(out), n=4, chunk=4,
                     data_dir=str(data_dir), sampling=SamplingParams(max_new_tokens=4))
    return evaluate(cfg, engine=engine, progress=False, print_table=False, pool=pool)


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["tasks"]["flaky_probe"]


def test_a_verifier_failure_is_an_error_counted_apart_and_verified_again_on_rerun(tmp_path, pool, capsys):
    data, out = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    (data / "broken").write_text("q1\n")
    engine = Scripted()
    run = run_eval(out, data, pool, engine)
    records = list(run.iter_samples())
    assert len(records) == 12
    bad = [r for r in records if r["problem_id"] == "q1"]
    assert {r["outcome"] for r in bad} == {"error"} and all(r["reason"].startswith("error: VerifierError") for r in bad)
    assert all(r["correct"] is False and r["completion"] for r in bad)       # the text is kept to verify it again
    assert {r["outcome"] for r in records if r["problem_id"] != "q1"} == {"correct", "incorrect"}
    m = metrics(out)
    assert m["errors"] == 4 and m["problem_errors"] == {"q1": 4}
    assert m["problems"] == {"q1": [0, 0], "q2": [4, 2], "q3": [4, 2]}      # pass@k over judged samples only
    assert m["curve"]["problems"] == 2 and m["curve"]["mean"][0] == pytest.approx(0.5)

    # table, plot and compare say so in one line; the cells that cannot be computed show no number
    capsys.readouterr()
    assert cli.main(["table", str(out), "--k", "1,4"]) == 0
    io = capsys.readouterr()
    assert "4 samples in 1 problems could not be verified (flaky_probe 4)" in io.err
    assert "| –" in io.out or " – " in io.out
    assert cli.main(["plot", str(out), "--out", str(tmp_path / "p.png")]) == 0
    assert "could not be verified" in capsys.readouterr().err
    assert cli.main(["compare", str(out), str(out)]) == 1                   # any error fails by default
    io = capsys.readouterr()
    assert "could not be verified" in io.err and "ERRORS: 33.33% of the samples" in io.out
    assert cli.main(["compare", str(out), str(out), "--max-error-rate", "0.5"]) == 0
    capsys.readouterr()

    # the cause is fixed: the same command verifies exactly the errored samples again, without sampling
    (data / "broken").write_text("")
    before = (out / "samples.jsonl").read_text().count("\n")
    calls = engine.calls
    run = run_eval(out, data, pool, engine)
    assert engine.calls == calls
    assert (out / "samples.jsonl").read_text().count("\n") == before + 4
    assert "verifying 4 samples again" in capsys.readouterr().err
    m = metrics(out)
    assert m["errors"] == 0 and m["problem_errors"] == {} and m["problems"]["q1"] == [4, 2]
    assert m["curve"]["ks"] == [1, 2, 4]
    # a further rerun has nothing to do
    run_eval(out, data, pool, engine)
    assert "already done" in capsys.readouterr().err and engine.calls == calls


def test_regrade_reports_flips_and_none_on_an_unchanged_run(tmp_path, pool):
    data, out = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    run_eval(out, data, pool, Scripted())
    samples_before = (out / "samples.jsonl").read_text()
    report = regrade(str(out), data_dir=str(data), progress=False, pool=pool)
    assert [(r.task, r.samples, r.regraded, r.flipped) for r in report] == [("flaky_probe", 12, 12, 0)]
    assert metrics(out)["problems"] == {"q1": [4, 2], "q2": [4, 2], "q3": [4, 2]}
    assert {json.dumps(r, sort_keys=True) for r in map(_verdictless, Run.open(out).iter_samples())} == \
        {json.dumps(_verdictless(json.loads(line)), sort_keys=True) for line in samples_before.splitlines()}

    (data / "broken").write_text("q2\n")        # the verifier breaks for one problem: 4 verdicts become errors
    (r,) = regrade(str(out), data_dir=str(data), progress=False, pool=pool)
    assert r.flips == {"correct->error": 2, "incorrect->error": 2} and r.errors == 4
    assert metrics(out)["errors"] == 4
    (data / "broken").write_text("")
    (r,) = regrade(str(out), ["flaky_probe"], data_dir=str(data), progress=False, pool=pool)
    assert r.flips == {"error->correct": 2, "error->incorrect": 2} and r.errors == 0
    info = json.loads((out / "run.json").read_text())
    assert [g["tasks"]["flaky_probe"]["flipped"] for g in info["regrades"]] == [0, 4, 4]
    assert info["regrades"][0]["harness"]["sha"] is not None or "sha" in info["regrades"][0]["harness"]
    assert "verifiers" in info and "math-verify" in info["verifiers"]
    with pytest.raises(UserError, match="--tasks: nope is not a task of"):
        regrade(str(out), ["nope"], data_dir=str(data), progress=False, pool=pool)


def _verdictless(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "verify_time"}


def test_regrade_cli_on_a_run(tmp_path, pool, capsys):
    data, out = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    run_eval(out, data, pool, Scripted())
    assert cli.main(["regrade", str(out), "--data-dir", str(data), "--workers", "1"]) == 0
    assert "flaky_probe: 12 of 12 samples judged again, 0 verdicts changed" in capsys.readouterr().out
    assert cli.main(["regrade", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_preflight_stops_eval_before_the_model_loads(tmp_path, capsys, monkeypatch):
    import rlvr.harness.eval.evaluate

    def no_engine(cfg):
        raise AssertionError("the model must not load when a verifier cannot run")

    monkeypatch.setattr(rlvr.harness.eval.evaluate, "make_engine", no_engine)
    monkeypatch.setattr("rlvr.harness.sample.models.resolve_model", lambda name, revision=None: name)
    data = tmp_path / "data"
    data.mkdir()
    rc = cli.main(["eval", "--model", "some-model", "--tasks", "broken_verifier_probe", "--data-dir", str(data),
                   "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "its verifier cannot run here; install the probe tool" in err
    assert not (tmp_path / "run").exists()


def test_preflight_stops_train_before_the_model_loads(tmp_path, monkeypatch):
    from rlvr.harness.config import from_dict
    from rlvr.harness.train.trainer import TrainConfig, Trainer

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load when a verifier cannot run")

    monkeypatch.setattr("rlvr.harness.sample.models.load_model", no_model)
    cfg = from_dict(TrainConfig, {"model": "m", "out": str(tmp_path / "t"), "tasks": ["broken_verifier_probe"],
                                  "method": {"name": "grpo"}, "steps": 1})
    with pytest.raises(UserError, match="install the probe tool"):
        Trainer(cfg, progress=False)


def test_a_training_rollout_the_verifier_cannot_judge_stops_the_step(tmp_path, pool):
    """Training never turns an error into a reward of 0: the check is tried again, then the step stops."""
    from rlvr.harness.train.trainer import Trainer

    data = tmp_path / "data"
    data.mkdir()
    task = tasks.get("flaky_probe")
    good, problem = task.load(str(data))[1], task.load(str(data))[0]
    comps = [Completion("2", [1], "stop"), Completion("9", [1], "stop")]
    futures = [pool.submit(task, good, c.text) for c in comps]
    # `verified=True`: the verifier's own rewards (not a random-reward control), so no trainer is needed
    assert Trainer._rewards(None, 0, pool, task, good, comps, futures, verified=True) == [1.0, 0.0]
    (data / "broken").write_text("q1\n")
    futures = [pool.submit(task, problem, c.text) for c in comps]
    with pytest.raises(UserError, match="step 1: the verifier could not judge a rollout of flaky_probe problem q1"):
        Trainer._rewards(None, 0, pool, task, problem, comps, futures, verified=True)


def test_regrade_of_a_committed_golden_run_flips_nothing(tmp_path, capsys):
    """The committed quick goldens keep their completions: judged again with today's verifiers (micro_code in
    today's sandbox), not one verdict changes."""
    import shutil

    golden = Path(__file__).resolve().parent / "goldens" / "micro-quick" / "runs" / "base"
    run = tmp_path / "base"
    shutil.copytree(golden, run)
    before = json.loads((run / "metrics.json").read_text())["tasks"]
    assert cli.main(["regrade", str(run), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert [line.split(",")[1].strip() for line in out.splitlines()] == ["0 verdicts changed"] * 3, out
    after = json.loads((run / "metrics.json").read_text())["tasks"]
    assert {t: m["problems"] for t, m in after.items()} == {t: m["problems"] for t, m in before.items()}
    assert json.loads((run / "run.json").read_text())["regrades"][0]["tasks"]["micro_code"]["regraded"] == 384
