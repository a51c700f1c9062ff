"""Training seeds in the reports: arms x seeds grouping, the two-level bootstrap, the seed-aware paired
test and its minimum detectable effect, and the table / compare / plot verbs on multi-seed arms."""

import json

import numpy as np
import pytest
from rlvr.harness import cli
from rlvr.harness.errors import UserError
from rlvr.harness.report.compare import compare_seeded
from rlvr.harness.report.seeds import (
    group_arms,
    mde,
    paired_difference,
    pooled_difference,
    t_cdf,
    t_quantile,
    two_level_bootstrap,
)
from rlvr.harness.runs.store import Run

from tests.runfactory import bernoulli_outcomes, make_run, seed_rates

RATES = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9] * 5   # 40 problems


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def seeded_arm(tmp_path, arm, seeds=3, shift=0.0, spread=0.3, n=16, tasks=("aime24", "amc23"), offset=0):
    out = []
    for s in range(seeds):
        key = 1000 * offset + 10 * s
        outcomes = {t: bernoulli_outcomes(seed_rates(RATES, spread, key + i, shift if i == 0 else 0.0), n,
                                          key + 100 + i) for i, t in enumerate(tasks)}
        out.append(make_run(tmp_path / f"{arm}-s{s}", outcomes, label=f"{arm}-s{s}", arm=arm, train_seed=s,
                            metrics=False))
    return out


# ---- grouping -----------------------------------------------------------------------------------

def test_runs_group_into_arms_by_arm_and_train_seed(tmp_path):
    a = seeded_arm(tmp_path, "grpo", seeds=3)
    base = make_run(tmp_path / "base", {"aime24": bernoulli_outcomes(RATES, 4, 1)}, label="base")
    old1 = make_run(tmp_path / "old1", {"aime24": bernoulli_outcomes(RATES, 4, 2)}, label="x")
    old2 = make_run(tmp_path / "old2", {"aime24": bernoulli_outcomes(RATES, 4, 3)}, label="x")
    arms = group_arms([Run.open(p) for p in [a[0], base, a[1], old1, a[2], old2]])
    assert [(x.name, x.seeds) for x in arms] == [("grpo", [0, 1, 2]), ("base", [None]), ("x", [None]),
                                                 ("x", [None])]   # no seed recorded: one run, one arm


def test_one_seed_split_over_two_runs_is_one_checkpoint(tmp_path):
    m = make_run(tmp_path / "m", {"aime24": bernoulli_outcomes(RATES, 4, 1)}, arm="g", train_seed=0)
    lg = make_run(tmp_path / "l", {"bbh": bernoulli_outcomes(RATES, 4, 2)}, arm="g", train_seed=0)
    arms = group_arms([Run.open(m), Run.open(lg)])
    assert len(arms) == 1 and arms[0].seeds == [0] and arms[0].tasks() == ["aime24", "bbh"]
    again = make_run(tmp_path / "again", {"aime24": bernoulli_outcomes(RATES, 4, 3)}, arm="g", train_seed=0)
    with pytest.raises(UserError, match="both arm g seed 0 and both score task aime24"):
        group_arms([Run.open(m), Run.open(again)])


def test_a_train_seed_that_is_not_an_integer_is_a_user_error(tmp_path):
    path = make_run(tmp_path / "r", {"aime24": bernoulli_outcomes(RATES, 4, 1)})
    info = json.loads((path / "run.json").read_text())
    info["train_seed"] = "zero"
    (path / "run.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="train_seed"):
        group_arms([Run.open(path)])


# ---- statistics ---------------------------------------------------------------------------------

@pytest.mark.parametrize("q,df,want", [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 5, 2.571),
                                       (0.975, 10, 2.228), (0.975, 30, 2.042), (0.95, 4, 2.132),
                                       (0.8, 2, 1.061), (0.995, 3, 5.841)])
def test_t_quantiles_match_the_printed_tables(q, df, want):
    assert t_quantile(q, df) == pytest.approx(want, abs=1.5e-3)
    assert t_quantile(1 - q, df) == pytest.approx(-want, abs=1.5e-3)
    assert t_cdf(want, df) == pytest.approx(q, abs=2e-4)


def test_two_level_bootstrap_seed_level_variance():
    # no problem-level variance: every resample's mean is a mean of S seed means drawn with replacement,
    # whose variance is the population variance of the seed means over S
    m = np.array([0.1, 0.4, 0.5, 0.9])
    x = np.repeat(m[:, None, None], 30, axis=1)                     # [S=4, P=30, K=1]
    boot = two_level_bootstrap(x, 40000, np.random.default_rng(0))
    assert boot[:, 0].mean() == pytest.approx(m.mean(), abs=3e-3)
    assert boot[:, 0].var() == pytest.approx(m.var() / 4, rel=0.05)


