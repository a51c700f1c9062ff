"""What makes `rlvr reproduce micro` reproducible: PyTorch's CPU kernels pinned to AVX2, model fingerprints
of weights and tokenizer only, the shipped base model and its check, cache keys that cover code, library
versions and CPU kernels, and the comparison of a run with the committed one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from rlvr.harness import cpu_isa, provenance
from rlvr.harness.errors import UserError
from rlvr.harness.reproduce import micro
from rlvr.harness.reproduce.micro import MicroRecipe
from rlvr.harness.sample.models import TinyModelSpec, model_fingerprint
from rlvr.harness.train.pretrain import PretrainConfig

REPO = Path(__file__).resolve().parent.parent


# ---- the pinned CPU kernels ----------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _fresh_pin_state(monkeypatch):
    """pin() remembers why it could not pin; each test starts (and leaves the module) without that."""
    monkeypatch.setattr(cpu_isa, "_pin_problem", None)


FAKE_JOB = """
import sys
import rlvr.harness.reproduce.micro

def fake_run_micro(out, cache, **kwargs):   # the job's process, at the point where the real one starts
    import torch
    print("CAPABILITY", torch.backends.cpu.get_cpu_capability())

rlvr.harness.reproduce.micro.run_micro = fake_run_micro
assert "torch" not in sys.modules, "torch was imported before the CLI could pin its CPU kernels"
from rlvr.harness.cli import main
sys.exit(main(["reproduce", "micro", "--quick", "--out", sys.argv[1]]))
"""


def test_reproduce_micro_runs_torch_on_the_pinned_avx2_kernels(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != cpu_isa.ENV}
    r = subprocess.run([sys.executable, "-c", FAKE_JOB, str(tmp_path)], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    capability = r.stdout.split("CAPABILITY", 1)[1].strip()
    if cpu_isa.cpu_offers_avx2() is False:
        pytest.skip(f"this CPU does not offer AVX2: torch keeps its {capability} kernels here, so the main job "
                    f"can match the committed results only within the regression test's tolerance")
    assert capability == cpu_isa.PINNED_NAME == "AVX2"


def test_pin_keeps_a_value_the_user_set_and_says_so(monkeypatch):
    monkeypatch.setenv(cpu_isa.ENV, "avx512")
    cpu_isa.pin()
    assert os.environ[cpu_isa.ENV] == "avx512"
    monkeypatch.setattr(cpu_isa, "current", lambda: "AVX512")
    assert "ATEN_CPU_CAPABILITY=avx512 is set" in cpu_isa.note()


def test_pin_after_torch_was_imported_is_reported(monkeypatch):
    import torch  # noqa: F401

    monkeypatch.delenv(cpu_isa.ENV, raising=False)
    monkeypatch.setattr(cpu_isa, "cpu_offers_avx2", lambda: True)
    cpu_isa.pin()
    assert cpu_isa.ENV not in os.environ
    monkeypatch.setattr(cpu_isa, "current", lambda: "AVX512")
    assert "torch was imported before" in cpu_isa.note()
    monkeypatch.setattr(cpu_isa, "current", lambda: "AVX2")
    assert cpu_isa.note() is None


def test_pin_leaves_a_cpu_without_avx2_alone(monkeypatch):
    """PyTorch would take avx2 on faith and stop on an illegal instruction: the pin is not set there."""
    monkeypatch.delenv(cpu_isa.ENV, raising=False)
    monkeypatch.setattr(cpu_isa, "cpu_offers_avx2", lambda: False)
    monkeypatch.setattr(cpu_isa.platform, "machine", lambda: "x86_64")
    cpu_isa.pin()
    assert cpu_isa.ENV not in os.environ
    monkeypatch.setattr(cpu_isa, "current", lambda: "DEFAULT")
    assert "does not offer AVX2" in cpu_isa.note()


# ---- fingerprints --------------------------------------------------------------------------------

def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_fingerprint_covers_weights_and_tokenizer_only(tiny_model, tmp_path):
    a = _copy(tiny_model, tmp_path / "a")
    sha = model_fingerprint(str(a))["sha256"]
    b = _copy(tiny_model, tmp_path / "b")
    cfg = json.loads((b / "config.json").read_text())
    (b / "config.json").write_text(json.dumps({**cfg, "transformers_version": "0.0.1"}))
    (b / "generation_config.json").write_text("{}")
    (b / "rlvr_pretrain.json").write_text(json.dumps({"seconds": 12.5}))
    (b / "trainer_state.json").write_text(json.dumps({"step": 3}))
    assert model_fingerprint(str(b))["sha256"] == sha
    # the same tensors written with other safetensors metadata: the same weights
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(b / "model.safetensors")), str(b / "model.safetensors"), metadata={"format": "pt", "x": "y"})
    assert model_fingerprint(str(b))["sha256"] == sha
    # one weight changed, or the tokenizer changed: another fingerprint
    c = _copy(tiny_model, tmp_path / "c")
    tensors = load_file(str(c / "model.safetensors"))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1e-6
    save_file(tensors, str(c / "model.safetensors"), metadata={"format": "pt"})
    assert model_fingerprint(str(c))["sha256"] != sha
    d = _copy(tiny_model, tmp_path / "d")
    (d / "tokenizer.json").write_text((d / "tokenizer.json").read_text().replace("<|im_end|>", "<|im_stop|>"))
    assert model_fingerprint(str(d))["sha256"] != sha


# ---- cache keys ----------------------------------------------------------------------------------

def test_base_cache_key_covers_code_libraries_and_cpu_kernels(monkeypatch):
    recipe = MicroRecipe()
    key = recipe.base_key()
    assert recipe.base_key() == key
    monkeypatch.setattr(provenance, "source_digest", lambda: "edited")
    assert recipe.base_key() != key
    monkeypatch.undo()
    real = provenance.package_versions
    monkeypatch.setattr(provenance, "package_versions", lambda: {**real(), "transformers": "9.9.9"})
    assert recipe.base_key() != key
    monkeypatch.undo()
    other = "DEFAULT" if cpu_isa.current() != "DEFAULT" else "AVX2"
    monkeypatch.setattr(cpu_isa, "current", lambda: other)
    assert recipe.base_key() != key
    monkeypatch.undo()
    assert replace(recipe, pretrain=PretrainConfig(steps=10)).base_key() != key


def test_source_digest_changes_with_any_source_file(tmp_path):
    pkg = tmp_path / "harness"
    (pkg / "reproduce" / "assets").mkdir(parents=True)
    (pkg / "__pycache__").mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    digest = provenance.source_digest({"harness": [pkg]})
    (pkg / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    (pkg / "reproduce" / "assets" / "model.safetensors").write_bytes(b"weights")
    assert provenance.source_digest({"harness": [pkg]}) == digest
    (pkg / "a.py").write_text("x = 2\n")
    assert provenance.source_digest({"harness": [pkg]}) != digest
    assert len(provenance.source_digest()) == 64


def test_an_out_folder_made_by_other_code_is_not_resumed(tmp_path):
    env = {"code": "a", "torch": "2.13.0", "cpu_capability": "AVX2", "base": "s"}
    micro.check_out_environment(tmp_path, env)
    micro.check_out_environment(tmp_path, dict(env))          # the same: resumes
    with pytest.raises(UserError, match="another code, cpu_capability"):
        micro.check_out_environment(tmp_path, {**env, "code": "b", "cpu_capability": "AVX512"})


# ---- the shipped base ----------------------------------------------------------------------------

def test_shipped_base_is_the_default_recipes_and_intact():
    info = micro.shipped_manifest()
    assert info is not None, "harness/reproduce/assets/micro-base.json is missing"
    assert info["recipe_key"] == MicroRecipe().base_recipe_key(), (
        "the base recipe changed: rebuild and ship the base (rlvr.harness.reproduce.micro.ship_base)")
    assert micro.check_shipped_base() == info["sha256"]
    assert set(info["files"]) == set(micro.SHIPPED_FILES)
    assert "seconds" not in json.loads((micro.SHIPPED_BASE / "rlvr_pretrain.json").read_text())
    assert info["built_with"]["cpu_capability"] == cpu_isa.PINNED_NAME


def test_shipped_base_is_package_data():
    text = (REPO / "pyproject.toml").read_text()
    assert '"assets/micro-base.json", "assets/micro-base/*"' in text


def test_a_damaged_shipped_base_is_one_clear_error(tmp_path):
    base, manifest = _copy(micro.SHIPPED_BASE, tmp_path / "micro-base"), tmp_path / "micro-base.json"
    shutil.copyfile(micro.SHIPPED_MANIFEST, manifest)
    assert micro.check_shipped_base(base, manifest)
    data = bytearray((base / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (base / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"damaged: .*model.safetensors does not match its sha256") as e:
        micro.check_shipped_base(base, manifest)
    assert "\n" not in str(e.value)
    shutil.copyfile(micro.SHIPPED_BASE / "model.safetensors", base / "model.safetensors")
    (base / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="tokenizer.json is missing"):
        micro.check_shipped_base(base, manifest)


def test_a_missing_shipped_base_is_an_error_not_a_silent_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(micro, "SHIPPED_MANIFEST", tmp_path / "micro-base.json")
    with pytest.raises(UserError, match="the shipped micro base is missing .*pass --rebuild-base"):
        micro.micro_base(MicroRecipe(), tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()


@pytest.fixture(scope="module")
def tiny_recipe():
    spec = TinyModelSpec(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                         intermediate_size=64, max_position_embeddings=256)
    return MicroRecipe(families=("micro_arith",), base_spec=spec, base_problems_per_family=40,
                       pretrain=PretrainConfig(steps=10, batch_size=8, lr=3e-3, warmup=2))


def test_rebuild_says_whether_it_reproduced_the_shipped_weights(tiny_recipe, tmp_path, monkeypatch):
    built = micro.build_base(tiny_recipe, tmp_path / "cache", progress=False)
    monkeypatch.setattr(micro, "SHIPPED_BASE", tmp_path / "assets" / "micro-base")
    monkeypatch.setattr(micro, "SHIPPED_MANIFEST", tmp_path / "assets" / "micro-base.json")
    info = micro.ship_base(built, recipe=tiny_recipe)
    assert info["recipe_key"] == tiny_recipe.base_recipe_key()
    assert info["sha256"] == model_fingerprint(str(built))["sha256"]   # the seconds are not in the hash
    # by default: the shipped base, checked
    path, line = micro.micro_base(tiny_recipe, tmp_path / "cache", progress=False)
    assert path == micro.SHIPPED_BASE and "the shipped base" in line
    # rebuilt from scratch: the same bits (pre-training is deterministic on one machine)
    path, line = micro.micro_base(tiny_recipe, tmp_path / "cache", progress=False, rebuild=True)
    assert path != micro.SHIPPED_BASE and "equal the shipped base bit for bit" in line
    # a shipped base with other weights: the rebuild says by how much it differs
    from safetensors.torch import load_file, save_file

    other = _copy(built, tmp_path / "other")
    tensors = load_file(str(other / "model.safetensors"))
    name = sorted(tensors)[1]
    tensors[name] = tensors[name] + 0.25
    save_file(tensors, str(other / "model.safetensors"), metadata={"format": "pt"})
    micro.ship_base(other, recipe=tiny_recipe)
    path, line = micro.micro_base(tiny_recipe, tmp_path / "cache", progress=False, rebuild=True)
    assert "does NOT reproduce the shipped weights: 1 of" in line and "max abs difference 0.25" in line
    # a shipped file changed after it was recorded is caught before use
    save_file(load_file(str(built / "model.safetensors")), str(micro.SHIPPED_BASE / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(UserError, match="damaged"):
        micro.micro_base(tiny_recipe, tmp_path / "cache", progress=False)
    # another recipe's base is built in the cache, not taken from the shipped one
    other = replace(tiny_recipe, seed=1)
    path, line = micro.micro_base(other, tmp_path / "cache", progress=False)
    assert path.parent == tmp_path / "cache" and "this recipe's base is not the shipped one" in line


def test_rebuild_base_is_for_the_micro_world(capsys):
    from rlvr.harness.cli import main

    assert main(["reproduce", "nsr", "--rebuild-base", "--dry-run"]) == 2
    assert "--rebuild-base applies to `rlvr reproduce micro`" in capsys.readouterr().err


# ---- the comparison with the committed run -------------------------------------------------------

def _runs(root: Path, counts: dict[str, dict[str, dict[str, int]]], n: int = 32) -> Path:
    """root/runs/LABEL with the per-problem success counts given, n samples each."""
    from tests.runfactory import make_run

    for label, tasks in counts.items():
        make_run(root / "runs" / label, {t: {p: [i < c for i in range(n)] for p, c in probs.items()}
                                         for t, probs in tasks.items()}, label=label)
    return root


def test_comparison_with_the_committed_run(tmp_path):
    arith = {f"eval-{i}": c for i, c in enumerate([10, 20, 5, 30, 16, 8, 12, 25])}
    committed = _runs(tmp_path / "committed", {"base": {"micro_arith": arith}, "grpo": {"micro_arith": arith}})
    (committed / "recipe.json").write_text(json.dumps({"eval_n": 32, "quick": True}))
    nudged = {**arith, "eval-0": 11}
    collapsed = dict.fromkeys(arith, 0)
    ours = _runs(tmp_path / "ours", {"base": {"micro_arith": arith}, "grpo": {"micro_arith": nudged},
                                     "nsr": {"micro_arith": collapsed}})
    lines = micro.compare_with_committed(ours, ["base", "grpo", "nsr"], committed, {"eval_n": 32, "quick": True})
    assert lines[0] == "base: matches the committed table digit for digit (every per-problem (n, c) count)"
    assert lines[1].startswith("grpo: differs from the committed counts (micro_arith 1 of 8 problems); within")
    assert lines[2].startswith("nsr: no committed run")
    assert lines[-1] == "table: differs from the committed table (per model above)"
    assert micro.compare_with_committed(ours, ["base"], committed, {"eval_n": 32, "quick": True})[-1] == \
        "table: matches the committed table digit for digit"
    # a model far from its committed run is flagged beyond the tolerance
    committed2 = _runs(tmp_path / "committed2", {"grpo": {"micro_arith": arith}})
    far = _runs(tmp_path / "far", {"grpo": {"micro_arith": collapsed}})
    line = micro.compare_with_committed(far, ["grpo"], committed2)[0]
    assert "beyond the regression test's tolerance: micro_arith pass@1 drop" in line
    # another recipe, or no committed folder (an installed package): said, not compared
    line, = micro.compare_with_committed(ours, ["base"], committed, {"eval_n": 64, "quick": True})
    assert line.startswith("committed table: not compared: this run's recipe differs") and "(eval_n)" in line
    line, = micro.compare_with_committed(ours, ["base"], tmp_path / "absent")
    assert "not found" in line and "not compared" in line
