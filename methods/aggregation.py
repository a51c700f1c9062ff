"""Pieces every method shares: loss aggregation (verl's `loss_agg_mode`), the PPO clipped surrogate, k3 KL.

Aggregation follows verl 0.9.1's `core_algos.agg_loss` (the version our verl backend pins), with the
normalisers of the whole mini-batch (`AggScale`), as verl 0.9.1 takes them from its global batch info: a
mini-batch split into micro-batches whose losses are summed (`loss_1.backward(); loss_2.backward(); ...`,
no division by the number of micro-batches) gets exactly the gradient of the unsplit mini-batch. When
`scale` is None the batch given is taken to be the mini-batch. docs/methods/README.md describes the modes
for users.

| mode                      | loss                                              |
|---------------------------|---------------------------------------------------|
| `token-mean`              | sum_{b,t} L m / tokens                            |
| `seq-mean-token-sum`      | sum_b (sum_t L m) / seqs                          |
| `seq-mean-token-mean`     | sum_b (sum_t L m / sum_t m) / seqs                |
| `seq-mean-token-sum-norm` | sum_{b,t} L m / (seqs * t_pad)  (sum_norm_divisor "seqs_t_pad", verl 0.9.1) |
|                           | sum_{b,t} L m / t_pad           (sum_norm_divisor "t_pad", verl main, Jan 2026) |

`seqs` counts the sequences with at least one response token: verl 0.9.1's `agg_loss` leaves fully masked
rows out of its sequence count (`seq_mask = mask.sum(-1) > 0`) when it is not handed a global batch size,
and `AggScale.of` does the same. (verl's trainer hands it `ppo_mini_batch_size`, every row; a row of our
trainer always holds at least one token, so the two agree there.)

`seq-mean-token-sum-norm` is Dr. GRPO's (1/G) sum_i sum_t L / L_max, and verl 0.9.1's form (sum over
sequences / global_batch_size / loss_scale_factor). verl 0.3.1 and verl's main branch of January 2026
divide the masked total by `t_pad` alone (no division by the sequence count), so that loss grows with the
mini-batch (under gradient clipping that changes the update); `sum_norm_divisor="t_pad"` selects it.
`t_pad` is verl's `mask.shape[-1]` unless set; verl notes it should be a constant (the max response length)
to match Dr. GRPO, and a constant is also what keeps it split-invariant, so `AggScale.of` takes it as an
argument. `microbatch_weighted=True` gives the verl 0.2/0.3 form used by the NSR (RLVR-Decomposed), CaSP
(SimKO) and Lp-Reg (Lp-Reg-dev) code with `use_dynamic_bsz`: the token-mean *of the micro-batch* times
(micro-batch rows / mini-batch rows), a row-weighted average of per-micro-batch token means (close to, not
equal to, a global token-mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = ["AggMode", "AGG_MODES", "SumNormDivisor", "SUM_NORM_DIVISORS", "AggScale", "agg_loss", "ppo_ratio",
           "ppo_clip_loss", "ppo_clip_terms", "k3_kl", "masked_mean"]

AggMode = Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
AGG_MODES: tuple[str, ...] = get_args(AggMode)
SumNormDivisor = Literal["seqs_t_pad", "t_pad"]
SUM_NORM_DIVISORS: tuple[str, ...] = get_args(SumNormDivisor)

# verl clamps the log-ratio before exp (current verl; harmless elsewhere: e^20 is already absurd).
_LOG_RATIO_CLAMP = 20.0


@dataclass(frozen=True)
class AggScale:
    """Normalisers of the whole mini-batch, handed to the loss of each of its micro-batches.

    tokens: number of response tokens (sum of the mask) in the mini-batch.
    seqs:   number of sequences with at least one response token in the mini-batch (verl 0.9.1's count).
    t_pad:  the constant of `seq-mean-token-sum-norm` (verl: the padded response length).
    rows:   number of rows in the mini-batch, empty ones included (the share of `microbatch_weighted`);
            None: seqs.
    dp:     data-parallel ranks whose losses are averaged (verl backend); only the `t_pad` divisor of
            `seq-mean-token-sum-norm` needs it, the other normalisers are already per-rank shares.
    """

    tokens: float
    seqs: float
    t_pad: float
    rows: float | None = None
    dp: int = 1

    @classmethod
    def of(cls, mask: Tensor, t_pad: int | None = None) -> AggScale:
        """From the mini-batch's mask [B, T]; t_pad defaults to T (pass the max response length when
        micro-batches are padded to different lengths)."""
        return cls(tokens=float(mask.sum()), seqs=int((mask.sum(-1) > 0).sum()),
                   t_pad=int(mask.shape[-1] if t_pad is None else t_pad), rows=int(mask.shape[0]))


def agg_loss(loss: Tensor, mask: Tensor, mode: AggMode, scale: AggScale | None = None,
             microbatch_weighted: bool = False, sum_norm_divisor: SumNormDivisor = "seqs_t_pad") -> Tensor:
    """Aggregate a per-token loss [B, T] over the mask [B, T] (0/1) into a scalar.

    scale: the mini-batch's normalisers (None: this batch is the mini-batch).
    microbatch_weighted: verl 0.2's token-mean of this micro-batch times B / scale.rows (token-mean only).
    sum_norm_divisor: `seq-mean-token-sum-norm` divides by seqs * t_pad ("seqs_t_pad", verl 0.9.1) or by
        t_pad alone ("t_pad", verl main of January 2026); other modes ignore it.
    A mini-batch with no response token gives 0 (not nan), so an all-padding micro-batch is harmless.
    """
    if mode not in AGG_MODES:
        raise ValueError(f"loss_agg_mode: unknown mode {mode!r}; known: {', '.join(AGG_MODES)}")
    if sum_norm_divisor not in SUM_NORM_DIVISORS:
        raise ValueError(f"sum_norm_divisor: unknown value {sum_norm_divisor!r}; known: {', '.join(SUM_NORM_DIVISORS)}")
    m = mask.to(loss.dtype)
    s = AggScale.of(mask) if scale is None else scale
    lm = loss * m
    if microbatch_weighted:
        if mode != "token-mean":
            raise ValueError(f"microbatch_weighted applies to loss_agg_mode 'token-mean' only, not {mode!r}")
        rows = s.seqs if s.rows is None else s.rows
        return lm.sum() / m.sum().clamp_min(1.0) * (mask.shape[0] / max(rows, 1))
    if mode == "token-mean":
        return lm.sum() / max(s.tokens, 1.0)
    if mode == "seq-mean-token-sum":
        return lm.sum() / max(s.seqs, 1)
    if mode == "seq-mean-token-mean":
        # a row with no token contributes 0 and is not counted in s.seqs (verl 0.9.1)
        return (lm.sum(-1) / m.sum(-1).clamp_min(1.0)).sum() / max(s.seqs, 1)
    if sum_norm_divisor == "t_pad":
        # each of dp ranks divides its own total by t_pad in verl main; x dp keeps the averaged gradient the
        # gradient of (mini-batch total / t_pad), our one-process definition
        return lm.sum() * s.dp / s.t_pad
    return lm.sum() / (max(s.seqs, 1) * s.t_pad)


def masked_mean(x: Tensor, mask: Tensor) -> float:
    """Mean of x over mask == 1 as a Python float, for logging (0.0 when the mask is empty)."""
    m = mask.to(x.dtype)
    return float((x.detach() * m).sum() / m.sum().clamp_min(1.0))


def ppo_ratio(logp: Tensor, old_logp: Tensor) -> Tensor:
    """exp(logp - old_logp) [B, T], with verl's clamp of the log-ratio to [-20, 20]."""
    return torch.exp((logp - old_logp).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP))


