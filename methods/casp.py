"""CaSP (= SimKO v1): candidate-aware support preservation (docs/methods/casp.md).

Paper: Peng et al., "Beyond the Sampled Token: Preserving Candidate Support in RLVR", arXiv 2510.14807v3
(v1: "SimKO: Simple Pass@K Policy Optimization"). Code: github.com/CLR-Lab/SimKO @ 306f4ff4 (verl 0.2.0.dev):
`core_algos.py::compute_policy_loss_simko`, `dp_actor.py::_forward_micro_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from rlvr.methods import register
from rlvr.methods.advantages import group_normalized, per_token
from rlvr.methods.aggregation import masked_mean, ppo_clip_terms, ppo_ratio
from rlvr.methods.base import Method, TokenBatch
from rlvr.methods.grpo import ppo_stats
from torch import Tensor

__all__ = ["CaSP", "forking_tokens"]


@torch.no_grad()
def forking_tokens(entropy: Tensor, mask: Tensor, q: float) -> Tensor:
    """bool [B, T]: valid tokens whose entropy is strictly above the q-quantile (linear interpolation)
    of the entropies of the valid tokens of the same response (code: `row_quantile_masked`)."""
    valid = mask > 0
    h = torch.where(valid, entropy.detach(), torch.full_like(entropy, float("nan")))
    thr = torch.nanquantile(h, q, dim=-1, keepdim=True, interpolation="linear")
    return valid & (entropy.detach() > thr)


@register("casp")
@dataclass(frozen=True)
class CaSP(Method):
    """CaSP: on forking (high-entropy) tokens, smooth the positive update over the top-N candidates and
    penalise a sampled argmax harder on negative responses. GRPO advantage, PPO clip, no KL,
    no entropy bonus (the code's 0.001 bonus is on a detached entropy, so it has no gradient).
    docs/methods/casp.md lists every difference between the paper and the code.
    Defaults: the code and the paper's math setting (alpha 0.01, N 3, q 0.8, lambda_top1 1.1, eps 0.2).
    Paper: arXiv 2510.14807 (https://arxiv.org/abs/2510.14807). Code: https://github.com/CLR-Lab/SimKO @ 306f4ff4.

    alpha: label-smoothing mass moved to the top-N candidates (logic 0.005, code 0.05, 32B also 0.05).
    top_n: N.
    entropy_quantile: q; forking tokens have entropy > the per-response q-quantile (`forking_tokens`).
    lambda_top1: factor on negative rows' forking tokens whose sampled token is the current argmax
        (code hard-codes 1.1; the logic runs used 1.05).
    eps_low, eps_high, dual_clip_c: PPO clip on the mixed ratio (dual clip off: verl 0.2 has none).
    candidates: "current" (code: the top-N ids and the argmax of the policy being updated) or "old"
        (the old policy's top-N ids cached at old-log-prob time, so each ratio is a per-token ratio; the
        argmax is then the old one). They agree on the first mini-batch of a rollout batch.
    top1_penalty: "advantage" (code: A *= lambda_top1, scaling both PPO branches) or "ratio" (paper
        Fig. 10: ratio *= lambda_top1 before clipping).
    positive_rows: "reward" (code: rows with reward == 1) or "advantage" (paper pseudo-code: A > 0); the
        same under GRPO advantages, where all-correct groups have A = 0.
    norm_adv_by_std: GRPO's std normalisation.

    The code's rank pairing of current top-N log-probs with the old top-N log-probs is
    no flag: each auxiliary term sg(gamma) / sg(gamma_n) * gamma_n has value sg(gamma) and gradient
    sg(gamma) * grad log pi(v_n) whatever old log-prob gamma_n is divided by, so rank and id pairing
    give the same loss and gradient (measured < 1e-11 on random inputs; the code's +1e-8 in the denominator is
    the only trace). The loss therefore uses exp(lp_n - sg(lp_n)) and needs no old top-N log-probs;
    tests/test_methods_casp.py checks this against the code's literal formula.
    """

    alpha: float = 0.01
    top_n: int = 3
    entropy_quantile: float = 0.8
    lambda_top1: float = 1.1
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip_c: float | None = None
    candidates: Literal["current", "old"] = "current"
    top1_penalty: Literal["advantage", "ratio"] = "advantage"
    positive_rows: Literal["reward", "advantage"] = "reward"
    norm_adv_by_std: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.top_n < 1:
            raise ValueError(f"top_n must be >= 1, got {self.top_n}")
        if not 0 <= self.entropy_quantile <= 1:
            raise ValueError(f"entropy_quantile must be in [0, 1], got {self.entropy_quantile}")
        if self.lambda_top1 <= 0:
            raise ValueError(f"lambda_top1 must be > 0, got {self.lambda_top1}")

    @property
    def requires(self) -> frozenset[str]:
        cand = {"topk_logp", "topk_ids"} if self.candidates == "current" else {"old_topk_ids", "logp_at_old_topk"}
        return frozenset({"tokens", "entropy"} | cand)

    def stat_params(self) -> dict[str, float | int | bool]:
        return {"top_n": self.top_n}

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        return per_token(group_normalized(rewards, group_ids, self.norm_adv_by_std), mask)

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        batch.check(self.requires)
        A, valid = batch.advantages, batch.mask > 0
        if self.candidates == "current":
            cand_lp, cand_ids = batch.topk_logp, batch.topk_ids
        else:
            cand_lp, cand_ids = batch.logp_at_old_topk, batch.old_topk_ids
        if cand_lp.shape[-1] != self.top_n:
            raise ValueError(f"TokenBatch candidate log-probs have N = {cand_lp.shape[-1]}, top_n = {self.top_n}")
        gamma = ppo_ratio(batch.logp, batch.old_logp)
        w = forking_tokens(batch.entropy, batch.mask, self.entropy_quantile)
        aw = self.alpha * w.to(gamma.dtype)
        mix = (gamma.detach().unsqueeze(-1) * torch.exp(cand_lp - cand_lp.detach())).sum(-1)
        pos = (batch.rewards == 1)[:, None] if self.positive_rows == "reward" else A > 0
        ratio = torch.where(pos & valid, (1 - aw) * gamma + (aw / self.top_n) * mix, gamma)
        top1 = (A < 0) & w & (batch.tokens == cand_ids[..., 0])
        if self.top1_penalty == "advantage":
            A = torch.where(top1, A * self.lambda_top1, A)
        else:
            ratio = torch.where(top1, ratio * self.lambda_top1, ratio)
        tok, clipped, capped = ppo_clip_terms(ratio, A, self.eps_low, self.eps_high, self.dual_clip_c)
        loss = self.agg(tok, batch)
        stats = ppo_stats(batch, gamma, clipped, capped)
        stats["casp/fork_frac"] = masked_mean(w.to(gamma.dtype), batch.mask)
        stats["casp/top1_penalised_frac"] = masked_mean(top1.to(gamma.dtype), batch.mask)
        stats["entropy"] = masked_mean(batch.entropy, batch.mask)
        stats["loss"] = float(loss.detach())
        return loss, stats
