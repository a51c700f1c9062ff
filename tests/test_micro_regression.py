"""The CI regression test of the main job: `rlvr reproduce micro --quick`, compared with committed goldens.

The quick run (every method and the random-reward control, each with the quick recipe's training seeds,
K = 64 samples on the held-out problems of each family, from the shipped base model) is checked twice:

- model by model against the golden runs in tests/goldens/micro-quick through `rlvr compare`'s paired
  bootstrap with Holm's correction, so a different CPU (other floating-point rounding, so other samples)
  passes while a method that got worse fails;
- arm by arm for its learning signal against the base model and the random-reward control of the same run:
  - an arm some seed of whose golden runs moved clearly away from the base model on some task (`moved`: a
    two-sided paired bootstrap per seed and task, Bonferroni-corrected, p below STRONG) must still have a
    seed that moves (p below 0.05). A loss that is zero or an optimizer that never steps leaves the weights
    at the base's, whose samples are exactly the base's (the evaluations share their sample seeds): p = 1.
    At the quick budget the seeds pull different ways (a seed may lose ten points on one task while another
    gains as much on another), so their mean barely moves and a method that stops learning stays within
    the golden comparison's tolerance: this is the check that catches it;
  - wherever an arm's golden runs differ clearly from the base model or the control in mean pass@1 over
    their seeds, overall or on one task, in either direction (one-sided two-level bootstrap p below STRONG),
    its runs must still differ in that direction (p below 0.05; `beats`, `signal_changes`).

`tox -e regression` runs it as the main job runs: PyTorch's CPU kernels pinned to AVX2 and the packages of
constraints.txt. The last tests show that it fails on two planted regressions, GRPO with its loss sign
flipped (it learns to fail) and GRPO with its loss zeroed (it learns nothing), each trained with the quick
budget and its seeds.

Refresh the goldens after an intended change of the micro world, the base recipe or a method:
`bash tests/goldens/refresh.sh` (see tests/goldens/README.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import pytest
from rlvr.harness import cpu_isa
from rlvr.harness.report.compare import compare_runs
from rlvr.harness.reproduce.micro import (
    LEARNING_ALPHA,
    QUICK,
    RANDOM_REWARD_ARM,
    REGRESSION_TOLERANCE,
    MicroRecipe,
    arm_runs,
    beats,
    evaluate_model,
    micro_base,
    moved,
    run_label,
    run_micro,
    signal_changes,
    train_method,
)
from rlvr.methods.grpo import GRPO

from rlvr import methods

pytestmark = pytest.mark.regression      # tox -e regression (CI runs it after the test suite)

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "goldens" / "micro-quick"
CACHE = REPO / ".cache" / "rlvr"          # the same base-model cache as `rlvr reproduce micro`
TOLERANCE = REGRESSION_TOLERANCE          # points of pass@k a model may lose before it counts (2)
STRONG = 0.01                             # a golden learning signal this clear must hold in every run


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
    from dataclasses import asdict

    want = json.loads(json.dumps(asdict(replace(MicroRecipe(), **QUICK)) | {"quick": True}, default=str))
    have = json.loads((GOLDEN / "recipe.json").read_text())
    assert have == want, "tests/goldens/micro-quick is stale: run `bash tests/goldens/refresh.sh`"


def golden_signal() -> dict:
    return json.loads((GOLDEN / "learning.json").read_text())


def check_arm(golden_arm: str, runs: dict[int, Path], ref: Path) -> list[str]:
    """The regression check of one arm's runs ({training seed: run directory}): each run against the golden
    run of `golden_arm` with the same seed (`rlvr compare`), and the arm's learning signal against the base
    model and the random-reward control of the run in `ref` wherever the golden's was clear (STRONG)."""
    failures = []
    for seed, run in sorted(runs.items()):
        cmp = compare_runs(str(GOLDEN / "runs" / run_label(golden_arm, seed)), str(run), tolerance=TOLERANCE)
        assert sum(cmp.shared.values()) == 3 * QUICK["eval_limit"]
        if cmp.regressions:
            failures.append(f"{run.name} against its golden:\n{cmp.render()}")
    golden = golden_signal().get(golden_arm, {})
    refs = {"base": arm_runs(ref, "base"), "control": arm_runs(ref, RANDOM_REWARD_ARM)}
    for name, was in golden.items():
        if name == "moved" or not refs[name]:
            continue
        lost = signal_changes(was, beats([str(r) for r in runs.values()], refs[name]), STRONG)
        what = "the base model" if name == "base" else "the random-reward control"
        failures += [f"{golden_arm}: no learning signal against {what} in mean pass@1: {line}" for line in lost]
    was = golden.get("moved")
    if was and was["p"] < STRONG:
        now = moved([str(r) for r in runs.values()], refs["base"])
        if now["p"] >= LEARNING_ALPHA:
            failures.append(f"{golden_arm}: no learning signal: no seed moved away from the base model on any task "
                            f"(smallest p {now['p']:.3f}, {now['run']} {now['task']} {100 * now['diff']:+.1f} "
                            f"points); the golden {was['run']} moved {100 * was['diff']:+.1f} points on {was['task']} "
                            f"(p {was['p']:.4f})")
    return failures


