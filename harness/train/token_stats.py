"""Per-token statistics from the final hidden states and the LM head, chunked over tokens.

Methods need a few numbers per response token from the full next-token distribution: the log-prob of
the sampled token (always), the entropy, the top-N log-probs and ids, log-probs at given ids, the
log-prob under Lp-Reg's min-p proxy. Qwen's vocabulary has 151,936 entries, so logits for a 16k-token
micro-batch take about 10 GB in fp32; here they are formed `chunk_size` tokens at a time and never held
for the whole batch -- in the backward pass too:

* impl="function" (default): a custom autograd.Function whose forward keeps only per-token results and
  the log-normaliser, and whose backward recomputes each chunk's logits and forms d loss / d logits in
  closed form (two [chunk, V] buffers).
* impl="checkpoint": torch.utils.checkpoint per chunk, autograd doing the rest (more [chunk, V] buffers
  alive in the backward; kept for comparison, benchmarks/bench_token_stats.py measures both).
* impl="naive": the whole logits tensor at once; the reference for tests and benchmarks.

Logits are divided by the sampling temperature before every statistic (the distribution the rollouts were sampled
from, as verl and TRL score them), except where a method asks for the raw logits (Lp-Reg's min-p proxy, `minp_raw`,
as its official code builds it). The logits of
a chunk are computed in the hidden states' dtype and upcast to at least float32 for the softmax.

Which statistics a method needs and when (old-log-prob time vs the update) is decided by
`old_pass_fields` and `update_pass_fields` from the method's `requires` and `stat_params()`; when the
behaviour policy is the policy being updated, `one_pass_fields` takes both from the update's own forward.
"""

from __future__ import annotations

from typing import Literal

import torch
from rlvr.methods.base import Method
from rlvr.methods.lp_reg import minp_proxy_logprobs
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = ["token_stats", "old_pass_fields", "update_pass_fields", "one_pass_fields", "default_chunk_size"]

Impl = Literal["function", "checkpoint", "naive"]


