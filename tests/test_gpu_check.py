"""benchmarks/gpu_check.py --smoke: every check runs on the CPU and passes, with only the packages the GPU
machine has (plus the wheels the script's docstring ships), so the script cannot rot before a GPU run."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
CHECKS = ["pytest", "cascade", "sampling", "trainer", "token_stats"]
# what the GPU machine has installed, and the wheels the script's docstring says to bring (with what they need)
GPU_MACHINE = ("torch", "transformers", "numpy", "pytest", "hypothesis", "tabulate", "matplotlib", "safetensors",
               "tokenizers", "tqdm", "pyyaml")
SHIPPED = ("math-verify",)


def modules_missing_there() -> list[str]:
    """Top-level modules installed here whose distributions are neither those packages nor what they need
    (from their metadata), nor this repository."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    dists = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}
    there, todo = set(), [canonicalize_name(n) for n in GPU_MACHINE + SHIPPED]
    while todo:
        name = todo.pop()
        if name in there or name not in dists:
            continue
        there.add(name)
        for text in dists[name].requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    there.add("rlvr-harness")
    return sorted(mod for mod, owners in metadata.packages_distributions().items()
                  if not mod.startswith("_") and not any(canonicalize_name(d) in there for d in owners))


def gpu_like_env(tmp_path: Path) -> dict:
    """This interpreter with the modules the GPU machine lacks made unimportable (a sitecustomize that sets
    them to None in sys.modules, so `import x` raises and importlib.util.find_spec(x) is None)."""
    site = tmp_path / "block"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, sys\n"
        "for m in os.environ.get('RLVR_TEST_BLOCKED', '').split(','):\n"
        "    if m:\n"
        "        sys.modules[m] = None\n")
    # a pytest plugin's module stays importable: a machine without the package has no entry point for it
    # either, while here pytest would load the entry point and find the module blocked (wandb brings
    # platformdirs, which registers one)
    plugins = {e.value.split(":")[0].split(".")[0] for e in metadata.entry_points(group="pytest11")}
    blocked = [m for m in modules_missing_there() if m not in plugins]
    assert "datasets" in blocked or not importlib.util.find_spec("datasets")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
            "RLVR_TEST_BLOCKED": ",".join(blocked)}


def test_smoke_run_passes_every_check_without_the_packages_the_gpu_machine_lacks(tmp_path):
    out = tmp_path / "out"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], cwd=REPO,
                          env=gpu_like_env(tmp_path), capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - t0
    report = json.loads((out / "gpu_check.json").read_text())
    failed = {n: [c for c in r["criteria"] if not c["passed"]] + r["errors"] for n, r in report["checks"].items()
              if not r["passed"]}
    assert proc.returncode == 0, (failed, proc.stdout[-3000:], proc.stderr[-3000:])
    assert report["passed"] is True and report["mode"] == "smoke" and report["schema"] == 1
    assert report["total_seconds"] <= seconds + 1

    prov = report["provenance"]
    assert set(prov) >= {"date", "command", "argv", "git", "source_sha256", "environment", "gpu", "driver", "cuda",
                         "torch", "transformers", "python"}
    assert prov["torch"] and prov["transformers"] and prov["gpu"] is None      # no GPU here
    assert "gpu_check.py --smoke --out" in prov["command"] and len(prov["source_sha256"]) == 64
    assert set(prov["git"]) >= {"sha", "dirty"}
    env = prov["environment"]
    assert env["torch"] and env["versions"]["transformers"] and env["python"] and "driver" in env
    assert env["cuda_available"] is False and "gpu" not in env

    assert list(report["checks"]) == CHECKS
    for name, r in report["checks"].items():
        assert r["passed"] is True and not r["errors"] and "incomplete" not in r, name
        assert r["criteria"] and all(set(c) == {"name", "passed", "value", "limit"} for c in r["criteria"]), name
        assert (out / "logs" / f"{name}.log").exists()

    pt = report["checks"]["pytest"]["numbers"]
    assert pt["counts"]["failed"] == pt["counts"]["errors"] == 0 and pt["counts"]["skipped"] >= 1
    assert all(s["reason"] for s in pt["skips"]) and (out / "pytest-gpu.xml").exists()

    casc = report["checks"]["cascade"]["numbers"]
    for shape in ("qwen2.5-1.5b", "llama-3.2-1b"):
        assert set(casc[shape]) >= {"fp32", "fp32_tokens", "fp32_tokens_full_vocabulary", "bf16", "config", "params"}
        assert casc[shape]["fp32_tokens"]["rows_differing"] == 0 and casc[shape]["fp32_tokens"]["distinct_tokens"] > 50

    samp = report["checks"]["sampling"]["numbers"]
    assert {"1x8", "1x32"} <= set(samp) and all(b["ratios"] for k, b in samp.items() if k != "settings" and "x" in k)

    tr = report["checks"]["trainer"]
    for m in ("grpo", "lp_reg", "casp"):
        assert len(tr["numbers"][m]["seconds_per_step"]) == 3
        assert (out / "trainer" / f"{m}_train_log.jsonl").exists()
    assert any("CUDA only" in s for s in tr["skipped"])       # peak memory is measured on the GPU only
    assert any("CUDA only" in s for s in report["checks"]["token_stats"]["skipped"])


def _load_script():
    """The script as a module under another name (so its test task is not registered in this process)."""
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_part_that_raises_fails_its_check_and_the_next_part_still_runs(tmp_path):
    gc = _load_script()
    res = gc.Result(tmp_path / "r.json", "demo")
    with res.part("first"):
        raise RuntimeError("boom")
    with res.part("second"):
        res.require("second ran", True, 1, 1)
    partial = json.loads((tmp_path / "r.json").read_text())
    assert partial["incomplete"] is True and partial["passed"] is False
    d = res.as_dict()
    assert d["passed"] is False and d["errors"][0]["part"] == "first" and "RuntimeError: boom" in d["errors"][0]["error"]
    assert d["criteria"] == [{"name": "second ran", "passed": True, "value": 1, "limit": 1}]
    assert gc.Result().as_dict()["passed"] is False          # no criterion checked is not a pass


def test_a_check_past_its_time_limit_is_killed_and_recorded(tmp_path):
    gc = _load_script()
    args = gc.argparse.Namespace(out=str(tmp_path), smoke=True, rounds=1, naive_cap_s=1.0, chunks=[8])
    r = gc._run_isolated("cascade", args, 0.5)
    assert r["passed"] is False and r["name"] == "cascade"
    assert "was killed at its limit" in r["errors"][-1]["error"]


def test_a_token_flip_is_explained_only_at_a_cdf_boundary_or_a_top_k_tie():
    import torch

    gc = _load_script()
    z = torch.tensor([0.5, 0.3, 0.2]).log()                 # token 0 holds [0, 0.5), token 1 [0.5, 0.8)
    assert "explained" in gc._flip(z, 0, 0.5 + 1e-6, 0, 1, 0.0)
    assert "explained" not in gc._flip(z, 0, 0.65, 0, 1, 0.0)
    tie = torch.tensor([3.0, 1.0, 1.0 + 1e-7, -2.0])        # the 2nd and 3rd logits tie: top-2 sets may differ
    assert "explained" in gc._flip(tie, 2, 0.95, 0, 1, 1e-6)
    assert "explained" not in gc._flip(tie, 2, 0.95, 0, 1, 0.0)
