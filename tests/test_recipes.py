"""The paper recipes (reproduce/*/recipe.yaml): dry runs, published numbers, micro-scale runs, the local
runner and the reference tables with deltas."""

import json
import re
from pathlib import Path

import pytest
import yaml
from rlvr.harness import cli
from rlvr.harness.errors import UserError
from rlvr.harness.report.tables import Row, match_reference, reference_rows
from rlvr.harness.reproduce import recipes
from rlvr.harness.reproduce import runner as reproduce
from rlvr.harness.reproduce.micro import MicroRecipe
from rlvr.harness.runs.store import Run
from rlvr.harness.sample.models import TinyModelSpec
from rlvr.harness.train.pretrain import PretrainConfig

from tests.runfactory import bernoulli_outcomes, make_run

REPRO = Path(__file__).resolve().parents[1] / "reproduce"
RECIPES = ["bbg", "casp", "casp_code", "casp_logic", "lp_reg", "nsr"]


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_every_recipe_folder_is_listed():
    assert recipes.available_recipes() == RECIPES


# ---- dry runs ------------------------------------------------------------------------------------

# What this machine lacks for each recipe, apart from GPUs, verl and vLLM (checked against the machine).
MISSING_DATA = {
    "nsr": {("model", "Qwen/Qwen2.5-Math-7B"), ("train data", "math_train/train.jsonl")},
    "casp": {("model", "Qwen/Qwen2.5-Math-7B"), ("train data", "math_train/train.jsonl")},
    "casp_logic": {("model", "Qwen/Qwen2.5-7B"), ("train data", "synlogic_train/train.jsonl")},
    "casp_code": {("model", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"), ("train data", "deepcoder_train/train.jsonl"),
                  ("eval data", "livecodebench"), ("eval data", "humaneval_plus")},
    "lp_reg": {("model", "Qwen/Qwen3-14B-Base"), ("train data", "dapo_math_17k/train.jsonl")},
    "bbg": {("model", "Qwen/Qwen2.5-Math-7B"), ("train data", "math_train/train.jsonl"),
            ("backend", "arm bbg"), ("backend", "arm bucket_mask")},
}
GPUS = {"nsr": 8, "casp": 8, "casp_logic": 8, "casp_code": 8, "lp_reg": 32, "bbg": 8}


def machine_missing(name: str) -> set[tuple[str, str]]:
    import importlib.util
    from importlib import metadata

    from rlvr.harness.backends.verl import VERL_VERSION

    out = set()
    if recipes.gpu_count() < GPUS[name]:
        out.add(("gpu", f"{GPUS[name]} GPUs"))
    try:
        verl_ok = metadata.version("verl") == VERL_VERSION
    except metadata.PackageNotFoundError:
        verl_ok = False
    if not verl_ok:
        out.add(("backend", "verl"))
    if importlib.util.find_spec("vllm") is None:
        out.add(("engine", "vllm"))
    return out


@pytest.mark.parametrize("name", RECIPES)
def test_dry_run_passes_and_lists_exactly_what_is_missing(name, data_dir, empty_hf_cache, monkeypatch, capsys):
    monkeypatch.setenv("RLVR_DATA_DIR", str(data_dir))
    code, out, err = run_cli(capsys, "reproduce", name, "--dry-run")
    assert code == 0, err
    missing = set()
    for line in out.splitlines():
        m = re.match(r"  MISSING  (model|train data|eval data|gpu|backend|engine) (.+?): ", line)
        if m:
            missing.add((m.group(1), m.group(2)))
    assert missing == MISSING_DATA[name] | machine_missing(name)
    assert f"{len(missing)} item(s) unavailable here" in out
    assert "hf download" in out and "H100-hours upper bound" in out
    assert ("RECONSTRUCTION" in out) == (name == "bbg")


def test_a_cached_model_is_found(data_dir, empty_hf_cache, monkeypatch):
    """The HF cache layout (refs/main -> snapshots/<commit>/) with weights makes the model available."""
    monkeypatch.setenv("RLVR_DATA_DIR", str(data_dir))
    repo = empty_hf_cache / "models--Qwen--Qwen2.5-Math-7B"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    recipe, path = recipes.load_recipe("nsr")
    found, missing = recipes.availability(recipe, data_dir)
    assert any(m.kind == "model" for m in missing)              # config but no weights
    (snap / "model.safetensors").write_bytes(b"")
    found, missing = recipes.availability(recipe, data_dir)
    assert not any(m.kind == "model" for m in missing)
    assert any(line.startswith("model Qwen/Qwen2.5-Math-7B: HF cache") for line in found)


def test_plan_numbers_of_the_nsr_recipe(data_dir):
    recipe, path = recipes.load_recipe("nsr")
    p = recipes.plan(recipe, path, data_dir)
    per_arm = 140 * 1024 * 8
    assert p.rollouts == {"grpo": per_arm, "psr": per_arm, "nsr": per_arm, "w_reinforce": per_arm}
    assert p.train_gen_tokens == 4 * per_arm * 3072
    # base + 4 arms, each on MATH (5,000) + AIME25 (30) + AMC23 (40) at n = 256
    assert p.eval_samples == {"table1": 5 * (5000 + 30 + 40) * 256}
    assert p.eval_tokens == p.eval_samples["table1"] * 4096
    gen_s = (p.train_gen_tokens + p.eval_tokens) / recipes.DECODE_TOKENS_PER_S_7B
    # GRPO scores a reference model (KL 0.001): 10 x params FLOPs per token, the others 8
    flops = per_arm * (1024 + 3072) * 7.6e9 * (10 + 3 * 8)
    assert p.train_flops == pytest.approx(flops)
    train_s = flops / (recipes.H100_BF16_TFLOPS * 1e12 * recipes.ASSUMED_MFU)
    assert p.gpu_hours_upper == pytest.approx((gen_s + train_s) / 3600)
    assert 0 < p.gpu_hours_typical < p.gpu_hours_upper


def test_lp_reg_evaluates_every_checkpoint_for_the_best_score(data_dir):
    recipe, path = recipes.load_recipe("lp_reg")
    ev = {e.id: e for e in recipe.evaluations}
    assert recipes.checkpoints_evaluated(recipe, ev["aime"], "lp_reg") == list(range(50, 1001, 50))
    p = recipes.plan(recipe, path, data_dir)
    assert p.eval_samples["aime"] == 3 * 20 * 60 * 16            # 3 arms x 20 checkpoints x 60 problems x 16
    assert p.eval_samples["greedy"] == 3 * 20 * (500 + 272 + 675)


# ---- validation errors ---------------------------------------------------------------------------

def write_recipe(tmp_path, mutate) -> Path:
    data = yaml.safe_load((REPRO / "nsr" / "recipe.yaml").read_text())
    mutate(data)
    folder = tmp_path / "bad"
    folder.mkdir(exist_ok=True)
    (folder / "reference.json").write_text((REPRO / "nsr" / "reference.json").read_text())
    (folder / "recipe.yaml").write_text(yaml.safe_dump(data))
    return folder / "recipe.yaml"


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["arms"][1]["method"].update(lam=0.2), "arms[1].method"),
    (lambda d: d["training"].update(lr=1e-6), "training.lr"),
    (lambda d: d["evaluations"][0].update(ks=[1, 512]), "evaluations[0].ks"),
    (lambda d: d["evaluations"][0].update(reference_table="table9"), "evaluations[0].reference_table"),
    (lambda d: d["evaluations"][0].update(checkpoint="best_per_task"), "evaluations[0].every"),
    (lambda d: d["arms"].append({"id": "x", "label": "X", "from_arm": "grpo", "step": 70}), "arms[4].step"),
    (lambda d: d["evaluations"][0].update(tasks=["math", "bbh"]), "evaluations[0].answer_extraction"),
    (lambda d: d["evaluations"][0].update(tasks=["aime24", "micro_arith"], answer_extraction="any_boxed"),
     "evaluations[0].answer_extraction"),                                 # micro_arith has no answer_mode
    (lambda d: d["model"].update(params_b=0.0), "model.params_b"),        # the estimate divides by these
    (lambda d: d["throughput"].update(mfu=0.0), "throughput"),
    (lambda d: d["arms"][1].update(steps=-3), "arms[1].steps"),
    (lambda d: d.update(verl={"nodes": 2}), "verl.nodes"),
])
def test_recipe_errors_name_the_file_and_the_field(tmp_path, mutate, field):
    path = write_recipe(tmp_path, mutate)
    with pytest.raises(UserError) as e:
        recipes.load_recipe(str(path))
    assert str(path) in str(e.value) and f"'{field}" in str(e.value)


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "nope"], "available: micro, bbg, casp"),
    (["reproduce", "nsr", "--quick"], "add --scale micro"),
    (["reproduce", "micro", "--dry-run"], "--dry-run applies to the paper recipes"),
    (["reproduce", "nsr", "--dry-run", "--scale", "micro", "--methods", "ppo"], "no arm 'ppo'"),
    (["reproduce", "nsr", "--dry-run", "--methods", "ppo"], "no arm 'ppo'"),
    (["reproduce", "bbg", "--dry-run", "--methods", "w_reinforce_es5"], "needs arm w_reinforce"),
])
def test_reproduce_user_errors(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err


def test_a_recipe_that_cannot_run_here_writes_its_verl_configs(tmp_path, data_dir, empty_hf_cache):
    from rlvr.harness.backends.verl.launch import load

    recipe, path = recipes.load_recipe("nsr")
    with pytest.raises(UserError, match="cannot run here: missing model Qwen/Qwen2.5-Math-7B"):
        reproduce.run_recipe(recipe, path, tmp_path / "out", data_dir, progress=False)
    for arm in ("grpo", "psr", "nsr", "w_reinforce"):
        cfg, section = load(tmp_path / "out" / "configs" / f"{arm}.yaml")
        assert cfg.steps == 140 and cfg.prompts_per_step == 1024 and cfg.mini_batch_size == 2048
        assert cfg.optimizer.lr == 1e-6 and cfg.sampling.max_new_tokens == 3072
        assert (section.nnodes, section.n_gpus_per_node, section.max_prompt_length) == (1, 8, 1024)
    cfg, _ = load(tmp_path / "out" / "configs" / "psr.yaml")
    assert cfg.method == {"name": "psr", "entropy_coef": 0.001, "row_selection": "mask", "eps_low": 0.2,
                          "eps_high": 0.2}


# ---- published numbers ---------------------------------------------------------------------------

def ref_cell(name, table, label, task, k):
    ref = json.loads((REPRO / name / "reference.json").read_text())
    t = next(t for t in ref["tables"] if t["id"] == table)
    return next(r for r in t["rows"] if r["label"] == label)["scores"][task].get(str(k))


# (recipe, table, row, task, k, value in %) read off the papers' tables by hand
CELLS = [
    ("nsr", "table1", "GRPO", "math", 1, 76.3), ("nsr", "table1", "NSR", "aime25", 256, 53.3),
    ("nsr", "table1", "Base", "amc23", 256, 100.0), ("nsr", "table1", "REINFORCE", "amc23", 1, None),
    ("nsr", "table1", "W-REINFORCE (lambda=0.1)", "aime25", 256, 56.7),
    ("nsr", "table4_lambda", "W-REINFORCE (lambda=0.05)", "math", 256, 97.1),
    ("casp", "table1", "CaSP", "aime25", 1, 12.9), ("casp", "table1", "CaSP", "aime25", 256, 64.6),
    ("casp", "table1", "GRPO w/ Entropy loss", "amc23", 256, 99.6), ("casp", "table1", "PSR", "olympiadbench", 256, 67.7),
    ("casp", "table1_qwen25_32b", "CaSP (alpha=0.05)", "minerva_math", 128, 67.3),
    ("casp", "table1_llama32_3b", "GRPO", "aime24", 1, 12.7),
    ("casp", "table7", "CaSP", "aime24", 1024, 85.6), ("casp", "table7", "Base", "aime25", 512, 57.9),
    ("casp", "table7", "GRPO", "aime24", 128, 70.4),
    ("casp_logic", "table2", "CaSP", "bbh", 128, 92.1), ("casp_logic", "table2", "W-REINFORCE", "synlogic_easy", 1, 0.8),
    ("casp_logic", "table2", "Base", "synlogic_easy", 64, 24.5),
    ("casp_code", "table3", "GRPO", "livecodebench", 1, 33.92), ("casp_code", "table3", "CaSP", "humaneval_plus", 16, 96.32),
    ("lp_reg", "table1", "Lp-Reg (on.)", "aime25", 1, 37.92), ("lp_reg", "table1", "Lp-Reg (on.)", "olympiadbench", 1, 68.44),
    ("lp_reg", "table1", "KL-Cov (off.)", "aime24", 1, 49.17),
    ("lp_reg", "table1_qwen25_32b", "GRPO + Entropy Loss (on.)", "aime24", 1, 3.75),
    ("bbg", "sec5_1", "Base", "minerva_math", 256, 80.9), ("bbg", "sec5_1", "W-RF (full)", "minerva_math", 256, 77.9),
    ("bbg", "sec5_1", "W-RF (early stop, 5 epochs)", "minerva_math", 256, 79.4),
]


@pytest.mark.parametrize("name, table, label, task, k, value", CELLS)
def test_published_cells_match_the_papers(name, table, label, task, k, value):
    assert ref_cell(name, table, label, task, k) == value


@pytest.mark.parametrize("name", RECIPES)
def test_reference_files_parse_and_their_averages_agree(name):
    ref = json.loads((REPRO / name / "reference.json").read_text())
    assert ref["arxiv"] in {"2506.01347", "2510.14807", "2510.03222", "2606.15455"}
    mismatches = []
    for t in ref["tables"]:
        assert t["id"] in t["source"] or "Table" in t["source"] or "sec." in t["source"]
        assert ref["arxiv"] + ref["version"] in t["source"]
        rows = reference_rows(f"{REPRO / name / 'reference.json'}#{t['id']}", list(range(1, 1025)))
        assert len(rows) == len(t["rows"])
        ids = [m for r in t["rows"] for m in r["match"]]
        assert len(ids) == len(set(ids)), f"{t['id']}: a match id stands for two rows"
        for r in t["rows"]:
            for k, avg in r.get("reported_avg", {}).items():
                mean = sum(s[k] for s in r["scores"].values()) / len(r["scores"])
                if abs(mean - avg) > 0.06:
                    mismatches.append((t["id"], r["label"], k))
    # the one inconsistency in the transcribed table (recorded in the table's source and the README)
    assert mismatches == ([("table1_llama32_3b", "GRPO", "1")] if name == "casp" else [])


# ---- matching runs to published rows -------------------------------------------------------------

MATCHES = {   # recipe: {arm id (rlvr reproduce) or micro run label (= method name): published row}
    "nsr": {"base": "Base", "grpo": "GRPO", "psr": "PSR", "nsr": "NSR", "w_reinforce": "W-REINFORCE (lambda=0.1)"},
    "casp": {"base": "Base", "grpo": "GRPO", "psr": "PSR", "nsr": "NSR", "w_reinforce": "W-REINFORCE",
             "grpo_entropy": "GRPO w/ Entropy loss", "casp": "CaSP"},
    "casp_logic": {"base": "Base", "grpo": "GRPO", "psr": "PSR", "w_reinforce": "W-REINFORCE", "casp": "CaSP"},
    "casp_code": {"base": "Base", "grpo": "GRPO", "casp": "CaSP"},
    "lp_reg": {"base": None, "grpo": "GRPO (on.)", "lp_reg": "Lp-Reg (on.)", "grpo_entropy": "GRPO + Entropy Loss (on.)"},
    "bbg": {"base": "Base", "w_reinforce": "W-RF (full)", "w_reinforce_es5": "W-RF (early stop, 5 epochs)",
            "bbg": None, "bucket_mask": None},
}


@pytest.mark.parametrize("name", sorted(MATCHES))
def test_arms_and_micro_runs_match_their_published_rows(name):
    recipe, path = recipes.load_recipe(name)
    table = recipe.evaluations[0].reference_table
    refs = reference_rows(f"{REPRO / name / 'reference.json'}#{table}", [1, 256])
    labels = {"base": "base"} | {a.id: a.label for a in recipe.arms}
    assert set(MATCHES[name]) == set(labels)
    for arm_id, want in MATCHES[name].items():
        as_run = match_reference(Row(labels[arm_id], {}, key=arm_id), refs)        # rlvr reproduce
        assert (as_run.match[0] if as_run else None) == want, arm_id
        arm = None if arm_id == "base" else recipe.arm(arm_id)
        if arm is None or (arm.trained and arm.id == arm.method["name"]):          # micro: label = method
            as_micro = match_reference(Row(arm_id, {}, key=arm_id), refs)
            assert (as_micro.match[0] if as_micro else None) == want, arm_id


# ---- tables with deltas --------------------------------------------------------------------------

def test_table_sets_a_run_beside_the_paper_with_deltas(tmp_path, capsys):
    rates = [0.02, 0.1, 0.3, 0.5, 0.7, 0.9]
    run = make_run(tmp_path / "grpo", {"math": bernoulli_outcomes(rates, 256, 1),
                                       "aime25": bernoulli_outcomes(rates, 256, 2),
                                       "amc23": bernoulli_outcomes(rates, 256, 3)}, label="GRPO")
    other = make_run(tmp_path / "mine", {"math": bernoulli_outcomes(rates, 256, 4),
                                         "aime25": bernoulli_outcomes(rates, 256, 5),
                                         "amc23": bernoulli_outcomes(rates, 256, 6)}, label="my try")
    code, out, err = run_cli(capsys, "table", run, other, "--reference", REPRO / "nsr" / "reference.json")
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("| run"))
    # the paper's columns in the harness's canonical order
    assert [c.strip() for c in header.strip("|").split("|")] == ["run", "aime25", "amc23", "math", "avg"]
    cells = {}
    for line in out.splitlines():
        if line.startswith("| ") and not line.startswith("| run"):
            parts = [c.strip() for c in line.strip("|").split("|")]
            cells[parts[0]] = parts[1:]
    assert "Δ GRPO − GRPO" in cells and not any(k.startswith("Δ my try") for k in cells)
    ours = [[float(x) for x in c.split(" / ")] for c in cells["GRPO"]]
    paper = [[float(x) for x in c.split(" / ")] for c in cells["GRPO [published]"]]
    delta = [[float(x) for x in c.split(" / ")] for c in cells["Δ GRPO − GRPO"]]
    assert paper[2] == [76.3, 95.5] and paper[0] == [10.3, 50.0]
    for o, p, d in zip(ours, paper, delta, strict=True):
        for a, b, c in zip(o, p, d, strict=True):
            assert c == pytest.approx(a - b, abs=0.11)     # each shown value is rounded to 0.1
    assert cells["Δ GRPO − GRPO"][0].startswith(("+", "-"))
    # another table of the same file, by id; a run labelled by its method name
    wr = make_run(tmp_path / "wr", {"math": bernoulli_outcomes(rates, 256, 7)}, label="w_reinforce")
    code, out, _ = run_cli(capsys, "table", wr, "--reference", f"{REPRO / 'nsr' / 'reference.json'}#table4_lambda")
    assert code == 0 and "Δ w_reinforce − W-REINFORCE (lambda=0.1)" in out and "lambda=0.2" in out
    code, _, err = run_cli(capsys, "table", wr, "--reference", f"{REPRO / 'nsr' / 'reference.json'}#table9")
    assert code == 2 and "no table 'table9' (tables: table1, table4_lambda)" in err