def default_chunk_size(vocab: int, budget_elems: int = 2**26) -> int:
    """Tokens per chunk so that one [chunk, V] buffer holds about 2^26 entries (256 MiB in fp32)."""
    return max(1, budget_elems // vocab)


def _logits(h: Tensor, weight: Tensor, temperature: float) -> Tensor:
    z = h @ weight.T
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    return z.div_(temperature) if temperature != 1.0 else z


def _stats_from_logits(z: Tensor, y: Tensor, gather_ids: Tensor | None, entropy: bool, top_n: int
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(lse [C], logp [C], entropy [C] or empty, selected log-probs [C, top_n + K], topk ids [C, top_n])."""
    lse = torch.logsumexp(z, dim=-1)
    logp = z.gather(-1, y[:, None]).squeeze(-1) - lse
    if entropy:
        p = torch.softmax(z, dim=-1)
        # H = lse - sum_v p_v z_v, as a batched dot product so no third [C, V] buffer is formed
        ent = lse - torch.bmm(p.unsqueeze(1), z.unsqueeze(2)).reshape(-1)
        del p
    else:
        ent = z.new_empty(0)
    parts, ids = [], z.new_empty((z.shape[0], 0), dtype=torch.long)
    if top_n:
        vals, ids = z.topk(top_n, dim=-1)
        parts.append(vals - lse[:, None])
    if gather_ids is not None:
        parts.append(z.gather(-1, gather_ids) - lse[:, None])
    sel = torch.cat(parts, -1) if parts else z.new_empty((z.shape[0], 0))
    return lse, logp, ent, sel, ids


class _ChunkedStats(torch.autograd.Function):
    """Outputs logp [M], entropy [M] | [0], selected log-probs [M, S], topk ids [M, N]; see module doc."""

    @staticmethod
    def forward(ctx, hidden, weight, tokens, gather_ids, temperature, entropy, top_n, chunk):
        M = hidden.shape[0]
        out_lse, out_logp, out_ent, out_sel, out_ids = [], [], [], [], []
        for s in range(0, M, chunk):
            g = None if gather_ids is None else gather_ids[s:s + chunk]
            with torch.no_grad():
                z = _logits(hidden[s:s + chunk], weight, temperature)
                lse, logp, ent, sel, ids = _stats_from_logits(z, tokens[s:s + chunk], g, entropy, top_n)
            del z
            out_lse.append(lse), out_logp.append(logp), out_ent.append(ent), out_sel.append(sel)
            out_ids.append(ids)
        lse, logp, ent = torch.cat(out_lse), torch.cat(out_logp), torch.cat(out_ent)
        sel, ids = torch.cat(out_sel), torch.cat(out_ids)
        all_ids = ids if gather_ids is None else torch.cat([ids, gather_ids], -1)
        ctx.save_for_backward(hidden, weight, tokens, all_ids, lse, ent)
        ctx.temperature, ctx.entropy, ctx.chunk = temperature, entropy, chunk
        ctx.mark_non_differentiable(ids)
        ctx.set_materialize_grads(False)   # an output the loss does not use (logged entropy) costs no backward work
        return logp, ent, sel, ids

    @staticmethod
    def backward(ctx, g_logp, g_ent, g_sel, _g_ids):
        hidden, weight, tokens, all_ids, lse, ent = ctx.saved_tensors
        T, chunk = ctx.temperature, ctx.chunk
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=lse.dtype, device=weight.device) if need_w else None
        for s in range(0, hidden.shape[0], chunk):
            sl = slice(s, s + chunk)
            with torch.no_grad():
                logp_all = _logits(hidden[sl], weight, T).sub_(lse[sl, None])          # [C, V]
                p = logp_all.exp()                                                     # [C, V]
                # d logp_y / dz = e_y - p; d logp_v / dz = e_v - p; d H / dz = -p (log p + H)
                gy = g_logp[sl].to(p.dtype) if g_logp is not None else p.new_zeros(p.shape[0])
                gs = (g_sel[sl].to(p.dtype) if g_sel is not None and all_ids.shape[1]
                      else p.new_zeros((p.shape[0], all_ids.shape[1])))
                if ctx.entropy and g_ent is not None:
                    dz = logp_all.add_(ent[sl, None]).mul_(p).mul_(-g_ent[sl, None].to(p.dtype))
                    dz.sub_(p.mul_((gy + gs.sum(-1))[:, None]))
                else:
                    dz = p.mul_(-(gy + gs.sum(-1))[:, None])
                    del logp_all
                dz.scatter_add_(1, tokens[sl, None], gy[:, None])
                if gs.shape[1]:
                    dz.scatter_add_(1, all_ids[sl], gs)
                if T != 1.0:
                    dz.div_(T)
                if need_h:
                    grad_h[sl] = (dz.to(weight.dtype) @ weight).to(hidden.dtype)
                if need_w:
                    grad_w.addmm_(dz.T, hidden[sl].to(dz.dtype))
                del dz, p
        return (grad_h, None if grad_w is None else grad_w.to(weight.dtype),
                None, None, None, None, None, None)


def _chunk_fn(h, weight, y, g, temperature, entropy, top_n):
    z = _logits(h, weight, temperature)
    lsm = torch.log_softmax(z, dim=-1)
    logp = lsm.gather(-1, y[:, None]).squeeze(-1)
    ent = -(lsm.exp() * lsm).sum(-1) if entropy else z.new_empty(0)
    parts, ids = [], z.new_empty((z.shape[0], 0), dtype=torch.long)
    if top_n:
        vals, ids = lsm.topk(top_n, dim=-1)
        parts.append(vals)
    if g is not None:
        parts.append(lsm.gather(-1, g))
    sel = torch.cat(parts, -1) if parts else z.new_empty((z.shape[0], 0))
    return logp, ent, sel, ids


def token_stats(hidden: Tensor, weight: Tensor, tokens: Tensor, *, temperature: float = 1.0,
                mask: Tensor | None = None, entropy: bool = False, top_n: int = 0,
                gather_ids: Tensor | None = None, minp_kappa: float | None = None, minp_strict: bool = False,
                minp_raw: bool = False, chunk_size: int | None = None, impl: Impl = "function") -> dict[str, Tensor]:
    """Per-token statistics of softmax(hidden @ weight.T / temperature) without a [B, T, V] tensor.

    hidden [B, T, H] (the states that predict `tokens`, i.e. already shifted by one), weight [V, H],
    tokens [B, T] the sampled ids, mask [B, T] (optional: padding positions are skipped and get 0).
    Returns a dict:
      "logp"        [B, T]     log-prob of tokens (differentiable)
      "entropy"     [B, T]     if entropy=True (differentiable)
      "topk_logp"   [B, T, N]  the N = top_n largest log-probs, rank order (differentiable)
      "topk_ids"    [B, T, N]  their ids
      "logp_at_ids" [B, T, K]  log-probs at gather_ids [B, T, K] (differentiable)
      "proxy_logp"  [B, T]     log-prob under the min-p proxy (rlvr.methods.lp_reg.minp_proxy_logprobs) if
                               minp_kappa is given; never differentiable; built from the logits before
                               the division by the temperature when minp_raw (Lp-Reg's code), else after
    """
    B, T, H = hidden.shape
    V = weight.shape[0]
    chunk = chunk_size or default_chunk_size(V)
    h2, y = hidden.reshape(B * T, H), tokens.reshape(B * T)
    g = None if gather_ids is None else gather_ids.reshape(B * T, -1)
    idx = None
    if mask is not None:
        idx = mask.reshape(-1).nonzero().squeeze(-1)
        h2, y, g = h2[idx], y[idx], (None if g is None else g[idx])
    if impl == "function":
        logp, ent, sel, ids = _ChunkedStats.apply(h2, weight, y, g, temperature, entropy, top_n, chunk)
    elif impl in ("checkpoint", "naive"):
        step = chunk if impl == "checkpoint" else max(h2.shape[0], 1)
        outs = []
        for s in range(0, h2.shape[0], step):
            args = (h2[s:s + step], weight, y[s:s + step], None if g is None else g[s:s + step],
                    temperature, entropy, top_n)
            outs.append(checkpoint(_chunk_fn, *args, use_reentrant=False) if impl == "checkpoint"
                        else _chunk_fn(*args))
        logp, ent, sel, ids = (torch.cat(t) for t in zip(*outs))
    else:
        raise ValueError(f"impl must be 'function', 'checkpoint' or 'naive', got {impl!r}")

    proxy = None
    if minp_kappa is not None:
        with torch.no_grad():
            proxy = torch.cat([minp_proxy_logprobs(_logits(h2[s:s + chunk], weight, 1.0 if minp_raw else temperature),
                                                   y[s:s + chunk], minp_kappa, minp_strict)
                               for s in range(0, h2.shape[0], chunk)] or [logp.detach()[:0]])

    def unflat(x: Tensor, *tail: int) -> Tensor:
        if idx is not None:
            x = x.new_zeros((B * T, *tail)).index_copy(0, idx, x)
        return x.reshape(B, T, *tail)

    out = {"logp": unflat(logp)}
    if entropy:
        out["entropy"] = unflat(ent)
    if top_n:
        out["topk_logp"], out["topk_ids"] = unflat(sel[:, :top_n], top_n), unflat(ids, top_n)
    if g is not None:
        out["logp_at_ids"] = unflat(sel[:, top_n:], g.shape[-1])
    if proxy is not None:
        out["proxy_logp"] = unflat(proxy)
    return out


@torch.no_grad()
def old_pass_fields(method: Method, hidden: Tensor, weight: Tensor, tokens: Tensor, mask: Tensor, *,
                    temperature: float = 1.0, chunk_size: int | None = None) -> dict[str, Tensor]:
    """TokenBatch fields computed once per rollout batch from the behaviour policy, before any update:
    "old_logp" always, "proxy_logp" (Lp-Reg), "old_topk_ids" (CaSP with candidates="old")."""
    req, p = method.requires, method.stat_params()
    s = token_stats(hidden, weight, tokens, temperature=temperature, mask=mask,
                    top_n=p["top_n"] if "old_topk_ids" in req else 0,
                    minp_kappa=p["minp_kappa"] if "proxy_logp" in req else None,
                    minp_strict=bool(p.get("minp_strict", False)), minp_raw=bool(p.get("minp_raw", False)),
                    chunk_size=chunk_size)
    out = {"old_logp": s["logp"]}
    if "proxy_logp" in req:
        out["proxy_logp"] = s["proxy_logp"]
    if "old_topk_ids" in req:
        out["old_topk_ids"] = s["topk_ids"]
    return out


def update_pass_fields(method: Method, hidden: Tensor, weight: Tensor, tokens: Tensor, mask: Tensor, *,
                       temperature: float = 1.0, old_topk_ids: Tensor | None = None,
                       chunk_size: int | None = None, impl: Impl = "function") -> dict[str, Tensor]:
    """TokenBatch fields of the policy being updated (with grad): "logp" always, "entropy",
    "topk_logp"/"topk_ids", "logp_at_old_topk" (needs old_topk_ids from `old_pass_fields`), "tokens"."""
    req = method.requires
    want_top = "topk_logp" in req or "topk_ids" in req
    s = token_stats(hidden, weight, tokens, temperature=temperature, mask=mask, entropy="entropy" in req,
                    top_n=method.stat_params()["top_n"] if want_top else 0,
                    gather_ids=old_topk_ids if "logp_at_old_topk" in req else None,
                    chunk_size=chunk_size, impl=impl)
    out = {"logp": s["logp"]}
    for name in ("entropy", "topk_logp", "topk_ids"):
        if name in req:
            out[name] = s[name]
    if "logp_at_old_topk" in req:
        if old_topk_ids is None:
            raise ValueError("this method needs old_topk_ids (from old_pass_fields) for logp_at_old_topk")
        out["logp_at_old_topk"] = s["logp_at_ids"]
    if "tokens" in req:
        out["tokens"] = tokens
    return out


def one_pass_fields(method: Method, hidden: Tensor, weight: Tensor, tokens: Tensor, mask: Tensor, *,
                    temperature: float = 1.0, chunk_size: int | None = None, impl: Impl = "function"
                    ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """Both passes' fields from one forward, for when the behaviour policy is the policy being updated (one
    PPO epoch, one mini-batch, rollouts sampled by this very model): the old pass would recompute the same
    numbers. Returns (update fields as `update_pass_fields`, with grad; behaviour fields as `old_pass_fields`,
    detached; logging statistics "entropy" [B, T] and "top1_prob" [B, T], detached). The old top-N ids are
    the current ones, so "logp_at_old_topk" is the current top-N log-probs (the same values and gradient
    as gathering at those ids)."""
    req, p = method.requires, method.stat_params()
    n = int(p.get("top_n", 0)) if req & {"topk_logp", "topk_ids", "old_topk_ids", "logp_at_old_topk"} else 0
    s = token_stats(hidden, weight, tokens, temperature=temperature, mask=mask, entropy=True, top_n=max(1, n),
                    minp_kappa=p["minp_kappa"] if "proxy_logp" in req else None,
                    minp_strict=bool(p.get("minp_strict", False)), chunk_size=chunk_size, impl=impl)
    cur = {"logp": s["logp"]}
    old = {"old_logp": s["logp"].detach()}
    if "entropy" in req:
        cur["entropy"] = s["entropy"]
    if "topk_logp" in req:
        cur["topk_logp"] = s["topk_logp"][..., :n]
    if "topk_ids" in req:
        cur["topk_ids"] = s["topk_ids"][..., :n]
    if "logp_at_old_topk" in req:
        cur["logp_at_old_topk"] = s["topk_logp"][..., :n]
    if "tokens" in req:
        cur["tokens"] = tokens
    if "proxy_logp" in req:
        old["proxy_logp"] = s["proxy_logp"]
    if "old_topk_ids" in req:
        old["old_topk_ids"] = s["topk_ids"][..., :n]
    log = {"entropy": s["entropy"].detach(), "top1_prob": s["topk_logp"][..., 0].detach().exp()}
    return cur, old, log
