"""CISPO: clipped importance-sampling-weight policy optimisation (docs/methods/cispo.md).

Paper: MiniMax, "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention",
arXiv 2506.13585 (the CISPO section). Code: no training code from the authors; verl 0.9.1 (https://github.com/volcengine/verl)
`verl/trainer/ppo/core_algos.py::compute_policy_loss_cispo` (registered as `cispo`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlvr.methods import register
from rlvr.methods.advantages import group_normalized, per_token
from rlvr.methods.aggregation import ppo_ratio
from rlvr.methods.base import Method, TokenBatch
from rlvr.methods.grpo import ppo_stats
from torch import Tensor

__all__ = ["CISPO"]


@register("cispo")
@dataclass(frozen=True)
class CISPO(Method):
    """CISPO: loss -sg(clip(r_t, 1 - eps_low, 1 + eps_high)) A_t log pi(y_t), token-mean; every token keeps
    a gradient (the clipped weight only scales it), unlike PPO, which drops clipped tokens.

    eps_low: 1.0, no lower bound (the paper: "we did not impose a lower bound on the IS weight by setting
        eps_low to a large value"; verl takes both bounds from actor.clip_ratio*, 0.2 by default).
    eps_high: the paper tunes only this bound and does not report its value; 0.28 (DAPO's clip-higher) is
        our choice.
    norm_adv_by_std: GRPO's group-normalised advantage (the paper uses the group-relative
        advantage of GRPO).
    loss_agg_mode: token-mean, the paper's normalisation by the total token count of the batch.
    The paper's general form also has a token mask M_t (PPO's trust region as a mask); it is not used in
    the paper's runs and is not implemented. The ratio's log is clamped to [-20, 20] (verl).
    docs/methods/cispo.md.
    """

    eps_low: float = 1.0
    eps_high: float = 0.28
    norm_adv_by_std: bool = True

    def __post_init__(self) -> None:
        if not (0 <= self.eps_low <= 1 and self.eps_high >= 0):
            raise ValueError(f"eps_low must be in [0, 1] and eps_high >= 0, got {self.eps_low}, {self.eps_high}")

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        return per_token(group_normalized(rewards, group_ids, self.norm_adv_by_std), mask)

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        batch.check(self.requires)
        ratio = ppo_ratio(batch.logp, batch.old_logp)
        weight = ratio.clamp(1.0 - self.eps_low, 1.0 + self.eps_high)
        loss = self.agg(-weight.detach() * batch.advantages * batch.logp, batch)
        stats = ppo_stats(batch, ratio, weight != ratio)
        stats["pg_loss"] = float(loss.detach())
        stats["loss"] = float(loss.detach())
        return loss, stats