def test_runs_of_one_model_under_two_protocols_make_one_row(tmp_path):
    from rlvr.harness.report.tables import table

    a = make_run(tmp_path / "a", {"aime24": bernoulli_outcomes([0.5] * 4, 16, 1)}, label="Lp-Reg (on.)")
    b = make_run(tmp_path / "b", {"math500": bernoulli_outcomes([0.5] * 4, 1, 2)}, label="Lp-Reg (on.)")
    text = table([str(a), str(b)], [1], reference=str(REPRO / "lp_reg" / "reference.json"))
    rows = [line for line in text.splitlines() if line.split("|")[1:2] and line.split("|")[1].strip() == "Lp-Reg (on.)"]
    assert len(rows) == 1
    delta = next(line for line in text.splitlines() if line.startswith("| Δ Lp-Reg (on.)"))
    cells = [c.strip() for c in delta.strip("|").split("|")]
    assert cells[1] != "–" and cells[3] != "–" and cells[2] == "–"     # aime24, math500 scored; aime25 not


# ---- micro scale ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_micro(tmp_path_factory):
    """A MicroRecipe small enough for the default suite: one family, a 20-step base, one RL step, one
    training seed, no random-reward control."""
    spec = TinyModelSpec(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                         intermediate_size=64, max_position_embeddings=256)
    base = MicroRecipe(families=("micro_arith",), base_spec=spec, base_problems_per_family=40,
                       pretrain=PretrainConfig(steps=20, batch_size=8, lr=3e-3, warmup=2), rl_steps=1,
                       prompts_per_step=2, max_new_tokens=12, eval_n=4, eval_limit=1, train_seeds=(0,),
                       random_reward=False)
    return base, tmp_path_factory.mktemp("micro-cache")


