"""avg@n, maj@k, G-Pass@k, no-answer and truncation rates in metrics.json, `rlvr metrics`, `rlvr table --metrics`,
`rlvr compare --metric` and `rlvr plot --maj`, on the committed micro-quick goldens (which keep their samples)
and on runs made here."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from rlvr.harness import cli
from rlvr.harness.report.metrics import ANSWERS_NOT_STORED, NO_FINAL_ANSWER, compute_metrics
from rlvr.harness.report.voting import g_pass_at_k
from rlvr.harness.runs.store import Run

from rlvr import tasks as registry
from tests.runfactory import make_run

GOLDENS = Path(__file__).parent / "goldens" / "micro-quick" / "runs"
COMMITTED = Path(__file__).parent.parent / "results" / "micro" / "runs"


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory):
    """Copies of two golden runs (samples.jsonl and the metrics.json they were committed with), upgraded by
    `rlvr metrics`; returns (dirs, old metrics, sample hashes before)."""
    root = tmp_path_factory.mktemp("golden")
    dirs, old, before = [], {}, {}
    for label in ("base", "grpo-s0"):
        d = root / label
        shutil.copytree(GOLDENS / label, d)
        old[label] = json.loads((d / "metrics.json").read_text())
        before[label] = sha(d / "samples.jsonl")
        dirs.append(d)
    assert cli.main(["metrics", *map(str, dirs)]) == 0
    return dirs, old, before


def test_rlvr_metrics_adds_the_metrics_without_touching_samples_or_pass_at_k(upgraded):
    dirs, old, before = upgraded
    for d in dirs:
        label = d.name
        assert sha(d / "samples.jsonl") == before[label]                 # samples.jsonl is only read
        new = json.loads((d / "metrics.json").read_text())
        for task, m in new["tasks"].items():
            o = old[label]["tasks"][task]
            assert m["problems"] == o["problems"] and m["curve"] == o["curve"]    # pass@k unchanged
            assert m["avg"]["mean"] == pytest.approx(m["curve"]["mean"][0])        # avg@n is pass@1
            assert m["avg"]["lo"] <= m["avg"]["mean"] <= m["avg"]["hi"] and m["avg"]["se"] > 0
            assert set(m["g_pass"]) == {"0.5", "1"} and m["mg_pass"]["ks"] == m["curve"]["ks"]
            assert m["truncation_rate"] is not None and m["mean_tokens_correct"] > 0
            if registry.get(task).domain == "code":
                assert m["maj"] is None and m["maj_note"] == NO_FINAL_ANSWER and m["votes"] is None
            else:
                assert m["maj"]["ks"] == m["curve"]["ks"]
                assert m["maj"]["mean"][0] == pytest.approx(m["curve"]["mean"][0])     # maj@1 is pass@1


def test_maj_at_n_is_the_majority_of_all_samples(upgraded):
    """At k = n there is one subset: the vote over all the stored samples, counted here from samples.jsonl."""
    dirs, _, _ = upgraded
    run = Run.open(dirs[0])
    answers: dict[tuple[str, str], list] = {}
    for rec in run.iter_samples():
        if rec["outcome"] == "error":
            continue
        task = registry.get(rec["task"])
        if rec["outcome"] == "correct":
            vote = "CORRECT"
        elif rec.get("extracted") is None or rec.get("reason") == "no_answer":
            vote = None
        else:
            vote = task.answer_key(str(rec["problem_id"]), rec["extracted"])
        answers.setdefault((rec["task"], str(rec["problem_id"])), []).append(vote)
    metrics = run.read_metrics()["tasks"]
    for task in ("micro_arith", "micro_order"):
        expected = []
        for (t, _), votes in answers.items():
            if t != task:
                continue
            tally = Counter(v for v in votes if v is not None)
            top = max(tally.values())
            tied = [a for a, c in tally.items() if c == top]
            expected.append(1 / len(tied) if "CORRECT" in tied else 0.0)
        assert metrics[task]["maj"]["mean"][-1] == pytest.approx(sum(expected) / len(expected))


def test_rlvr_metrics_refuses_a_run_kept_without_samples(tmp_path, capsys):
    d = tmp_path / "base"
    shutil.copytree(COMMITTED / "base", d)
    before = sha(d / "metrics.json")
    code, _, err = run_cli(capsys, "metrics", d)
    assert code == 2 and err.count("\n") == 1 and f"{d}: no samples.jsonl" in err
    assert sha(d / "metrics.json") == before


def test_table_metrics_md_latex_csv(upgraded, capsys):
    dirs, _, _ = upgraded
    metrics = {d.name: json.loads((d / "metrics.json").read_text())["tasks"] for d in dirs}
    cols = "pass@1,maj@16,avg@n,gpass@16/0.5,no-answer,truncated"
    code, md, _ = run_cli(capsys, "table", *dirs, "--metrics", cols)
    assert code == 0
    assert "cells are pass@1 / maj@16 / avg@n / gpass@16/0.5 / no-answer / truncated" in md
    assert "n/a" in md and "n/a: not defined for the task" in md          # micro_code has no maj@16
    code, latex, _ = run_cli(capsys, "table", *dirs, "--metrics", cols, "--format", "latex")
    assert code == 0 and "\\toprule" in latex and "n/a" in latex
    code, text, _ = run_cli(capsys, "table", *dirs, "--metrics", cols, "--format", "csv")
    rows = {r["run"]: r for r in csv.DictReader(io.StringIO(text))}
    for d in dirs:
        m, row = metrics[d.name], rows[d.name]
        arith = m["micro_arith"]
        assert float(row["micro_arith maj@16"]) == pytest.approx(100 * arith["maj"]["mean"][arith["maj"]["ks"].index(16)],
                                                                 abs=1e-4)
        assert float(row["micro_arith avg@n"]) == pytest.approx(float(row["micro_arith pass@1"]), abs=1e-4)
        assert float(row["micro_order no-answer"]) == pytest.approx(100 * m["micro_order"]["no_answer_rate"], abs=1e-4)
        assert row["micro_code maj@16"] == "n/a" and row["avg maj@16"] == "n/a"
        g = m["micro_order"]["g_pass"]["0.5"]
        assert float(row["micro_order gpass@16/0.5"]) == pytest.approx(100 * g["mean"][g["ks"].index(16)], abs=1e-4)
    # the default cells are still pass@k only
    code, default, _ = run_cli(capsys, "table", *dirs)
    assert "cells are pass@1 / pass@64" in default and "maj@" not in default


def test_table_metrics_of_a_run_kept_without_samples(capsys, tmp_path):
    """results/micro keeps metrics.json only (no samples): maj@k comes from the answer tallies metrics.json holds
    (`votes`), G-Pass@k and avg@n from its (n, c) counts, and code's maj@k says n/a. A run made before the
    tallies were stored has no number for maj@k ("–")."""
    runs = [COMMITTED / "base"]
    code, text, _ = run_cli(capsys, "table", *runs, "--metrics", "maj@16,gpass@16/1,avg@n", "--format", "csv")
    assert code == 0
    row = next(csv.DictReader(io.StringIO(text)))
    assert 0 <= float(row["micro_arith maj@16"]) <= 100 and row["micro_code maj@16"] == "n/a"
    problems = json.loads((COMMITTED / "base" / "metrics.json").read_text())["tasks"]["micro_arith"]["problems"]
    expected = sum(g_pass_at_k(n, c, 16, 1.0) for n, c in problems.values()) / len(problems)
    assert float(row["micro_arith gpass@16/1"]) == pytest.approx(100 * expected, abs=1e-4)

    old = tmp_path / "old"
    shutil.copytree(COMMITTED / "base", old)
    metrics = json.loads((old / "metrics.json").read_text())
    for entry in metrics["tasks"].values():
        for key in ("votes", "maj", "maj_note"):
            entry.pop(key, None)
    (old / "metrics.json").write_text(json.dumps(metrics))
    code, text, _ = run_cli(capsys, "table", old, "--metrics", "maj@16,avg@n", "--format", "csv")
    assert code == 0
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["micro_arith maj@16"] == "" and row["micro_code maj@16"] == "n/a"


@pytest.mark.parametrize("argv, message", [
    (["--metrics", "maj@x"], "--metrics: unknown metric 'maj@x'"),
    (["--metrics", "gpass@16/1.5"], "--metrics: the G-Pass threshold must be in (0, 1]"),
    (["--metrics", "maj@4", "--k", "1"], "--k and --metrics both choose the cells"),
])
def test_table_metrics_mistakes_are_one_line_errors(upgraded, capsys, argv, message):
    dirs, _, _ = upgraded
    code, _, err = run_cli(capsys, "table", dirs[0], *argv)
    assert code == 2 and message in err and err.count("\n") == 1


def test_compare_on_maj_and_avg(upgraded, capsys):
    dirs, _, _ = upgraded
    code, out, _ = run_cli(capsys, "compare", dirs[0], dirs[0], "--metric", "maj@k", "--k", "1,16",
                           "--iterations", "200")
    assert code == 0 and "maj@16" in out and "micro_code" not in out        # code has no majority vote
    code, out, _ = run_cli(capsys, "compare", dirs[0], dirs[1], "--metric", "avg@n", "--iterations", "200",
                           "--tolerance", "100")
    assert code == 0
    from rlvr.harness.report.compare import compare_runs

    avg = compare_runs(str(dirs[0]), str(dirs[1]), iterations=200, metric="avg@n", tolerance=100)
    p1 = compare_runs(str(dirs[0]), str(dirs[1]), iterations=200, ks=[1], tolerance=100)
    assert [(r.task, r.name) for r in avg.rows][:3] == [("micro_arith", "avg@n"), ("micro_code", "avg@n"),
                                                         ("micro_order", "avg@n")]
    assert [r.diff for r in avg.rows] == pytest.approx([r.diff for r in p1.rows])   # avg@n is pass@1


def test_plot_draws_maj_curves_when_asked(upgraded, tmp_path, capsys):
    dirs, _, _ = upgraded
    out = tmp_path / "p.png"
    code, _, _ = run_cli(capsys, "plot", *dirs, "--maj", "--out", out, "--iterations", "50")
    assert code == 0 and out.stat().st_size > 0


def test_truncation_and_answers_unknown_when_not_stored(tmp_path, capsys):
    """Records without finish_reason or extracted answers (older runs): rates and maj@k say unknown."""
    path = make_run(tmp_path / "r", {"aime24": {"p0": [True, False, False], "p1": [False, True, True]}})
    m = Run.open(path).read_metrics()["tasks"]["aime24"]
    assert m["truncation_rate"] is None and m["maj"] is None and m["maj_note"] == ANSWERS_NOT_STORED
    code, text, _ = run_cli(capsys, "table", path, "--metrics", "maj@2,truncated,avg@n", "--format", "csv")
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["aime24 maj@2"] == "" and row["aime24 truncated"] == "" and float(row["aime24 avg@n"]) == \
        pytest.approx(100 / 2)


def test_equal_math_answers_are_one_vote_and_silent_samples_cast_none(tmp_path):
    """Wrong answers 1/2, 0.5 and \\frac{1}{2} are one class by the verifier's reading; a truncated sample
    without an answer casts no vote; token means split by outcome; errors are left out."""
    run = Run.create(tmp_path / "r", {"tasks": {"aime24": {"domain": "math"}}, "n": 8})
    recs = [("correct", "7", "stop", 10), ("incorrect", "1/2", "stop", 20), ("incorrect", "0.5", "stop", 20),
            ("incorrect", "\\frac{1}{2}", "stop", 20), ("incorrect", "3", "stop", 30),
            ("incorrect", None, "length", 50), ("correct", "7.0", "stop", 10), ("error", "9", "stop", 5)]
    run.append_samples({"task": "aime24", "problem_id": "p", "sample_index": i, "outcome": o, "correct": o == "correct",
                        "extracted": e, "reason": "no_answer" if e is None else "ok", "finish_reason": f, "tokens": t}
                       for i, (o, e, f, t) in enumerate(recs))
    m = compute_metrics(run, iterations=20)["tasks"]["aime24"]
    assert m["votes"] == {"p": [2, [3, 1], 1]}
    assert m["problems"] == {"p": [7, 2]} and m["errors"] == 1
    assert m["truncation_rate"] == pytest.approx(1 / 8) and m["no_answer_rate"] == pytest.approx(1 / 7)
    assert (m["mean_tokens_correct"], m["mean_tokens_incorrect"]) == (10, 28)
    assert m["maj"]["mean"][-1] == 0.0          # all seven: 3 votes for 1/2 against 2 correct


def test_answer_keys_follow_the_tasks_equivalence():
    math = registry.get("aime24")
    assert len({math.answer_key("p", a) for a in ("1/2", "0.5", "\\frac{1}{2}", "\\dfrac12")}) == 1
    assert math.answer_key("p", "x^2+1") == math.answer_key("p", "1+x^2") != math.answer_key("p", "x^2+2")
    assert math.answer_key("p", "1011_2") == math.answer_key("p", "11")
    bbh = registry.get("bbh")
    assert bbh.answer_key("date_understanding-3", "(a)") == bbh.answer_key("date_understanding-3", "A")
    assert bbh.answer_key("boolean_expressions-0", "True") == bbh.answer_key("boolean_expressions-0", " true ")
    assert registry.get("humaneval").final_answer is False and math.final_answer is True


def test_reference_rows_may_hold_the_new_metrics(upgraded, tmp_path, capsys):
    dirs, _, _ = upgraded
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"source": "test", "unit": "percent",
                               "rows": [{"label": "paper", "scores": {"micro_arith": {"maj@16": 50.0, "1": 40.0}}}]}))
    code, text, _ = run_cli(capsys, "table", *dirs, "--metrics", "pass@1,maj@16", "--reference", ref,
                            "--tasks", "micro_arith", "--format", "csv")
    row = {r["run"]: r for r in csv.DictReader(io.StringIO(text))}["paper [published]"]
    assert code == 0 and float(row["micro_arith maj@16"]) == 50.0 and float(row["micro_arith pass@1"]) == 40.0


def test_math_vote_key_fast_path_agrees_with_the_parse(monkeypatch):
    """Plain numbers and \\frac{a}{b} skip math-verify's parse (most answers): their keys equal the parsed ones."""
    import re

    from rlvr.tasks import math as m

    cases = ["0.5", "\\frac{1}{2}", "\\dfrac{1}{2}", "-\\frac{3}{4}", "-0.75", "123", "0123", "1.50", "-0",
             "3.14159265358979", "12345678901234567"]
    fast = [m.vote_key(a) for a in cases]
    m.vote_key.cache_clear()
    never = re.compile(r"(?!x)x")
    monkeypatch.setattr(m, "_PLAIN_NUMBER", never)
    monkeypatch.setattr(m, "_PLAIN_FRACTION", never)
    try:
        assert [m.vote_key(a) for a in cases] == fast
    finally:
        m.vote_key.cache_clear()
