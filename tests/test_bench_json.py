"""The benchmarks' --json records: settings, results and the provenance of the code that ran."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from rlvr.harness.provenance import collect, write_measurements

ROOT = Path(__file__).resolve().parents[1]


def test_write_measurements_records_provenance(tmp_path):
    out = tmp_path / "sub" / "m.json"
    write_measurements(out, {"n": 1}, {"ratio": 2.0}, collect(["bench.py", "--n", "1"]))
    rec = json.loads(out.read_text())
    assert set(rec) == {"date", "settings", "results", "provenance"}
    assert rec["settings"] == {"n": 1} and rec["results"] == {"ratio": 2.0}
    prov = rec["provenance"]
    assert prov["command"] == ["bench.py", "--n", "1"]
    assert {"sha", "dirty"} <= set(prov["harness"]) and "torch" in prov["versions"] and prov["hardware"]["cpu"]


def test_bench_verify_writes_its_json(tmp_path, data_dir):
    spec = importlib.util.spec_from_file_location("bench_verify", ROOT / "benchmarks" / "bench_verify.py")
    bench_verify = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_verify)

    out = tmp_path / "verify.json"
    argv = ["--problems", "2", "--samples", "8", "--workers", "1", "--naive-sample", "4",
            "--data-dir", str(data_dir), "--json", str(out)]
    bench_verify.main(argv)
    rec = json.loads(out.read_text())
    res = rec["results"]
    assert res["items"] == 16 and res["naive"]["items_timed"] == 4 and res["agree_checked"] == 4
    assert res["pool"]["submitted"] == 16 and res["speedup_extrapolated"] > 0
    assert res["data"]["kind"] == "local" and rec["settings"]["data_dir"] == str(data_dir)
    assert rec["provenance"]["command"][1:] == argv


def test_bench_compare_calibration_writes_its_json(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_cc", ROOT / "benchmarks" / "bench_compare_calibration.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    out = tmp_path / "cc.json"
    bench.main(["--pairs", "2", "--seed-pairs", "2", "--json", str(out)])
    res = json.loads(out.read_text())["results"]
    assert set(res) == {"holm", "none", "seeds"}
    seeds = res["seeds"]
    assert seeds["pairs"] == 2 and seeds["seeds_per_arm"] == 3
    assert seeds["large_regressions_detected"] == 2        # a 17-point drop of pass@1 on one task
    # the planted drop at the MDE is the printed MDE (the bisection hit it)
    assert seeds["mde_regression_drop_pass1_points"] == pytest.approx(seeds["mean_mde_x_pass1_points"], abs=0.05)


def _bench_train():
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "benchmarks" / "bench_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_train_without_trl_says_how_to_get_it(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "trl", None)          # `import trl` raises ImportError
    assert _bench_train().main(["--rounds", "1", "--steps", "2"]) == 2
    assert "pip install trl==1.16.0" in capsys.readouterr().err


def test_bench_train_writes_its_json(tmp_path):
    """Both sides on the micro world for two steps (needs TRL: `tox -e bench`)."""
    import pytest

    pytest.importorskip("trl")
    out = tmp_path / "train.json"
    argv = ["--rounds", "1", "--steps", "2", "--json", str(out)]
    assert _bench_train().main(argv) == 0
    rec = json.loads(out.read_text())
    res = rec["results"]
    assert len(res["ratios"]) == 1 and res["ratio_median"] > 0
    for side in ("ours_s", "trl_s"):
        assert set(res[side]) == {"step", "generate", "verify", "update"} and res[side]["step"] > 0
    assert len(res["learning"]["ours"]["reward_per_step"]) == len(res["learning"]["trl"]["reward_per_step"]) == 2
    assert res["differences"] and rec["settings"]["trl"] and rec["provenance"]["command"][1:] == argv