HEADLINE = {"nsr": "nsr", "casp": "casp", "casp_logic": "casp", "casp_code": "casp", "lp_reg": "lp_reg", "bbg": "bbg"}


@pytest.mark.parametrize("name", RECIPES)
def test_scale_micro_runs_the_recipe_arm_beside_the_paper(name, tiny_micro, tmp_path, capsys):
    base, cache = tiny_micro
    recipe, _ = recipes.load_recipe(name)
    arm = recipe.arm(HEADLINE[name])
    code = reproduce.reproduce(name, scale="micro", out=str(tmp_path), cache=str(cache), arms=[arm.id],
                               micro_base=base, progress=False)
    assert code == 0
    out = capsys.readouterr().out
    method = arm.method["name"]
    # the arm's hyperparameters reached the trainer unchanged, with the recipe's group size
    info = json.loads((tmp_path / "train" / f"{method}-s0" / "train.json").read_text())
    assert info["method"] == {**info["method"], **{k: v for k, v in arm.method.items()}}
    assert info["config"]["rollouts_per_prompt"] == recipe.training.rollouts_per_prompt
    assert Run.open(tmp_path / "runs" / f"{method}-s0").info["n"] == base.eval_n
    ref_id = recipe.evaluations[0].reference_table
    text = (tmp_path / f"reference-{ref_id}.md").read_text()
    assert f"| {method}-s0 " in text and "[published]" in text and "No deltas" in text
    assert f"beside {name} reference.json#{ref_id}" in out