def quick_arms() -> list[str]:
    return [arm for arm, *_ in MicroRecipe().arms()]


def test_every_model_matches_its_golden_and_keeps_its_learning_signal(quick_run):
    labels = _golden_labels()
    recipe = replace(MicroRecipe(), **QUICK)
    assert labels == sorted(["base", *(label for label, *_ in recipe.trained_runs())])
    cmp = compare_runs(str(GOLDEN / "runs" / "base"), str(quick_run / "runs" / "base"), tolerance=TOLERANCE)
    failures = [f"base:\n{cmp.render()}"] if cmp.regressions else []
    for arm in quick_arms():
        failures += check_arm(arm, {s: quick_run / "runs" / run_label(arm, s) for s in recipe.train_seeds}, quick_run)
    assert not failures, "\n\n".join(failures)


def test_the_goldens_show_a_learning_signal_for_grpo():
    """Without one the learning check of GRPO would be idle: some seed of its golden runs must have moved
    clearly away from the base model on some task (if a recipe change loses that, the quick budget is too
    small to test learning, and the planted zero-loss regression below would say so too)."""
    grpo = golden_signal()["grpo"]
    assert grpo["moved"]["p"] < STRONG, grpo["moved"]


@dataclass(frozen=True)
class SignFlippedGRPO(GRPO):
    """The planted regression: GRPO whose loss has the wrong sign (it learns to fail). Registered only
    inside its test (other test files enumerate the registry at collection time)."""

    name: ClassVar[str] = "grpo_sign_flipped"

    def loss(self, batch):
        loss, stats = super().loss(batch)
        return -loss, stats


@dataclass(frozen=True)
class ZeroLossGRPO(GRPO):
    """The planted "no learning" regression: GRPO whose loss is multiplied by zero (every gradient is zero, so
    the weights stay the base model's)."""

    name: ClassVar[str] = "grpo_zero_loss"

    def loss(self, batch):
        loss, stats = super().loss(batch)
        return loss * 0.0, stats


def planted(cls, quick_run: Path, tmp_path: Path, monkeypatch) -> list[str]:
    """Train the planted GRPO variant with the quick budget and every quick training seed, evaluate it,
    and run the regression check of GRPO on it."""
    monkeypatch.setitem(methods._REGISTRY, cls.name, cls)
    recipe = replace(MicroRecipe(), **QUICK)
    base, _ = micro_base(recipe, CACHE, progress=False)    # the shipped base, as in the quick run
    grpo_overrides = dict(dict(recipe.methods)["grpo"])
    runs = {}
    for seed in recipe.train_seeds:
        label = run_label(cls.name, seed)
        model = train_method(recipe, base, tmp_path, cls.name, tuple(grpo_overrides.items()), progress=False,
                             seed=seed, label=label)
        runs[seed] = evaluate_model(recipe, model, tmp_path, label, progress=False, method=cls.name, train_seed=seed)
    return check_arm("grpo", runs, quick_run)


def test_planted_sign_flip_is_caught(quick_run, tmp_path, monkeypatch):
    failures = planted(SignFlippedGRPO, quick_run, tmp_path, monkeypatch)
    assert failures, "a sign-flipped GRPO was not caught"
    # and the same budget with the right sign, from the same base, is not flagged (the quick run's GRPO)
    recipe = replace(MicroRecipe(), **QUICK)
    assert not check_arm("grpo", {s: quick_run / "runs" / run_label("grpo", s) for s in recipe.train_seeds}, quick_run)


def test_planted_zero_loss_is_caught(quick_run, tmp_path, monkeypatch):
    failures = planted(ZeroLossGRPO, quick_run, tmp_path, monkeypatch)
    assert any("no learning signal" in f for f in failures), "a GRPO that learns nothing was not caught"
