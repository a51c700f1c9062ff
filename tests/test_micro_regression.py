"""The CI regression test of the main job: `rlvr reproduce micro --quick`, compared with committed goldens.

The quick run (every method, K = 64 samples on 6 held-out problems per family, from the shipped base
model) is compared, model by model, with the golden runs in tests/goldens/micro-quick through `rlvr
compare`'s paired bootstrap with Holm's correction, so a different CPU (other floating-point rounding, so
other samples) passes while a broken method fails. `tox -e regression` runs it as the main job runs:
PyTorch's CPU kernels pinned to AVX2 and the packages of constraints.txt. The last test shows that it
does fail: GRPO with its loss sign flipped, trained with the same budget, is flagged against GRPO's
golden.

Refresh the goldens after an intended change of the micro world, the base recipe or a method:
`bash tests/goldens/refresh.sh` (see tests/goldens/README.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from rlvr.harness import cpu_isa
from rlvr.harness.report.compare import compare_runs
from rlvr.harness.reproduce.micro import (
    QUICK,
    REGRESSION_TOLERANCE,
    MicroRecipe,
    evaluate_model,
    micro_base,
    run_micro,
    train_method,
)
from rlvr.methods.grpo import GRPO

from rlvr import methods

pytestmark = pytest.mark.regression      # tox -e regression (CI runs it after the test suite)

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "goldens" / "micro-quick"
CACHE = REPO / ".cache" / "rlvr"          # the same base-model cache as `rlvr reproduce micro`
TOLERANCE = REGRESSION_TOLERANCE          # points of pass@k a model may lose before it counts (2)


def _golden_labels() -> list[str]:
    return sorted(p.name for p in (GOLDEN / "runs").iterdir() if (p / "metrics.json").exists())


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("micro-quick")
    run_micro(out, CACHE, quick=True, progress=False)
    return out


def test_torch_runs_the_pinned_cpu_kernels():
    """The goldens were made with PyTorch's AVX2 kernels (tox -e regression sets ATEN_CPU_CAPABILITY=avx2, as
    `rlvr reproduce micro` does); elsewhere the comparison still holds, within its statistical tolerance."""
    if cpu_isa.cpu_offers_avx2() is False:
        pytest.skip(f"this CPU does not offer AVX2: torch runs its {cpu_isa.current()} kernels, and the quick run "
                    f"can match the goldens only within the tolerance")
    assert cpu_isa.current() == cpu_isa.PINNED_NAME, (
        f"torch runs its {cpu_isa.current()} CPU kernels: run this test through `tox -e regression`, or with "
        f"ATEN_CPU_CAPABILITY=avx2 in the environment")


def test_goldens_were_made_by_this_recipe():
    """A changed recipe needs new goldens: the committed recipe.json must equal today's quick recipe."""
    from dataclasses import asdict, replace

    want = json.loads(json.dumps(asdict(replace(MicroRecipe(), **QUICK)) | {"quick": True}, default=str))
    have = json.loads((GOLDEN / "recipe.json").read_text())
    assert have == want, "tests/goldens/micro-quick is stale: run `bash tests/goldens/refresh.sh`"


def test_every_model_matches_its_golden(quick_run):
    labels = _golden_labels()
    assert labels == sorted(["base", *(name for name, _ in MicroRecipe().methods)])
    failures = []
    for label in labels:
        cmp = compare_runs(str(GOLDEN / "runs" / label), str(quick_run / "runs" / label), tolerance=TOLERANCE)
        assert sum(cmp.shared.values()) == 3 * QUICK["eval_limit"]
        if cmp.regressions:
            failures.append(f"{label}:\n{cmp.render()}")
    assert not failures, "\n\n".join(failures)


@dataclass(frozen=True)
class SignFlippedGRPO(GRPO):
    """The planted regression: GRPO whose loss has the wrong sign (it learns to fail). Registered only
    inside its test (other test files enumerate the registry at collection time)."""

    name: ClassVar[str] = "grpo_sign_flipped"

    def loss(self, batch):
        loss, stats = super().loss(batch)
        return -loss, stats


def test_planted_sign_flip_is_caught(quick_run, tmp_path, monkeypatch):
    monkeypatch.setitem(methods._REGISTRY, "grpo_sign_flipped", SignFlippedGRPO)
    recipe = MicroRecipe(**QUICK)
    base, _ = micro_base(recipe, CACHE, progress=False)    # the shipped base, as in the quick run
    grpo_overrides = dict(dict(recipe.methods)["grpo"])
    model = train_method(recipe, base, tmp_path, "grpo_sign_flipped", tuple(grpo_overrides.items()), progress=False)
    run = evaluate_model(recipe, model, tmp_path, "grpo_sign_flipped", progress=False)
    cmp = compare_runs(str(GOLDEN / "runs" / "grpo"), str(run), tolerance=TOLERANCE)
    assert cmp.regressions, "a sign-flipped GRPO was not caught:\n" + cmp.render()
    # and the same budget with the right sign, from the same base, is not flagged (the quick run's GRPO)
    assert not compare_runs(str(GOLDEN / "runs" / "grpo"), str(quick_run / "runs" / "grpo"),
                            tolerance=TOLERANCE).regressions