def test_scale_micro_dry_run_shows_the_mapping_and_what_is_left_out(capsys):
    code, out, _ = run_cli(capsys, "reproduce", "casp", "--scale", "micro", "--dry-run")
    assert code == 0
    assert "casp: {'alpha': 0.01, 'top_n': 3" in out
    assert "arm grpo_entropy: same method (grpo) as arm grpo" in out
    code, out, _ = run_cli(capsys, "reproduce", "bbg", "--scale", "micro", "--dry-run")
    assert "arm w_reinforce_es5: evaluates a checkpoint of w_reinforce (step 35)" in out


# ---- the local runner ----------------------------------------------------------------------------

def test_a_one_device_recipe_trains_evaluates_and_tabulates(tmp_path, tiny_model, capsys):
    """A CPU recipe through the real trainer and evaluator: best-per-task checkpoint selection, an
    evaluation-only arm, and the table beside its reference with deltas."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "reference.json").write_text(json.dumps({
        "paper": "test", "arxiv": "0000.00000", "version": "v1", "default_table": "t1", "tables": [
            {"id": "t1", "source": "test Table 1", "unit": "percent", "rows": [
                {"label": "GRPO", "match": ["grpo"], "scores": {"micro_arith": {"1": 50.0, "2": 60.0}}},
                {"label": "Base", "match": ["base"], "scores": {"micro_arith": {"1": 10.0}}}]}]}))
    (folder / "recipe.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "title": "tiny", "arxiv": "0000.00000", "version": "v1",
        "model": {"path": str(tiny_model), "params_b": 0.0001},
        "train_data": {"task": "micro_arith"},
        "training": {"prompts_per_step": 2, "rollouts_per_prompt": 4, "steps": 2, "micro_batch_size": 8,
                     "checkpoint_every": 1, "dtype": "float32", "optimizer": {"lr": 0.01},
                     "sampling": {"temperature": 1.0, "max_new_tokens": 4}},
        "arms": [{"id": "grpo", "label": "GRPO", "method": {"name": "grpo", "kl_coef": 0.0}},
                 {"id": "grpo_s1", "label": "GRPO step 1", "from_arm": "grpo", "step": 1}],
        "evaluations": [{"id": "e", "tasks": ["micro_arith"], "n": 2, "temperature": 1.0, "top_p": 1.0,
                         "max_new_tokens": 4, "ks": [1, 2], "answer_extraction": "boxed", "engine": "hf",
                         "checkpoint": "best_per_task", "every": 1, "limit": 2, "reference_table": "t1"}],
        "hardware": {"gpus": 0, "gpu": "cpu", "backend": "local"}}))
    out = tmp_path / "out"
    code, printed, err = run_cli(capsys, "reproduce", folder, "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in (out / "eval" / "e" / "grpo").iterdir()) == ["step_1", "step_2"]
    assert (out / "eval" / "e" / "base" / "run.json").exists()
    text = (out / "table-t1.md").read_text()
    labels = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    # published rows in the file's order; "GRPO step 1" has no published row, hence no delta
    assert labels == ["run", "base", "GRPO", "GRPO step 1", "GRPO [published]", "Base [published]",
                      "Δ base − Base", "Δ GRPO − GRPO"]
    # best per task: the GRPO row's pass@1 is the larger of its two checkpoints'
    from rlvr.harness.report.tables import run_row

    best = max(run_row(Run.open(out / "eval" / "e" / "grpo" / f"step_{s}"), [1, 2]).scores["micro_arith"][1]
               for s in (1, 2))
    row = next(line for line in text.splitlines() if line.startswith("| GRPO "))
    assert float(row.split("|")[2].split("/")[0]) == pytest.approx(100 * best, abs=0.051)
    assert json.loads((out / "reproduce.json").read_text())["arms"] == ["grpo", "grpo_s1"]


def test_lp_reg_on_verl_sizes_micro_batches_by_tokens(tmp_path, data_dir, empty_hf_cache):
    """Lp-Reg's percentile runs per micro-batch, which its code sizes by tokens (docs/methods/lp_reg.md): the recipe's
    verl configs turn on verl's dynamic batch size with the code's 30,720 tokens per GPU."""
    from rlvr.harness.backends.verl.launch import load

    recipe, path = recipes.load_recipe("lp_reg")
    with pytest.raises(UserError, match="cannot run here"):
        reproduce.run_recipe(recipe, path, tmp_path / "out", data_dir, progress=False)
    _, section = load(tmp_path / "out" / "configs" / "lp_reg.yaml")
    assert section.overrides == ["actor_rollout_ref.actor.use_dynamic_bsz=true",
                                 "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=30720"]
