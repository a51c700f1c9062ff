"""One error path and output a person reads: every verb's I/O and validation errors are one line naming the
flag or field; YAML errors carry file:line:column; figures, warnings, progress and help fit their reader."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
from rlvr.harness import cli
from rlvr.harness.config import load_config, read_config_data
from rlvr.harness.errors import UserError
from rlvr.harness.runs.store import Run

from tests.runfactory import make_run

UNWRITABLE = "/proc/rlvr-no-such-dir/x"    # /proc takes no new directories, even for root


def one_line_error(capsys, argv: list[str]) -> str:
    """Run the CLI on argv, which must fail with exit status 2 and exactly one line on stderr."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("rlvr: warning")]
    assert len(lines) == 1 and lines[0].startswith("rlvr: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture()
def two_runs(tmp_path):
    a = make_run(tmp_path / "a" / "tiny", {"t1": {"p0": [True, False], "p1": [False, False]}}, label="tiny")
    b = make_run(tmp_path / "b" / "tiny", {"t1": {"p0": [True, True], "p1": [True, False]}}, label="tiny")
    return a, b


# ---- writing where nothing can be written ------------------------------------------------------

def test_out_that_cannot_be_written_is_one_line_for_every_writing_verb(two_runs, tmp_path, capsys):
    a, b = two_runs
    for argv in (["plot", str(a), "--out", UNWRITABLE + ".png"],
                 ["merge", str(a), "--allow-partial", "--out", UNWRITABLE],
                 ["init-model", "--out", UNWRITABLE],
                 ["table", str(a), "--out", UNWRITABLE],
                 ["export-lm-eval", "--tasks", "micro_arith", "--out", UNWRITABLE]):
        line = one_line_error(capsys, argv)
        assert "--out" in line and "/proc/rlvr-no-such-dir" in line, line


def test_an_os_error_that_escapes_a_verb_is_one_line(monkeypatch, capsys):
    def boom(a):
        raise PermissionError(13, "Permission denied", "/data/locked")

    monkeypatch.setitem(cli.VERBS, "tasks", (cli.VERBS["tasks"][0], cli.VERBS["tasks"][1], boom))
    line = one_line_error(capsys, ["tasks"])
    assert line == "rlvr: error: /data/locked: Permission denied"


@pytest.mark.parametrize("flags,names", [
    (["--hidden-size", "30", "--heads", "4"], ["--hidden-size", "--heads"]),
    (["--hidden-size", "28", "--heads", "4"], ["--hidden-size", "even"]),   # 7 dims per head: rotary needs pairs
    (["--layers", "0"], ["--layers"]),
    (["--heads", "0"], ["--heads"]),
    (["--vocab-size", "10"], ["--vocab-size"]),
])
def test_init_model_refuses_shapes_that_cannot_run(tmp_path, capsys, flags, names):
    out = tmp_path / "m"
    line = one_line_error(capsys, ["init-model", "--out", str(out), *flags])
    assert all(n in line for n in names), line
    assert not out.exists()     # refused before anything was written


def test_init_model_odd_heads_share_key_value_heads_evenly(tmp_path, capsys):
    """--heads 3 used to get 1 key/value head and --heads 5 two (5 % 2: a crash at the first forward)."""
    from rlvr.harness.sample.models import load_model

    assert cli.main(["init-model", "--out", str(tmp_path / "m"), "--hidden-size", "40", "--heads", "5"]) == 0
    model, tok = load_model(str(tmp_path / "m"), device="cpu")
    import torch

    assert model(torch.tensor([[1, 2, 3]])).logits.shape[-1] == len(tok)


def test_eval_device_that_torch_does_not_know_is_one_line(tiny_model, tmp_path, capsys):
    line = one_line_error(capsys, ["eval", "--model", str(tiny_model), "--tasks", "micro_arith", "--limit", "1",
                                   "--n", "1", "--out", str(tmp_path / "e"), "--device", "tpu"])
    assert "--device" in line and "tpu" in line


def test_compare_refuses_a_tolerance_that_is_not_a_number(two_runs, capsys):
    a, b = two_runs
    assert "--tolerance" in one_line_error(capsys, ["compare", str(a), str(b), "--tolerance", "nan"])


def test_a_reference_file_that_is_a_directory_is_one_line(two_runs, tmp_path, capsys):
    a, _ = two_runs
    assert str(tmp_path) in one_line_error(capsys, ["table", str(a), "--reference", str(tmp_path)])


def test_train_out_that_cannot_be_created_names_the_field(tiny_model, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {tiny_model}\nout: {tmp_path / 'run'}\ntasks: [micro_arith]\nsteps: 1\n")
    line = one_line_error(capsys, ["train", "--config", str(cfg), "--set", f"out={UNWRITABLE}"])
    assert line.startswith(f"rlvr: error: --set out={UNWRITABLE}")


# ---- YAML ----------------------------------------------------------------------------------------

def test_malformed_yaml_gives_file_line_column(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: m\ntasks: [a, b\nsteps: 3\n")
    with pytest.raises(UserError) as e:
        read_config_data(f)
    assert re.match(rf"{re.escape(str(f))}:\d+:\d+: ", str(e.value)), str(e.value)
    assert "line 2" in str(e.value)     # where the unclosed list starts


@pytest.mark.parametrize("text,where", [
    ("model: m\nsteps: 1\nsteps: 2\n", ":3:1: duplicate key 'steps' (first given on line 2)"),
    ("optimizer:\n  lr: 0.1\n  lr: 0.2\n", ":3:3: duplicate key 'lr' (first given on line 2)"),
])
def test_duplicate_keys_are_rejected_with_their_line(tmp_path, text, where):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(UserError) as e:
        read_config_data(f)
    assert str(e.value) == f"{f}{where}"


def test_merge_keys_may_still_be_overridden(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("base: &b {lr: 0.1, eps: 1.0}\nopt:\n  <<: *b\n  lr: 0.5\n")
    assert read_config_data(f)["opt"] == {"lr": 0.5, "eps": 1.0}


# ---- naming the field or the --set ---------------------------------------------------------------

@pytest.fixture()
def train_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    f = tmp_path / "train.yaml"
    f.write_text("model: models/nonexistent\nout: runs/x\ntasks: [micro_arith]\nsteps: 1\n")
    return f


def test_a_config_model_that_does_not_exist_is_named_as_the_config_field(train_yaml, capsys):
    line = one_line_error(capsys, ["train", "--config", str(train_yaml)])
    assert line == f"rlvr: error: {train_yaml}: field 'model': models/nonexistent: no such directory"
    assert "--model" not in line


def test_a_model_set_by_set_names_the_set(train_yaml, capsys):
    line = one_line_error(capsys, ["train", "--config", str(train_yaml), "--set", "model=models/other"])
    assert line.startswith("rlvr: error: --set model=models/other: ") and "no such directory" in line


@pytest.mark.parametrize("override,field", [("optimizer.lr=abc", "optimizer.lr"),
                                            ("optimizer.lrr=1", "optimizer.lrr"),
                                            ("method.kl_coef=abc", "method")])
def test_a_bad_set_is_blamed_on_the_set_not_the_file(train_yaml, override, field):
    from rlvr.harness.train.trainer import TrainConfig

    with pytest.raises(UserError) as e:
        load_config(TrainConfig, train_yaml, [override])
    assert str(e.value).startswith(f"--set {override}: field '{field}'"), str(e.value)
    assert str(train_yaml) not in str(e.value)


def test_a_bad_value_in_the_file_is_still_blamed_on_the_file(train_yaml):
    from rlvr.harness.train.trainer import TrainConfig

    train_yaml.write_text(train_yaml.read_text() + "optimizer: {lr: abc}\n")
    with pytest.raises(UserError) as e:
        load_config(TrainConfig, train_yaml, ["steps=2"])
    assert str(e.value).startswith(f"{train_yaml}: field 'optimizer.lr'")


def test_a_model_name_that_looks_like_a_path_never_asks_the_hub(tmp_path, monkeypatch, capsys):
    import rlvr.harness.sample.models as models

    def no_hub(*a, **k):
        raise AssertionError("the hub was asked about a local path")

    monkeypatch.setattr(models, "hub_reachable", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for name in ("models/nonexistent", "./nonexistent", str(tmp_path / "nonexistent")):
        line = one_line_error(capsys, ["eval", "--model", name, "--tasks", "micro_arith", "--out", "r"])
        assert line == f"rlvr: error: --model: {name}: no such directory"
    assert models.resolve_model("Qwen/Qwen2.5-7B") == "Qwen/Qwen2.5-7B"   # a hub id stays one


# ---- plot and merge ------------------------------------------------------------------------------

def test_plot_creates_the_parent_directories_of_out(two_runs, tmp_path):
    a, b = two_runs
    out = tmp_path / "plots" / "deep" / "x.png"
    assert cli.main(["plot", str(a), str(b), "--out", str(out), "--iterations", "50"]) == 0
    assert out.is_file()
    assert cli.main(["table", str(a), "--k", "1", "--out", str(tmp_path / "tables" / "t.md")]) == 0   # table too
    assert (tmp_path / "tables" / "t.md").is_file()


def shard(path: Path, i: int, of: int, label: str = "run", n: int = 2, temperature: float = 1.0,
          tasks: tuple[str, ...] = ("t1",)) -> str:
    settings = {"label": label, "model": {"name": "synthetic"}, "n": n, "shard": [i, of], "seed": 0,
                "sampling": {"temperature": temperature}, "tasks": {t: {"domain": "math", "problems": 1} for t in tasks}}
    run = Run.create(path, settings)
    run.append_samples({"task": t, "problem_id": f"p{i}", "sample_index": j, "correct": j == 0}
                       for t in tasks for j in range(n))
    run.finish()
    return str(path)


def test_merge_ignores_the_label_and_the_provenance(tmp_path):
    from rlvr.harness.eval.merge import merge_runs

    a = shard(tmp_path / "a", 0, 2, label="shard zero")
    b = shard(tmp_path / "b", 1, 2, label="shard one")
    info = json.loads((Path(b) / "run.json").read_text())    # another machine, another day, another command line
    info["provenance"]["command"] = ["rlvr", "eval", "--shard", "1/2", "--label", "shard one"]
    info["start_time"], info["resumes"] = "2030-01-01T00:00:00+00:00", ["2030-01-02T00:00:00+00:00"]
    (Path(b) / "run.json").write_text(json.dumps(info))
    merged = merge_runs([a, b], str(tmp_path / "m"))
    assert len(list(merged.iter_samples())) == 4
    assert "label" not in merged.info    # the shards disagree: the merged run takes its settings' label


def test_merge_names_every_real_difference_with_both_values(tmp_path, capsys):
    a = shard(tmp_path / "a", 0, 2, n=2, tasks=("t1",))
    b = shard(tmp_path / "b", 1, 2, n=4, temperature=0.5, tasks=("t1", "t2"), label="other")
    line = one_line_error(capsys, ["merge", a, b, "--out", str(tmp_path / "m")])
    assert "'n' (4 vs 2)" in line and "'sampling.temperature' (0.5 vs 1.0)" in line
    assert "'tasks.t2'" in line and "(absent)" in line
    assert "label" not in line


def test_merge_allow_partial_accepts_a_single_shard(tmp_path, capsys):
    a = shard(tmp_path / "a", 0, 2)
    assert cli.main(["merge", a, "--allow-partial", "--out", str(tmp_path / "m")]) == 0
    assert len(list(Run.open(tmp_path / "m").iter_samples())) == 2
    assert "--allow-partial" in one_line_error(capsys, ["merge", a, "--out", str(tmp_path / "m2")])


# ---- warnings ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,g,warns", [("grpo", 1, True), ("grpo", 2, False), ("nsr", 1, False),
                                          ("casp", 1, True)])
def test_group_relative_methods_warn_about_groups_of_one(name, g, warns):
    from rlvr.harness.train.trainer import build_method, single_rollout_warning

    note = single_rollout_warning(build_method({"name": name}), g)
    assert (note is not None) == warns
    if warns:
        assert note.startswith("rlvr: warning: rollouts_per_prompt is 1") and "\n" not in note


def test_a_template_that_does_not_apply_to_a_task_warns(capsys):
    from rlvr.harness.eval.evaluate import parse_templates

    assert parse_templates("chat", ["aime24", "bbh"]) == {"aime24": "chat"}
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlvr: warning: --template chat does not apply to bbh (keeps cot_3shot")
    assert "\n" not in err
    parse_templates("chat,zero_shot_boxed", ["aime24", "bbh"])   # every task got one: no warning
    parse_templates("bbh=zero_shot_boxed", ["aime24", "bbh"])          # per task: the others keep theirs
    assert capsys.readouterr().err == ""


# ---- names that collide --------------------------------------------------------------------------

def test_tables_name_runs_with_colliding_labels_by_their_directories(two_runs, tmp_path):
    from rlvr.harness.report.tables import table

    a, b = two_runs
    c = make_run(tmp_path / "c" / "tiny", {"t2": {"p0": [True, False]}}, label="tiny")
    text = table([str(a), str(b)], [1], "csv")
    assert "a/tiny" in text and "b/tiny" in text
    # a run that shares the label but scores other benchmarks is still merged into one row
    merged = table([str(a), str(c)], [1], "csv")
    assert merged.count("tiny") == 1


# ---- the figure ----------------------------------------------------------------------------------

@pytest.fixture()
def captured_figures(monkeypatch):
    import matplotlib.pyplot as plt

    figs = []
    close = plt.close

    def keep(fig=None):
        figs.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", keep)
    return figs


def test_plot_is_fit_for_a_paper(two_runs, tmp_path, captured_figures):
    from PIL import Image
    from rlvr.harness.report.plots import PALETTE

    a, b = two_runs
    c = make_run(tmp_path / "c", {"t1": {"p0": [False, True], "p1": [True, True]}}, label="other")
    out = tmp_path / "f.png"
    assert cli.main(["plot", str(a), str(b), str(c), "--out", str(out), "--width", "3.5", "--title", "Ours",
                     "--iterations", "50"]) == 0
    fig = captured_figures[-1]
    assert fig.get_size_inches()[0] == pytest.approx(3.5)
    with Image.open(out) as im:
        assert im.info["dpi"][0] >= 200 and im.size[0] >= 3.5 * 200
    texts = [t for t in fig.findobj(lambda o: hasattr(o, "get_fontsize") and hasattr(o, "get_text"))
             if t.get_text().strip()]
    assert texts and min(t.get_fontsize() for t in texts) >= 8
    title = fig.get_suptitle()
    assert "Ours" in title and "bootstrap" in title          # --title keeps the caption about the bands
    lines = [ln for ax in fig.axes for ln in ax.get_lines()]
    assert len({ln.get_marker() for ln in lines}) == 3       # markers tell the runs apart without colour
    assert {ln.get_color() for ln in lines} <= set(PALETTE)
    legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert sorted(legend) == sorted(["a/tiny", "b/tiny", "other"])   # the colliding labels fall back


# ---- library noise -------------------------------------------------------------------------------

def test_sampling_raises_no_library_warning(tiny_model):
    from rlvr.harness.sample.engine import HFEngine, SamplingParams
    from rlvr.harness.sample.models import load_model

    model, tok = load_model(str(tiny_model), device="cpu")
    params = SamplingParams(temperature=1.0, max_new_tokens=4)
    for engine in (HFEngine(model, tok), HFEngine(model, tok, cascade=False),
                   HFEngine(model, tok, merge_prompts=True, cascade=False),
                   HFEngine(model, tok, merge_prompts=True)):     # the multi-prompt shared-prefix decoder
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = engine.generate([("2 + 2 =", [1, 2]), ("3 =", [3])], params)
        assert [len(c) for c in out] == [2, 1]


def test_progress_in_a_log_is_plain_lines(tiny_model, tmp_path, capsys):
    argv = ["eval", "--model", str(tiny_model), "--tasks", "micro_arith", "--limit", "2", "--n", "2",
            "--max-new-tokens", "4", "--workers", "1", "--out", str(tmp_path / "e")]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "sampling" in err
    assert "\r" not in err and "\x1b" not in err


# ---- help ----------------------------------------------------------------------------------------

def test_version_names_the_package_and_the_commit(capsys):
    from rlvr.harness import __version__

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"rlvr-harness {__version__}")
    if (Path(__file__).resolve().parents[1] / ".git").exists():
        assert re.search(r"\(git [0-9a-f]{12}", out)


def test_help_cites_no_internal_notes_and_train_names_no_missing_flag():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.choices and "train" in a.choices)
    from tests.test_methods_doc import OUTSIDE as internal  # notes a user cannot open
    for name, p in sub.choices.items():
        assert not internal.search(p.format_help()), name
    train = sub.choices["train"]
    assert "--out" not in {s for a in train._actions for s in a.option_strings}
    top_line = next(line for line in parser.format_help().splitlines() if line.strip().startswith("train"))
    assert "--out" not in train.format_help() and "--out" not in top_line
