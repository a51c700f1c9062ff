"""The loss shared by the methods that differ from GRPO only in their advantage (RLOO, REINFORCE++,
Pass@k training): PPO's clipped surrogate, an optional k3 KL to a reference and an entropy bonus.

`ClippedPG` is not registered; each subclass defines `advantages` and cites its own paper. The loss is
verl 0.9.1's `compute_policy_loss_vanilla` (`verl/trainer/ppo/core_algos.py`), with which verl pairs
the `rloo`, `reinforce_plus_plus(_baseline)` and other advantage estimators; docs/methods/ has a page
per method.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlvr.methods.aggregation import k3_kl
from rlvr.methods.base import Method, TokenBatch
from rlvr.methods.grpo import clipped_pg_loss, with_entropy_bonus
from torch import Tensor

__all__ = ["ClippedPG"]


@dataclass(frozen=True)
class ClippedPG(Method):
    """PPO clipped surrogate over a method's own outcome advantage.

    eps_low, eps_high: PPO clip range [1 - eps_low, 1 + eps_high] (verl's `clip_ratio`, 0.2).
    dual_clip_c: dual clip for A < 0 (verl's `clip_ratio_c`; verl's vanilla loss always applies it, at
        3.0 by default); null (the default, as for `grpo`) turns it off; 3.0 is verl's loss.
    kl_coef: beta of the k3 KL to the reference policy in the loss (verl's `use_kl_loss`); > 0 needs ref_logp.
    entropy_coef: subtract c * agg(entropy), the entropy keeping its gradient; > 0 needs entropy.
    loss_agg_mode, microbatch_weighted: see methods/aggregation.py (token-mean: verl's default).
    """

    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip_c: float | None = None
    kl_coef: float = 0.0
    entropy_coef: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.eps_low <= 1 and self.eps_high >= 0):
            raise ValueError(f"eps_low must be in [0, 1] and eps_high >= 0, got {self.eps_low}, {self.eps_high}")
        if self.dual_clip_c is not None and self.dual_clip_c <= 1:
            raise ValueError(f"dual_clip_c must be > 1 (or null), got {self.dual_clip_c}")
        if self.kl_coef < 0 or self.entropy_coef < 0:
            raise ValueError("kl_coef and entropy_coef must be >= 0")

    @property
    def requires(self) -> frozenset[str]:
        return frozenset({"ref_logp"} if self.kl_coef > 0 else set()) | (
            {"entropy"} if self.entropy_coef > 0 else set())

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        batch.check(self.requires)
        loss, stats = clipped_pg_loss(self, batch)
        if self.kl_coef > 0:
            kl = self.agg(k3_kl(batch.logp, batch.ref_logp), batch)
            loss = loss + self.kl_coef * kl
            stats["kl_ref"] = float(kl.detach())
        loss = with_entropy_bonus(self, batch, loss, stats)
        stats["loss"] = float(loss.detach())
        return loss, stats
