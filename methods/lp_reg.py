"""Lp-Reg: low-probability regularisation towards a min-p proxy of the policy (methods-spec section 3).

Paper: Huang et al., "Low-probability Tokens Sustain Exploration in Reinforcement Learning with
Verifiable Reward", arXiv 2510.03222. Code: github.com/CarlanLark/Lp-Reg-dev @ 33b27e27 (which its README
says reproduces the paper): `core_algos.py::compute_policy_loss_lp_reg`, `dp_actor.py::apply_min_p`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from rlvr.methods import register
from rlvr.methods.advantages import group_normalized, per_token
from rlvr.methods.aggregation import k3_kl, masked_mean, ppo_clip_loss, ppo_ratio
from rlvr.methods.base import Method, TokenBatch
from rlvr.methods.grpo import ppo_stats
from torch import Tensor

__all__ = ["LpReg", "minp_proxy_logprobs", "PROXY_FILL"]

# the code sets filtered logits to -1e4, not -inf, so filtered tokens get a log-prob of about -1e4
PROXY_FILL = -1e4


@torch.no_grad()
def minp_proxy_logprobs(logits: Tensor, tokens: Tensor, kappa: float, strict: bool = False) -> Tensor:
    """Log-prob of `tokens` under the min-p proxy of softmax(logits) (spec 3.2-3.3).

    logits [..., V], tokens [...] -> [...]. Token v survives iff p_v >= kappa * max(p) (code; `strict`:
    the paper's >); the survivors are renormalised and the others get logit -1e4 (code), so a filtered
    token's proxy log-prob is -1e4 - log(sum of kept exp(logits)) (probability 0).
    The code's log_softmax over the filled logits is computed here with one [..., V] buffer, p / max(p)
    = exp(z - max z), instead of three; exp(-1e4) is 0 in floating point, so the result is the same.
    """
    zmax = logits.amax(dim=-1, keepdim=True)
    rel = (logits - zmax).exp_()                                   # p / max(p)
    keep = rel > kappa if strict else rel >= kappa
    lse_kept = zmax.squeeze(-1) + rel.masked_fill_(~keep, 0.0).sum(-1).log()
    del rel
    y = tokens.unsqueeze(-1)
    z_y = torch.where(keep.gather(-1, y), logits.gather(-1, y), torch.full_like(zmax, PROXY_FILL)).squeeze(-1)
    return z_y - lse_kept


@register("lp_reg")
@dataclass(frozen=True)
class LpReg(Method):
    """Lp-Reg: GRPO advantage, ratio capped at U, plus beta * k3(proxy || pi) on the lowest-probability
    negative-advantage tokens that the min-p proxy keeps (spec 3.3-3.4). Defaults: the code and the
    Qwen3-14B-Base setting (rho 1%, kappa 0.02, beta 1, U 10, token-mean, no KL to a reference, no
    entropy bonus, no dual clip: Lp-Reg-dev has it commented out).

    rho: fraction of tokens regularised (0.005 for Qwen2.5-32B).
    kappa: min-p threshold relative to the max probability (`minp_proxy_logprobs`).
    beta: coefficient of the k3 term (`ppo_kl_coef=1`); the term is clamped to [-10, 10] as in verl.
    ratio_max: U; the PPO clip is [1 - 1, 1 + (U - 1)] = [0, U].
    minp_compare: ">=" (code) or ">" (paper) for the min-p filter (spec 3.9.4).
    percentile_scope: "negatives" (code: the k = max(1, floor(rho * n_neg)) lowest-logp tokens among the
        negative-advantage tokens of the batch passed to `loss` (a micro-batch in the code, sized by tokens,
        30,720 per GPU; `rlvr train` passes micro-batches of `micro_batch_size` rows), and nothing
        at all unless k > 1) or "batch" (paper: the floor(rho * n) lowest among all n valid tokens of
        the batch passed, then those with A < 0; pass the whole training batch for the paper's scope;
        ranking by the detached current log-prob, equal to the sampling probability on-policy [I])
        (spec 3.9.1).
    clip_form: "ppo_max" (code: max(-A r, -A clip(r, 0, U)), which never clips A < 0) or "paper"
        (Eq. 6: -clip(r, 0, U) A for both signs) (spec 3.9.2).
    norm_adv_by_std: GRPO's std normalisation of the advantage (on in the code, spec 0.2).
    Both scopes keep a candidate only if its current log-prob is below its proxy log-prob (code, spec
    3.3.3). The KL is the code's single-token k3 estimate, not the paper's full-distribution KL
    (spec 3.9.3); the proxy is computed from the old policy at old-log-prob time (code,
    `minp_old_log_prob=True`; the same distribution as the paper's at the on-policy step), from the
    temperature-scaled logits (the code uses unscaled logits; both scripts sample at temperature 1).
    """

    split_invariant: ClassVar[bool] = False   # its percentile runs over the micro-batch

    rho: float = 0.01
    kappa: float = 0.02
    beta: float = 1.0
    ratio_max: float = 10.0
    minp_compare: Literal[">=", ">"] = ">="
    percentile_scope: Literal["negatives", "batch"] = "negatives"
    clip_form: Literal["ppo_max", "paper"] = "ppo_max"
    norm_adv_by_std: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.rho <= 1:
            raise ValueError(f"rho must be in (0, 1], got {self.rho}")
        if not 0 < self.kappa <= 1:
            raise ValueError(f"kappa must be in (0, 1], got {self.kappa}")
        if self.beta < 0 or self.ratio_max <= 1:
            raise ValueError(f"beta must be >= 0 and ratio_max > 1, got {self.beta}, {self.ratio_max}")

    @property
    def requires(self) -> frozenset[str]:
        return frozenset({"proxy_logp"})

    def stat_params(self) -> dict[str, float | int | bool]:
        return {"minp_kappa": self.kappa, "minp_strict": self.minp_compare == ">"}

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        return per_token(group_normalized(rewards, group_ids, self.norm_adv_by_std), mask)

    def regularised(self, batch: TokenBatch) -> Tensor:
        """bool [B, T]: the tokens that get the k3 term."""
        lp = batch.logp.detach()
        valid = batch.mask > 0
        neg = valid & (batch.advantages < 0)
        pool = neg if self.percentile_scope == "negatives" else valid
        n = int(pool.sum())
        k = max(1, math.floor(self.rho * n))
        sel = torch.zeros_like(valid)
        if self.percentile_scope == "negatives" and k <= 1:
            return sel
        if n == 0:
            return sel
        idx = torch.where(pool.flatten(), lp.flatten(), torch.full_like(lp.flatten(), math.inf)).topk(
            k, largest=False).indices
        sel.view(-1)[idx] = True
        return sel & neg & (lp < batch.proxy_logp)

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        batch.check(self.requires)
        A = batch.advantages
        ratio = ppo_ratio(batch.logp, batch.old_logp)
        if self.clip_form == "ppo_max":
            tok, clipped = ppo_clip_loss(ratio, A, 1.0, self.ratio_max - 1.0)
        else:
            tok, clipped = -A * ratio.clamp(0.0, self.ratio_max), ratio > self.ratio_max
        sel = self.regularised(batch)
        # the proxy is a fixed target; where() keeps unselected tokens (whose k3 may be clamped) out of the graph
        target = torch.where(sel, batch.proxy_logp, batch.logp.detach())
        kl = torch.where(sel, k3_kl(batch.logp, target), torch.zeros_like(tok))
        loss = self.agg(tok + self.beta * kl, batch)
        stats = ppo_stats(batch, ratio, clipped)
        stats["lp_reg/reg_frac"] = masked_mean(sel.to(tok.dtype), batch.mask)
        stats["lp_reg/kl_mean"] = float(kl.detach().sum() / sel.sum().clamp_min(1))
        stats["loss"] = float(loss.detach())
        return loss, stats
