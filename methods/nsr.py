"""PSR, NSR and W-REINFORCE: REINFORCE split by the sign of the outcome (docs/methods/nsr.md).

Paper: Zhu et al., "The Surprising Effectiveness of Negative Reinforcement in LLM Reasoning",
arXiv 2506.01347. Code: github.com/TianHongZXY/RLVR-Decomposed @ a5d4e7c1 (verl 0.2.0.dev):
`compute_psr_nsr_outcome_advantage`, `compute_policy_loss`, `ray_trainer.py` (`batch.subset`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlvr.methods import register
from rlvr.methods.advantages import per_token, signed_reinforce
from rlvr.methods.base import Method, TokenBatch
from rlvr.methods.grpo import clipped_pg_loss, with_entropy_bonus
from torch import Tensor

__all__ = ["SignedReinforce", "PSR", "NSR", "WReinforce"]


@dataclass(frozen=True)
class SignedReinforce(Method):
    """Shared body of the three: per-row advantage from the {0, 1} reward, no baseline, no group
    statistics, PPO clip, no KL and no reference model. Defaults follow the code.
    Paper: arXiv 2506.01347 (https://arxiv.org/abs/2506.01347). Code:
    https://github.com/TianHongZXY/RLVR-Decomposed @ a5d4e7c1. User documentation: docs/methods/nsr.md.

    eps_low, eps_high: PPO clip, symmetric 0.2 in the code.
    dual_clip_c: off; verl 0.2 has no dual clip.
    entropy_coef: 0.001, the code's config default, entropy with gradient; the paper reportedly
        says 1e-4 (a secondary source), unconfirmed.
    row_selection: "subset" (code: the trainer drops the rows the objective ignores, so they leave the
        token-mean denominator and PSR/NSR take fewer optimizer steps) or "mask" (keep every row with
        advantage 0: same step count, larger denominator; as with subset, those rows get no entropy
        bonus either, so they contribute no gradient).
    microbatch_weighted: the code's verl 0.2 per-micro-batch token-mean; off = global token-mean.
    """

    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip_c: float | None = None
    entropy_coef: float = 0.001
    row_selection: Literal["subset", "mask"] = "subset"

    def row_advantages(self, rewards: Tensor) -> Tensor:
        raise NotImplementedError

    def __post_init__(self) -> None:
        if not (0 <= self.eps_low <= 1 and self.eps_high >= 0):
            raise ValueError(f"eps_low must be in [0, 1] and eps_high >= 0, got {self.eps_low}, {self.eps_high}")
        if self.entropy_coef < 0:
            raise ValueError(f"entropy_coef must be >= 0, got {self.entropy_coef}")

    @property
    def requires(self) -> frozenset[str]:
        return frozenset({"entropy"}) if self.entropy_coef > 0 else frozenset()

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        return per_token(self.row_advantages(rewards), mask)

    def bonus_rows(self, batch: TokenBatch) -> Tensor | None:
        """The rows the entropy bonus applies to: all (None), except PSR/NSR under "mask", whose rows with
        advantage 0 stand for the rows "subset" drops."""
        return None

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        batch.check(self.requires)
        loss, stats = clipped_pg_loss(self, batch)
        loss = with_entropy_bonus(self, batch, loss, stats, self.bonus_rows(batch))
        stats["loss"] = float(loss.detach())
        return loss, stats


@register("psr")
@dataclass(frozen=True)
class PSR(SignedReinforce):
    """PSR: positive-sample reinforcement; correct rows get advantage +1, wrong rows are dropped
    ("subset") or get 0 ("mask"). Paper: arXiv 2506.01347; code: https://github.com/TianHongZXY/RLVR-Decomposed;
    the flags: docs/methods/nsr.md."""

    def row_advantages(self, rewards: Tensor) -> Tensor:
        return signed_reinforce(rewards, 1.0, 0.0)

    def select_rows(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        keep = super().select_rows(rewards, group_ids)
        return keep & (rewards == 1) if self.row_selection == "subset" else keep

    def bonus_rows(self, batch: TokenBatch) -> Tensor | None:
        return (batch.advantages != 0).any(-1) if self.row_selection == "mask" else None


@register("nsr")
@dataclass(frozen=True)
class NSR(SignedReinforce):
    """NSR: negative-sample reinforcement; wrong rows get advantage -1, correct rows are dropped
    ("subset") or get 0 ("mask"), so they never contribute a gradient. Paper: arXiv 2506.01347; code:
    https://github.com/TianHongZXY/RLVR-Decomposed; the flags: docs/methods/nsr.md."""

    def row_advantages(self, rewards: Tensor) -> Tensor:
        return signed_reinforce(rewards, 0.0, -1.0)

    def select_rows(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        keep = super().select_rows(rewards, group_ids)
        return keep & (rewards != 1) if self.row_selection == "subset" else keep

    def bonus_rows(self, batch: TokenBatch) -> Tensor | None:
        return (batch.advantages != 0).any(-1) if self.row_selection == "mask" else None


@register("w_reinforce")
@dataclass(frozen=True)
class WReinforce(SignedReinforce):
    """W-REINFORCE: every row kept; advantage +lam if correct, -1 if wrong (paper Eq. 9, code
    `advantage=weighted`).
    lam: 0.1, the README's recommended value; lam = 1 is REINFORCE, 0 is NSR.
    Paper: arXiv 2506.01347; code: https://github.com/TianHongZXY/RLVR-Decomposed; the other flags:
    docs/methods/nsr.md (row_selection has no effect: no row is dropped)."""

    lam: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lam < 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")

    def row_advantages(self, rewards: Tensor) -> Tensor:
        return signed_reinforce(rewards, self.lam, -1.0)