def test_paired_difference_of_one_seed_is_the_paired_t_of_problems():
    rng = np.random.default_rng(1)
    b, c = rng.random((1, 50, 2)), rng.random((1, 50, 2))
    pd = paired_difference(b, c)
    d = c[0] - b[0]
    assert pd.diff == pytest.approx(d.mean(axis=0))
    assert pd.se == pytest.approx(d.std(axis=0, ddof=1) / np.sqrt(50))
    assert pd.df == pytest.approx([49, 49])


def test_paired_difference_seed_component_without_residual():
    # x[s, p] = a_p + b_s exactly: the seed term is the sample variance of b over S, the problem term
    # the spread of the difference of problem effects
    rng = np.random.default_rng(2)
    a_b, a_c = rng.random(30), rng.random(30)
    s_b, s_c = np.array([0.0, 0.05, -0.03]), np.array([0.02, -0.04, 0.1, 0.0])
    xb = (a_b[None, :] + s_b[:, None])[..., None]
    xc = (a_c[None, :] + s_c[:, None])[..., None]
    pd = paired_difference(xb, xc)
    want = np.var(a_c - a_b, ddof=1) / 30 + np.var(s_b, ddof=1) / 3 + np.var(s_c, ddof=1) / 4
    assert pd.se[0] ** 2 == pytest.approx(want)
    assert pd.seed_var_b[0] == pytest.approx(np.var(s_b, ddof=1) / 3)


def test_paired_variance_estimate_matches_the_simulated_variance():
    # the model of harness/report/seeds.py with all three components: the mean estimated Var(D) should
    # match the variance of D over replications (a double-counted residual would overshoot by ~30% here)
    rng = np.random.default_rng(3)
    p, sb, sc = 40, 3, 3
    ds, vs = [], []
    for _ in range(3000):
        a = rng.normal(0, 1.0, p)                                        # problem effect, shared
        g = rng.normal(0, 0.3, p)                                        # arm x problem interaction
        xb = a[None] + rng.normal(0, 0.2, (sb, 1)) + rng.normal(0, 0.5, (sb, p))
        xc = (a + g)[None] + rng.normal(0, 0.2, (sc, 1)) + rng.normal(0, 0.5, (sc, p))
        pd = paired_difference(xb[..., None], xc[..., None])
        ds.append(pd.diff[0])
        vs.append(pd.se[0] ** 2)
    assert np.mean(vs) == pytest.approx(np.var(ds, ddof=1), rel=0.1)


def test_pooled_difference_shares_the_seed_effect_across_tasks():
    # a seed effect common to both tasks does not average out over tasks: the pooled seed term is the
    # variance of the per-seed mean over tasks
    s = np.array([0.0, 0.1, 0.2])
    a1, a2 = np.linspace(0, 1, 20), np.linspace(1, 0, 30)
    t1 = (a1[None] + s[:, None])[..., None]
    t2 = (a2[None] + s[:, None])[..., None]
    flat1, flat2 = np.repeat(a1[None, :, None], 1, 0), np.repeat(a2[None, :, None], 1, 0)
    pd = pooled_difference([(flat1, t1), (flat2, t2)])
    assert pd.seed_var_c[0] == pytest.approx(np.var(s, ddof=1) / 3)
    assert pd.problem_var[0] == pytest.approx(0.0, abs=1e-15)


def test_mde_formula_in_the_normal_limit():
    from statistics import NormalDist

    pd = paired_difference(np.zeros((1, 3, 1)), np.array([[[0.0], [0.1], [0.2]]]))
    pd = type(pd)(pd.diff, np.array([0.02]), np.array([np.inf]), pd.problem_var, pd.seed_var_b, pd.seed_var_c)
    z = NormalDist().inv_cdf
    assert mde(pd, 0.05, 0.01)[0] == pytest.approx(0.01 + (z(0.95) + z(0.8)) * 0.02)
    assert mde(pd, 0.01)[0] > mde(pd, 0.05)[0]


# ---- the verbs ----------------------------------------------------------------------------------