def ppo_clip_terms(ratio: Tensor, advantages: Tensor, eps_low: float, eps_high: float,
                   dual_clip_c: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """PPO clipped surrogate per token, as a loss (the negated min of the PPO objective), with its two
    clip indicators as verl 0.9.1's `compute_policy_loss_vanilla` logs them.

    ratio, advantages: [B, T]. Returns (loss [B, T], clipped [B, T] bool, capped [B, T] bool):
    clipped: the clipped branch of max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high)) is the larger
        (verl's `pg_clipfrac`; it counts a token whether or not the dual clip then caps it);
    capped: A < 0 and the dual clip's cap -c A is below that max (verl's `pg_clipfrac_lower`; all False
        without a dual clip).
    dual_clip_c (verl 0.9.1 default 3.0, absent in verl 0.2): for A < 0 the loss is capped at -c*A, so
    tokens with ratio > c get no gradient.
    """
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    loss = torch.maximum(unclipped, clipped)
    is_clipped = clipped > unclipped
    capped = torch.zeros_like(is_clipped)
    if dual_clip_c is not None:
        cap = -advantages * dual_clip_c
        capped = (advantages < 0) & (cap < loss)
        loss = torch.where(advantages < 0, torch.minimum(loss, cap), loss)
    return loss, is_clipped, capped


def ppo_clip_loss(ratio: Tensor, advantages: Tensor, eps_low: float, eps_high: float,
                  dual_clip_c: float | None = None) -> tuple[Tensor, Tensor]:
    """`ppo_clip_terms` without the dual-clip indicator: (loss [B, T], clipped [B, T] bool), where clipped is
    verl's `pg_clipfrac` indicator (the dual clip's caps are not counted in it)."""
    loss, is_clipped, _ = ppo_clip_terms(ratio, advantages, eps_low, eps_high, dual_clip_c)
    return loss, is_clipped


def k3_kl(logp: Tensor, target_logp: Tensor, clamp: float | None = 10.0) -> Tensor:
    """k3 ("low_var_kl") per token: exp(q - logp) - (q - logp) - 1 with q = target_logp (DeepSeekMath's
    estimator, verl's `kl_penalty(..., "low_var_kl")`).

    Its gradient w.r.t. logp is (1 - pi_q/pi_theta): in expectation over tokens sampled from pi_theta the
    gradient of the forward KL(q || pi_theta). verl clamps the value to [-10, 10], which zeroes the
    gradient once q/pi_theta exceeds about 13.6.
    """
    x = target_logp - logp
    if clamp is not None:
        # past x = 50 the value is clamped anyway; capping x keeps exp finite, so its backward is 0, not nan
        x = x.clamp(max=50.0)
    kl = torch.exp(x) - x - 1.0
    return kl if clamp is None else kl.clamp(-clamp, clamp)
