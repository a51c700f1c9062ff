"""rlvr table / plot / compare on run directories made here."""

import json

import pytest
from rlvr.harness import cli
from rlvr.harness.report.compare import assert_no_regression, compare_runs
from rlvr.harness.report.passk import pass_at_k

from tests.runfactory import bernoulli_outcomes, make_run

RATES = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9] * 5   # 40 problems


@pytest.fixture
def runs(tmp_path):
    base = make_run(tmp_path / "base", {"aime24": bernoulli_outcomes(RATES, 64, 1),
                                        "bbh": bernoulli_outcomes(RATES, 64, 2),
                                        "amc23": bernoulli_outcomes(RATES, 64, 3)},
                    label="base", domains={"bbh": "logic"})
    same = make_run(tmp_path / "same", {"aime24": bernoulli_outcomes(RATES, 64, 11),
                                        "bbh": bernoulli_outcomes(RATES, 64, 12),
                                        "amc23": bernoulli_outcomes(RATES, 64, 13)},
                    label="rerun", domains={"bbh": "logic"})
    worse = [r * 0.4 for r in RATES]
    broken = make_run(tmp_path / "broken", {"aime24": bernoulli_outcomes(worse, 64, 21),
                                            "bbh": bernoulli_outcomes(RATES, 64, 22),
                                            "amc23": bernoulli_outcomes(worse, 64, 23)},
                      label="broken", domains={"bbh": "logic"})
    return base, same, broken


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_table_markdown_cells_and_averages(runs, capsys):
    base, same, _ = runs
    code, out, _ = run_cli(capsys, "table", base, same, "--k", "1,16")
    assert code == 0
    header = next(line for line in out.splitlines() if line.startswith("| run"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols == ["run", "aime24", "amc23", "math avg", "bbh", "avg"]
    row = next(line for line in out.splitlines() if line.startswith("| base"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    samples = [json.loads(x) for x in (base / "samples.jsonl").read_text().splitlines()]
    aime = [s for s in samples if s["task"] == "aime24"]
    c = [sum(s["correct"] for s in aime if s["problem_id"] == f"p{i}") for i in range(40)]
    p1 = 100 * sum(c) / (40 * 64)
    p16 = 100 * pass_at_k([64] * 40, c, 16).mean()
    assert cells[1] == f"{p1:.1f} / {p16:.1f}"
    a1, a16 = (float(x) for x in cells[1].split(" / "))
    m1, m16 = (float(x) for x in cells[2].split(" / "))
    assert float(cells[3].split(" / ")[0]) == pytest.approx((a1 + m1) / 2, abs=0.06)


def test_table_latex_and_csv(runs, capsys):
    base, same, _ = runs
    code, out, _ = run_cli(capsys, "table", base, same, "--format", "latex")
    assert code == 0 and "\\toprule" in out and "aime24" in out
    code, out, _ = run_cli(capsys, "table", base, "--format", "csv", "--k", "1,2")
    lines = out.strip().splitlines()
    assert lines[0].startswith("run,aime24 pass@1,aime24 pass@2,amc23 pass@1")
    assert len(lines) == 2 and lines[1].startswith("base,")


def test_table_reference_rows(runs, capsys, tmp_path):
    base, _, _ = runs
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"source": "Paper X, Table 1", "unit": "percent",
                               "rows": [{"label": "GRPO", "scores": {"aime24": {"1": 30.0, "256": 70.0},
                                                                     "amc23": {"1": 60.0}}}]}))
    code, out, _ = run_cli(capsys, "table", base, "--k", "1,64", "--reference", ref)
    assert code == 0
    row = next(line for line in out.splitlines() if "GRPO [published]" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "30.0 / –" and cells[2] == "60.0 / –"


@pytest.mark.parametrize("argv,match", [
    (["table", "{tmp}/nope"], "no such run directory"),
    (["table", "{base}", "--k", "1,128"], "fewer than k=128"),
    (["table", "{base}", "--k", "x"], "--k"),
    (["table", "{base}", "{other}"], "not the same set"),
    (["compare", "{base}", "{tmp}/nope"], "no such run directory"),
    (["compare", "{base}", "{base}", "--k", "128"], "exceeds"),
    (["compare", "{base}", "{disjoint}"], "no task in common"),
    (["plot", "{base}", "--out", "/proc/rlvr-no-such-dir/x.png"], "--out: cannot write"),   # (parents are created)
    (["table", "{base}", "--reference", "{tmp}/missing.json"], "no such file"),
])
def test_user_mistakes_are_one_line_errors(runs, capsys, tmp_path, argv, match):
    base, _, _ = runs
    other = make_run(tmp_path / "other", {"aime24": bernoulli_outcomes(RATES[:10], 64, 5)})
    disjoint = make_run(tmp_path / "disjoint", {"math500": bernoulli_outcomes(RATES, 8, 5)})
    args = [a.format(tmp=tmp_path, base=base, other=other, disjoint=disjoint) for a in argv]
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("rlvr: error:") and match in err
    assert "Traceback" not in err


def test_plot_writes_a_png(runs, capsys, tmp_path):
    base, same, broken = runs
    code, out, _ = run_cli(capsys, "plot", base, same, broken, "--out", tmp_path / "p.png")
    assert code == 0
    data = (tmp_path / "p.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_compare_identical_runs_pass(runs, capsys):
    base, _, _ = runs
    code, out, _ = run_cli(capsys, "compare", base, base)
    assert code == 0 and "no regression" in out


def test_compare_rerun_with_other_seeds_passes(runs, capsys):
    base, same, _ = runs
    code, out, _ = run_cli(capsys, "compare", base, same, "--tolerance", "2")
    assert code == 0, out


def test_compare_catches_a_planted_regression(runs, capsys):
    base, _, broken = runs
    code, out, _ = run_cli(capsys, "compare", base, broken, "--tolerance", "2")
    assert code == 1
    assert "REGRESSION" in out and "aime24" in out
    res = compare_runs(str(base), str(broken), tolerance=2.0)
    assert {r.task for r in res.regressions} >= {"aime24", "amc23", "overall"}
    assert not any(r.task == "bbh" for r in res.regressions)   # bbh was not degraded


def test_compare_is_importable_for_pytest(runs):
    base, same, broken = runs
    assert_no_regression(str(base), str(same), tolerance=2.0)
    with pytest.raises(AssertionError, match="pass@k regression"):
        assert_no_regression(str(base), str(broken), tolerance=2.0)


def test_compare_uses_shared_problems_only(runs, capsys, tmp_path):
    base, _, _ = runs
    partial = make_run(tmp_path / "partial", {"aime24": {f"p{i}": [True] * 64 for i in range(10)}})
    res = compare_runs(str(base), str(partial), tasks=["aime24"])   # the only task partial has
    assert res.shared == {"aime24": 10} and res.unshared == {"aime24": 30}
    code, _, err = run_cli(capsys, "compare", base, partial, "--tasks", "aime24")
    assert "30 problems are in only one run" in err


def test_help_lists_every_verb(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for verb in cli.VERBS:
        assert verb in out
    for verb in cli.VERBS:
        with pytest.raises(SystemExit):
            cli.main([verb, "--help"])
        assert "--" in capsys.readouterr().out or verb == "metrics"


def eval_like_run(path, shard, problems, n=4, per_problem=None, tasks=("aime24", "bbh")):
    """A run as `rlvr eval --shard` writes one: run.json records n and each task's problem count;
    per_problem[pid] is how many of the n samples were finished (default all)."""
    from rlvr.harness.runs.store import Run

    settings = {"model": {"name": "m"}, "method": None, "n": n, "seed": 0, "shard": list(shard),
                "tasks": {t: {"domain": "math", "problems": len(problems), "prompt_sha256": str(shard)}
                          for t in tasks}}
    run = Run.create(path, settings)
    run.append_samples({"task": t, "problem_id": p, "sample_index": i, "correct": i % 2 == 0}
                       for t in tasks for p in problems for i in range((per_problem or {}).get(p, n)))
    return path


def test_merge_refuses_an_unfinished_shard(tmp_path, capsys):
    s0 = eval_like_run(tmp_path / "s0", (0, 2), ["p0", "p2"])
    s1 = eval_like_run(tmp_path / "s1", (1, 2), ["p1", "p3"], per_problem={"p1": 2, "p3": 0})
    code, _, err = run_cli(capsys, "merge", s0, s1, "--out", tmp_path / "m")
    assert code == 2 and err.count("\n") == 1
    assert f"{s1}: unfinished shard, 12 of 16 samples missing (4 problems have fewer than n=4" in err
    assert not (tmp_path / "m").exists()
    s1 = eval_like_run(tmp_path / "s1done", (1, 2), ["p1", "p3"])
    code, out, _ = run_cli(capsys, "merge", s0, s1, "--out", tmp_path / "m")
    assert code == 0
    merged = json.loads((tmp_path / "m" / "metrics.json").read_text())["tasks"]
    assert {t: len(m["problems"]) for t, m in merged.items()} == {"aime24": 4, "bbh": 4}


def test_table_notes_an_incomplete_run(tmp_path, capsys):
    done = eval_like_run(tmp_path / "done", (0, 1), ["p0", "p1"])
    cut = eval_like_run(tmp_path / "cut", (0, 1), ["p0", "p1"], per_problem={"p1": 1})
    code, out, err = run_cli(capsys, "table", done, cut, "--k", "1")
    assert code == 0 and "| done " in out and "| cut " in out   # both labelled "m": named by their directories
    assert err == f"rlvr: note: {cut}: incomplete (10 of 16 samples); rerun its `rlvr eval` command to finish it\n"


def test_compare_fails_when_the_candidate_drops_a_task(runs, capsys, tmp_path):
    base, _, _ = runs
    fewer = make_run(tmp_path / "fewer", {"aime24": bernoulli_outcomes(RATES, 64, 11),
                                          "amc23": bernoulli_outcomes(RATES, 64, 13)})
    code, out, err = run_cli(capsys, "compare", base, fewer)
    assert code == 2 and "no regression" not in out
    assert err.startswith("rlvr: error: task bbh of the baseline") and "missing from the candidate" in err
    code, out, _ = run_cli(capsys, "compare", base, fewer, "--tasks", "aime24,amc23")   # an explicit subset
    assert code == 0 and "no regression" in out


@pytest.mark.parametrize("argv,match", [
    (["table", "{base}", "--tasks", "aime24,micro_arth"], "--tasks: micro_arth is in none of the rows"),
    (["plot", "{base}", "{other}", "--out", "{tmp}/p.png"], "not the same set"),
    (["plot", "{base}", "--out", "{tmp}/p.xyz"], "--out: cannot tell the image type of p.xyz (use one of"),
    (["plot", "{base}", "--out", "{tmp}/p"], "--out: cannot tell the image type"),
    (["plot", "{base}", "--out", "{tmp}/p.png", "--iterations", "0"], "--iterations must be >= 1"),
    (["compare", "{base}", "{base}", "--iterations", "0"], "--iterations must be >= 1"),
    (["compare", "{base}", "{base}", "--seed", "-1"], "--seed must be >= 0"),
    (["metrics", "{base}", "--iterations", "0"], "--iterations must be >= 1"),
])
def test_more_user_mistakes_are_one_line_errors(runs, capsys, tmp_path, argv, match):
    base, _, _ = runs
    other = make_run(tmp_path / "other", {"aime24": bernoulli_outcomes(RATES[:10], 64, 5)})
    code, _, err = run_cli(capsys, *[a.format(tmp=tmp_path, base=base, other=other) for a in argv])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("rlvr: error:") and match in err


def test_plot_of_different_problem_sets_needs_the_flag_and_says_so(runs, capsys, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    base, _, _ = runs
    small = make_run(tmp_path / "small", {"aime24": bernoulli_outcomes(RATES[:3], 64, 5)})
    titles = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **kw: (titles.extend(
        ax.get_title() for ax in fig.axes if ax.get_visible()), real_savefig(fig, *a, **kw))[1])
    code, _, _ = run_cli(capsys, "plot", small, "--out", tmp_path / "one.png")
    assert code == 0 and titles == ["aime24 (3 problems)"]
    titles.clear()
    code, _, _ = run_cli(capsys, "plot", base, small, "--out", tmp_path / "p.png", "--tasks", "aime24",
                         "--allow-different-problems")
    assert code == 0 and titles == ["aime24 (3 to 40 problems)"]


def test_a_closed_pipe_ends_quietly():
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.Popen([sys.executable, "-m", "rlvr.harness.cli", "methods"], cwd=Path(__file__).parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                      # the reader is gone before the first line, as `| head -0`
    assert proc.wait(timeout=120) == 141     # 128 + SIGPIPE, as git or ls would end
    assert proc.stderr.read() == b""