def cell(out, label, col):
    header = next(line for line in out.splitlines() if line.startswith("| run"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    row = next(line for line in out.splitlines() if line.startswith(f"| {label}"))
    return [c.strip() for c in row.strip("|").split("|")][cols.index(col)]


def test_table_of_three_seeds_is_one_row_of_means_with_intervals(tmp_path, capsys):
    runs = seeded_arm(tmp_path, "grpo")
    per_seed = []
    for r in runs:                                 # each seed alone, as a one-run table prints it
        code, out, _ = run_cli(capsys, "table", r, "--k", "1,8", "--format", "csv")
        per_seed.append([float(x) for x in out.splitlines()[1].split(",")[1:3]])   # aime24 pass@1, pass@8
    code, out, _ = run_cli(capsys, "table", *runs, "--k", "1,8", "--seed-std")
    assert code == 0 and "grpo (3 seeds)" in out and "two-level bootstrap" in out
    text = cell(out, "grpo (3 seeds)", "aime24")
    parts = [p.split() for p in text.split(" / ")]
    for j, part in enumerate(parts):               # "31.2 ±2.1 [27.0, 35.1]"
        mean, sd = float(part[0]), float(part[1].lstrip("±"))
        lo, hi = float(part[2].strip("[,")), float(part[3].rstrip("]"))
        vals = [s[j] for s in per_seed]
        assert mean == pytest.approx(np.mean(vals), abs=0.051)
        assert sd == pytest.approx(np.std(vals, ddof=1), abs=0.051)
        assert lo < mean < hi
    code, plain, _ = run_cli(capsys, "table", *runs, "--k", "1,8")
    assert "±" not in plain and cell(plain, "grpo (3 seeds)", "aime24").startswith(parts[0][0] + " [")


def test_table_keeps_single_seed_arms_as_before(tmp_path, capsys):
    runs = seeded_arm(tmp_path, "grpo")
    base = make_run(tmp_path / "base", {"aime24": bernoulli_outcomes(RATES, 16, 7),
                                        "amc23": bernoulli_outcomes(RATES, 16, 8)}, label="base")
    code, out, _ = run_cli(capsys, "table", base, *runs, "--k", "1")
    assert code == 0
    assert "[" not in cell(out, "base", "aime24") and "[" in cell(out, "grpo (3 seeds)", "aime24")
    code, csv, _ = run_cli(capsys, "table", base, *runs, "--k", "1", "--format", "csv")
    lines = csv.splitlines()
    assert lines[0].startswith("run,aime24 pass@1,aime24 pass@1 lo,aime24 pass@1 hi,aime24 pass@1 std,")
    assert lines[1].startswith("base,") and lines[1].split(",")[2:5] == ["", "", ""]


def test_compare_with_three_seeds_per_side_prints_the_mde(tmp_path, capsys):
    a = seeded_arm(tmp_path / "a", "grpo", offset=1)
    b = seeded_arm(tmp_path / "b", "grpo", offset=2)
    code, out, _ = run_cli(capsys, "compare", ",".join(map(str, a)), ",".join(map(str, b)), "--tolerance", "2")
    assert code == 0, out
    assert "(3 seeds)" in out and "MDE" in out and "seed-aware" in out and "no regression" in out
    res = compare_seeded([str(p) for p in a], [str(p) for p in b], tolerance=2.0)
    assert res.seeds == (3, 3) and all(r.mde > 0.02 for r in res.rows)
    assert {r.task for r in res.rows} == {"aime24", "amc23", "overall"}


def test_compare_with_seeds_catches_a_planted_regression(tmp_path, capsys):
    a = seeded_arm(tmp_path / "a", "grpo", offset=1, spread=0.1)
    bad = seeded_arm(tmp_path / "b", "broken", offset=2, spread=0.1, shift=-2.5)   # aime24 only
    (tmp_path / "golden").mkdir()
    for p in a:                                  # a folder of seed runs stands for its runs
        p.rename(tmp_path / "golden" / p.name)
    code, out, _ = run_cli(capsys, "compare", tmp_path / "golden", ",".join(map(str, bad)), "--tolerance", "2")
    assert code == 1 and "REGRESSION" in out
    res = compare_seeded(sorted(str(p) for p in (tmp_path / "golden").iterdir()), [str(p) for p in bad],
                         tolerance=2.0)
    assert any(r.task == "aime24" for r in res.regressions)
    assert not any(r.task == "amc23" for r in res.regressions)


def test_compare_base_model_against_seeds(tmp_path, capsys):
    base = make_run(tmp_path / "base", {"aime24": bernoulli_outcomes(RATES, 16, 7),
                                        "amc23": bernoulli_outcomes(RATES, 16, 8)}, label="base")
    runs = seeded_arm(tmp_path, "grpo")
    code, out, _ = run_cli(capsys, "compare", base, ",".join(map(str, runs)))
    assert "baseline has one run, so its seed variance counts as 0" in out and "(1 seed)" in out


@pytest.mark.parametrize("argv,match", [
    (["compare", "{a0},{a0b}", "{a1}"], "have the same train_seed 0"),
    (["compare", "{a0},{tmp}/nope", "{a1}"], "no such run directory"),
    (["plot", "{a0}", "{a1}", "--out", "{tmp}/d.png", "--delta", "nobody"], "--delta: no arm named 'nobody'"),
    (["plot", "{a0}", "{other}", "--out", "{tmp}/d.png", "--delta", "grpo"], "share no problem"),
])
def test_seed_mistakes_are_one_line_errors(tmp_path, capsys, argv, match):
    runs = seeded_arm(tmp_path, "grpo", seeds=2)
    a0b = make_run(tmp_path / "dup", {"aime24": bernoulli_outcomes(RATES, 16, 1),
                                      "amc23": bernoulli_outcomes(RATES, 16, 2)}, arm="grpo", train_seed=0)
    other = make_run(tmp_path / "other", {"aime24": {f"q{i}": [True] * 16 for i in range(5)}}, label="other")
    args = [x.format(tmp=tmp_path, a0=runs[0], a1=runs[1], a0b=a0b, other=other) for x in argv]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and err.startswith("rlvr: error:") and match in err, err


def test_plot_delta_draws_the_paired_difference(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure
    from rlvr.harness.report.plots import delta_curves

    a = seeded_arm(tmp_path / "a", "grpo", offset=1)
    b = seeded_arm(tmp_path / "b", "nsr", offset=2, shift=-1.0)
    lines = {}
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *x, **kw: (lines.update(
        {ax.get_title(): [(ln.get_label(), ln.get_ydata()) for ln in ax.get_lines()] for ax in fig.axes}),
        real(fig, *x, **kw))[1])
    code, out, _ = run_cli(capsys, "plot", *a, *b, "--out", tmp_path / "d.png", "--delta", "grpo")
    assert code == 0 and (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    curves = delta_curves(group_arms([Run.open(p) for p in a + b]), "grpo", "aime24")
    ks, d, lo, hi = curves["nsr (3 seeds)"]
    assert ks == [1, 2, 4, 8, 16] and np.all(lo < d) and np.all(d < hi)
    drawn = dict(lines["aime24"])["nsr (3 seeds)"]
    assert drawn == pytest.approx(100 * d)
    # the difference at k=1 is the difference of the arms' mean pass@1, problems paired
    res = compare_seeded([str(p) for p in a], [str(p) for p in b], ks=[1])
    assert d[0] == pytest.approx(next(r.diff for r in res.rows if r.task == "aime24"))


def test_plot_of_seeded_arms_draws_one_mean_curve_per_arm(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    a = seeded_arm(tmp_path, "grpo")
    labels = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *x, **kw: (labels.extend(
        ln.get_label() for ax in fig.axes for ln in ax.get_lines()), real(fig, *x, **kw))[1])
    code, _, _ = run_cli(capsys, "plot", *a, "--out", tmp_path / "p.png")
    assert code == 0 and labels == ["grpo (3 seeds)", "grpo (3 seeds)"]   # one per panel (aime24, amc23)


def test_a_seeded_arm_stands_beside_its_published_row(tmp_path, capsys):
    runs = seeded_arm(tmp_path, "grpo")
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"source": "Paper X", "unit": "percent",
                               "rows": [{"label": "GRPO", "match": ["grpo"], "scores": {"aime24": {"1": 30.0}}}]}))
    code, out, _ = run_cli(capsys, "table", *runs, "--k", "1", "--reference", ref)
    assert code == 0
    mean = float(cell(out, "grpo (3 seeds)", "aime24").split()[0])
    assert float(cell(out, "Δ grpo (3 seeds) − GRPO", "aime24")) == pytest.approx(mean - 30.0, abs=0.11)


def test_single_run_compare_prints_an_mde_that_agrees_with_the_paired_formula(tmp_path, capsys):
    # one run per side: the bootstrap SE of the paired difference is sd(d)/sqrt(P), as in the seed-aware
    # test with one seed, so the two MDEs differ only by t vs normal quantiles (P = 40: a few percent)
    from rlvr.harness.report.compare import compare_runs

    a = make_run(tmp_path / "a", {"aime24": bernoulli_outcomes(RATES, 16, 1)}, label="a")
    b = make_run(tmp_path / "b", {"aime24": bernoulli_outcomes(RATES, 16, 2)}, label="b")
    boot = compare_runs(str(a), str(b), tolerance=1.0, iterations=20000)
    formula = compare_seeded([str(a)], [str(b)], tolerance=1.0)
    for r, f in zip(boot.rows, formula.rows, strict=True):
        assert (r.task, r.k) == (f.task, f.k) and r.mde == pytest.approx(f.mde, rel=0.07)
    code, out, _ = run_cli(capsys, "compare", a, b)
    assert "MDE" in out.splitlines()[3] and "training-seed variance not included" in out
