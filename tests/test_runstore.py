"""The run directory: provenance, resume rules, crash safety."""

import json

import pytest
from rlvr.harness.errors import UserError
from rlvr.harness.report.metrics import compute_metrics
from rlvr.harness.runs.store import Run

SETTINGS = {"model": {"name": "tiny", "sha256": "ab"}, "tasks": {"t": {"domain": "math"}},
            "sampling": {"temperature": 0.6, "top_p": 0.95}, "seed": 0}


def rec(i, pid="p0", ok=True):
    return {"task": "t", "problem_id": pid, "sample_index": i, "correct": ok, "extracted": "1"}


def test_run_json_carries_provenance(tmp_path):
    run = Run.create(tmp_path / "r", SETTINGS)
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["sampling"] == SETTINGS["sampling"]
    prov = info["provenance"]
    assert set(prov["versions"]) >= {"python", "torch", "transformers", "vllm", "math-verify", "rlvr-harness"}
    assert prov["hardware"]["cpu"] and prov["hardware"]["cpu_count"] >= 1
    import torch  # the instruction set torch's CPU kernels run on (AVX2 under `rlvr reproduce micro`)
    assert prov["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "sha" in prov["harness"] and "dirty" in prov["harness"]
    assert info["start_time"] and info["end_time"] is None
    run.finish()
    assert json.loads((tmp_path / "r" / "run.json").read_text())["end_time"]


def test_resume_with_same_settings_keeps_samples(tmp_path):
    run = Run.create(tmp_path / "r", SETTINGS)
    run.append_samples([rec(0), rec(1)])
    again = Run.create(tmp_path / "r", dict(SETTINGS))
    assert again.done_keys() == {("t", "p0", 0), ("t", "p0", 1)}
    assert len(again.info["resumes"]) == 1


def test_resume_with_other_settings_names_the_setting(tmp_path):
    Run.create(tmp_path / "r", SETTINGS)
    changed = {**SETTINGS, "sampling": {"temperature": 1.0, "top_p": 0.95}}
    with pytest.raises(UserError, match="sampling.temperature"):
        Run.create(tmp_path / "r", changed)
    with pytest.raises(UserError, match="already exists"):
        Run.create(tmp_path / "r", SETTINGS, resume=False)


def test_truncated_last_line_is_ignored_then_repaired(tmp_path):
    run = Run.create(tmp_path / "r", SETTINGS)
    run.append_samples([rec(0), rec(1)])
    with open(run.samples_path, "a") as f:  # a crash in the middle of writing record 2
        f.write(json.dumps(rec(2))[:25])
    assert [r["sample_index"] for r in Run.open(tmp_path / "r").iter_samples()] == [0, 1]
    resumed = Run.create(tmp_path / "r", SETTINGS)
    resumed.append_samples([rec(2)])
    assert [r["sample_index"] for r in resumed.iter_samples()] == [0, 1, 2]
    assert all(json.loads(line) for line in resumed.samples_path.read_text().splitlines())


def test_duplicate_records_count_once(tmp_path):
    run = Run.create(tmp_path / "r", SETTINGS)
    run.append_samples([rec(0, ok=True), rec(0, ok=False), rec(1, ok=False)])
    m = compute_metrics(run, iterations=50)
    assert m["tasks"]["t"]["problems"] == {"p0": [2, 1]}


def test_record_without_required_field_is_refused(tmp_path):
    run = Run.create(tmp_path / "r", SETTINGS)
    with pytest.raises(ValueError, match="correct"):
        run.append_samples([{"task": "t", "problem_id": "p", "sample_index": 0}])


def test_metrics_per_problem_and_health(tmp_path):
    run = Run.create(tmp_path / "r", SETTINGS)
    run.append_samples([
        {**rec(0, "a", True), "finish_reason": "length", "tokens": 10},
        {**rec(1, "a", False), "reason": "timeout", "tokens": 20},
        {**rec(0, "b", False), "reason": "no_answer", "tokens": 30},
        {**rec(1, "b", False), "tokens": 40},
    ])
    run.write_metrics(compute_metrics(run, iterations=100))
    m = run.read_metrics()["tasks"]["t"]
    assert m["problems"] == {"a": [2, 1], "b": [2, 0]}
    assert m["curve"]["ks"] == [1, 2] and m["curve"]["mean"] == pytest.approx([0.25, 0.5])
    assert (m["truncation_rate"], m["no_answer_rate"], m["errors"], m["mean_tokens"]) == (0.25, 0.25, 0, 25)
    assert m["domain"] == "math"


def err(i, pid="p0"):
    return {**rec(i, pid, False), "outcome": "error", "reason": "error: sandbox: cannot start",
            "completion": f"text {i}"}


def test_errors_are_left_out_of_pass_at_k_and_counted(tmp_path):
    """A sample the verifier could not judge is neither right nor wrong: (n, c) count judged samples only,
    the errors are counted per task and per problem, and the curve stops at the smallest judged n."""
    run = Run.create(tmp_path / "r", {**SETTINGS, "n": 4, "tasks": {"t": {"domain": "math", "problems": 2}}})
    run.append_samples([rec(0, "a", True), rec(1, "a", False), err(2, "a"), err(3, "a"),
                        rec(0, "b", True), rec(1, "b", True), rec(2, "b", False), rec(3, "b", False)])
    m = compute_metrics(run, iterations=50)["tasks"]["t"]
    assert m["problems"] == {"a": [2, 1], "b": [4, 2]}
    assert m["errors"] == 2 and m["problem_errors"] == {"a": 2}
    assert m["curve"]["ks"] == [1, 2] and m["curve"]["mean"][0] == pytest.approx(0.5)
    # a problem with no judged sample at all is kept (marked) but not scored
    run2 = Run.create(tmp_path / "r2", {**SETTINGS, "n": 2, "tasks": {"t": {"domain": "math", "problems": 2}}})
    run2.append_samples([err(0, "a"), err(1, "a"), rec(0, "b", True), rec(1, "b", False)])
    m2 = compute_metrics(run2, iterations=50)["tasks"]["t"]
    assert m2["problems"] == {"a": [0, 0], "b": [2, 1]} and m2["curve"]["problems"] == 1
    assert m2["no_answer_rate"] == 0.0


def test_a_later_judged_record_supersedes_an_error(tmp_path):
    run = Run.create(tmp_path / "r", SETTINGS)
    run.append_samples([err(0), rec(1, ok=True)])
    assert run.done_keys() == {("t", "p0", 1)}
    assert [r["sample_index"] for r in run.error_samples()] == [0]
    run.append_samples([{**rec(0, ok=True), "outcome": "correct"}])
    assert run.done_keys() == {("t", "p0", 0), ("t", "p0", 1)} and run.error_samples() == []
    assert compute_metrics(run, iterations=10)["tasks"]["t"]["problems"] == {"p0": [2, 2]}
    # a judged record is never replaced by a later one (first judged wins, as for duplicates)
    run.append_samples([{**rec(0, ok=False), "outcome": "incorrect"}])
    assert compute_metrics(run, iterations=10)["tasks"]["t"]["problems"] == {"p0": [2, 2]}


def test_outcome_must_agree_with_correct(tmp_path):
    run = Run.create(tmp_path / "r", SETTINGS)
    run.append_samples([{**rec(0, ok=False), "outcome": "correct"}])
    with pytest.raises(UserError, match="field 'outcome'"):
        list(run.iter_samples())


@pytest.mark.parametrize("make,match", [
    (lambda p: None, "no such run directory"),
    (lambda p: p.mkdir(), "run.json is missing"),
    (lambda p: (p.mkdir(), (p / "run.json").write_text("{")), "not valid JSON"),
    (lambda p: (p.mkdir(), (p / "run.json").write_text('{"format": "x"}')), "field 'format'"),
])
def test_opening_a_non_run_is_a_clear_error(tmp_path, make, match):
    make(tmp_path / "r")
    with pytest.raises(UserError, match=match):
        Run.open(tmp_path / "r")


EVAL_SETTINGS = {**SETTINGS, "tasks": {"t": {"domain": "math", "problems": 2}}, "n": 2}


@pytest.mark.parametrize("change,match", [
    (lambda r: r.pop("correct"), "field 'correct' is missing"),
    (lambda r: r.update(correct="yes"), "field 'correct': expected true or false, got 'yes'"),
    (lambda r: r.update(problem_id="p9"), "field 'problem_id': 'p9' would be problem 3 of task t, but run.json "
                                          "records 2 problems"),
    (lambda r: r.update(sample_index=2), "field 'sample_index': expected an integer >= 0 below n=2, got 2"),
    (lambda r: r.update(sample_index=-1), "field 'sample_index'"),
    (lambda r: r.update(task="other"), "field 'task': 'other' is not a task of this run"),
    (lambda r: r.update(tokens="many"), "field 'tokens'"),
])
def test_a_malformed_record_is_an_error_naming_line_and_field(tmp_path, change, match):
    run = Run.create(tmp_path / "r", EVAL_SETTINGS)
    run.append_samples([rec(0, "p0"), rec(1, "p0"), rec(0, "p1")])
    bad = rec(1, "p1")
    change(bad)
    with open(run.samples_path, "a") as f:   # written by hand: append_samples would refuse some of these
        f.write(json.dumps(bad) + "\n")
    with pytest.raises(UserError, match=f"samples.jsonl:4: {match}") as e:
        compute_metrics(Run.open(tmp_path / "r"), iterations=10)
    assert "\n" not in str(e.value)


def test_a_record_that_is_not_an_object_is_an_error(tmp_path):
    run = Run.create(tmp_path / "r", EVAL_SETTINGS)
    run.samples_path.write_text('["t", "p0", 0, true]\n')
    with pytest.raises(UserError, match="samples.jsonl:1: not a JSON object"):
        list(run.iter_samples())


@pytest.mark.parametrize("info,label", [
    ({"label": "base", "model": {"name": "tiny"}}, "base"),
    ({"model": {"name": "tiny", "path": "/x/models/tiny"}}, "tiny"),       # no method: not called "base"
    ({"model": {"name": "Qwen/Qwen2.5-Math-7B"}}, "Qwen2.5-Math-7B"),
    ({"model": {"name": "last", "path": "/x/runs/a/train/grpo/checkpoints/step_8"}}, "grpo/step_8"),
    ({"model": {"path": "/x/exp1/global_step_100/actor/huggingface"}}, "exp1/global_step_100"),
    ({"model": {"path": "/x/out/checkpoint-500"}}, "out/checkpoint-500"),
    ({"method": {"name": "grpo"}, "step": 8, "model": {"name": "Qwen/Qwen2.5-7B"}}, "grpo · Qwen2.5-7B · step 8"),
    ({}, "model"),
])
def test_default_labels(tmp_path, info, label):
    assert Run(tmp_path, info).label == label
