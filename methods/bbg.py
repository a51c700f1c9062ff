"""BBG: Bayesian Boundary Gating (docs/methods/bbg.md) -- a RECONSTRUCTION, there is no official code.

Paper: Yuan et al., "Understanding Diversity Collapse in RLVR via the Lens of Overtraining",
arXiv 2606.15455v1. Code: none found. Only the paper's sec. 5.1 and appendix C were readable; the
utility formula (paper Eq. 8) comes from a third-party re-implementation [S] and was checked numerically;
the gate form, the weights and the base loss are our reconstruction [S + I], each a flag. Tags: [S] a
secondary source, [I] our inference (docs/methods/README.md); docs/methods/bbg.md has the details.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from rlvr.methods import register
from rlvr.methods.advantages import group_index, group_sum
from rlvr.methods.base import Method, TokenBatch
from rlvr.methods.grpo import GRPO
from rlvr.methods.nsr import WReinforce
from torch import Tensor

__all__ = ["BBG", "boundary_utility"]


def boundary_utility(m, n, k):
    """u(m; n, k) = E_{p ~ Beta(m+1, n-m+1)}[k (1-p)^(k-1)] = k prod_{j=1}^{k-1} (n-m+j) / (n+1+j).

    The posterior mean, under a uniform Beta(1, 1) prior and m successes in n rollouts, of
    d pass@k / dp: how much raising the per-sample success probability p still moves pass@k.
    Computed as k * Gamma(n-m+k) Gamma(n+2) / (Gamma(n-m+1) Gamma(n+k+1)) in log space.
    m, n: ints or integer tensors (broadcast); k: int >= 1. Returns a float, or a float64 tensor.
    """
    if isinstance(m, Tensor) or isinstance(n, Tensor):
        m_t, n_t = torch.as_tensor(m, dtype=torch.float64), torch.as_tensor(n, dtype=torch.float64)
        if k < 1 or bool((m_t < 0).any()) or bool((m_t > n_t).any()):
            raise ValueError("boundary_utility needs 0 <= m <= n and k >= 1")
        lg = torch.lgamma
        return k * torch.exp(lg(n_t - m_t + k) - lg(n_t - m_t + 1) - lg(n_t + k + 1) + lg(n_t + 2))
    if k < 1 or not 0 <= m <= n:
        raise ValueError(f"boundary_utility needs 0 <= m <= n and k >= 1, got m={m}, n={n}, k={k}")
    lg = math.lgamma
    return k * math.exp(lg(n - m + k) - lg(n - m + 1) - lg(n + k + 1) + lg(n + 2))


@register("bbg")
@dataclass(frozen=True)
class BBG(Method):
    """BBG: gate out problems whose boundary utility u(m; n, k_ref) is small, weight the rest by their
    utility, train the kept groups with a base objective, refilling the batch with new prompts.
    Paper: arXiv 2606.15455 (https://arxiv.org/abs/2606.15455); no official code. Every default is our
    reconstruction [S/I], not a verified setting; docs/methods/bbg.md.

    k_ref: the pass@k the gate targets (third-party default 16 [S]).
    tau: gate threshold (third-party default 0.01 [S]).
    gate: "tau_n_plus_1" (keep iff u >= tau * (n + 1), the third-party reading of Eq. 9 [S]), "tau"
        (keep iff u >= tau) or "off".
    weighting: "u_over_u1" (advantage times u(m) / u(1), the third-party normalisation [S]), "u" (times
        u(m)) or "none" (gate only).
    base: "w_reinforce" (the paper's baseline is full W-RF, and the m = 0 bucket needs a signed loss [I])
        or "grpo" (group-normalised advantage, no KL).
    lam, eps_low, eps_high, entropy_coef: of the base objective (W-REINFORCE's lambda and the
        RLVR-Decomposed code defaults [I]); loss_agg_mode, microbatch_weighted: as every method.
    With k_ref = 1 the utility is 1 for every m, nothing is gated and the weights are 1: BBG is its base.
    The posterior is per problem per step: m and n are the counts of this step's rollouts only, under a
    fresh Beta(1, 1) prior. Whether the paper instead keeps a running posterior across epochs is open
    (not found); no flag offers one.
    """

    k_ref: int = 16
    tau: float = 0.01
    gate: Literal["tau_n_plus_1", "tau", "off"] = "tau_n_plus_1"
    weighting: Literal["u_over_u1", "u", "none"] = "u_over_u1"
    base: Literal["w_reinforce", "grpo"] = "w_reinforce"
    lam: float = 0.1
    eps_low: float = 0.2
    eps_high: float = 0.2
    entropy_coef: float = 0.001

    def __post_init__(self) -> None:
        if self.k_ref < 1:
            raise ValueError(f"k_ref must be >= 1, got {self.k_ref}")
        if self.tau < 0:
            raise ValueError(f"tau must be >= 0, got {self.tau}")
        self.base_method()  # validates the base's fields

    def base_method(self) -> Method:
        common = dict(eps_low=self.eps_low, eps_high=self.eps_high, entropy_coef=self.entropy_coef,
                      loss_agg_mode=self.loss_agg_mode, microbatch_weighted=self.microbatch_weighted,
                      sum_norm_divisor=self.sum_norm_divisor)
        if self.base == "w_reinforce":
            return WReinforce(lam=self.lam, **common)
        return GRPO(kl_coef=0.0, **common)

    @property
    def requires(self) -> frozenset[str]:
        return self.base_method().requires

    @property
    def refill(self) -> bool:
        return self.gate != "off"

    def group_utility(self, rewards: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per row [B] (float64): its group's utility u(m_g; n_g, k_ref), u(1; n_g, k_ref) and gate threshold."""
        inverse, g = group_index(group_ids)
        n = group_sum(torch.ones(rewards.shape, dtype=torch.float64, device=rewards.device), inverse, g)
        m = group_sum((rewards == 1).to(torch.float64), inverse, g)
        u = boundary_utility(m, n, self.k_ref)
        u1 = boundary_utility(torch.ones_like(n), n, self.k_ref)
        thr = {"tau_n_plus_1": self.tau * (n + 1), "tau": torch.full_like(n, self.tau),
               "off": torch.full_like(n, -math.inf)}[self.gate]
        return u[inverse], u1[inverse], thr[inverse]

    def select_rows(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        u, _, thr = self.group_utility(rewards, group_ids)
        return u >= thr

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        base = self.base_method().advantages(rewards, group_ids, mask)
        u, u1, thr = self.group_utility(rewards, group_ids)
        weight = {"none": torch.ones_like(u), "u": u, "u_over_u1": u / u1}[self.weighting]
        # gated-out rows get 0 as well, so a trainer that forgets select_rows still ignores them
        weight = torch.where(u >= thr, weight, torch.zeros_like(weight))
        return base * weight[:, None].to(base.dtype)

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        return self.base_method().loss(batch)
