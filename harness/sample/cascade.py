"""Shared-prefix ("cascade") decoding: the many samples of one prompt attend to one copy of its KV.

`rlvr eval` draws n samples (up to 1024) from each prompt. A plain batched decoder repeats the prompt's
keys and values n times and reads all of them at every step; a grown cache is re-concatenated at every
step. Here the prompt's KV is kept once ([kv heads, P, d]) and every step attends to it with one matrix
product over all rows (the rows' queries become the columns of a GEMM), while each row's own generated
tokens live in a preallocated buffer that grows by doubling. The two score blocks share one softmax, so
the result is ordinary causal attention, computed in a different order (values agree to float rounding;
tests/test_cascade.py checks the logits against the model's own forward).

The prompt itself is prefilled by the model's own forward (batch 1), so the only code of ours is the
decode step. Its precision is that of transformers' eager attention: scores are formed in the model's
dtype and the softmax runs in fp32. It is written for the standard pre-norm decoder (Llama, Qwen2, Qwen3, Mistral without a
sliding window) and uses the model's own modules (norms, projections, MLP, rotary embedding); other
architectures decode through transformers (`cascade_unsupported` says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

FAMILIES = ("llama", "qwen2", "qwen3", "mistral")


def cascade_unsupported(model: Any) -> str | None:
    """None when `model` can decode through `CascadeDecoder`, else the reason it cannot."""
    cfg = getattr(model, "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind not in FAMILIES:
        return f"model type {kind!r} is not one of {', '.join(FAMILIES)}"
    if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or [])):
        return "a layer uses sliding-window attention"
    if kind == "mistral" and getattr(cfg, "sliding_window", None):
        return "mistral with a sliding window"
    inner = getattr(model, "model", None)
    if inner is None or not all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return "the model does not have the standard decoder layout"
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if "dynamic" in str(rope.get("rope_type", rope.get("type", ""))):
        return "dynamic rope scaling (its frequencies depend on the sequence length)"
    if not hasattr(model, "lm_head"):
        return "the model has no lm_head"
    if len({str(d) for d in (getattr(model, "hf_device_map", None) or {}).values()}) > 1:
        return "the model is split over several devices"
    for layer in inner.layers:
        att, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        mods = [getattr(att, n, None) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
        mods += [getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
        if any(type(m) is not torch.nn.Linear for m in mods):   # quantised, LoRA-wrapped or unknown layers
            return "a projection is not a plain torch.nn.Linear (quantised or adapter-wrapped weights)"
    return None


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The families' RMSNorm, operation for operation (statistics in fp32, weight applied in the input dtype)."""
    if x.dtype == torch.float32:
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


FUSE_MAX_PARAMS = 500_000_000


@dataclass
class _Layer:
    ln1: tuple[torch.Tensor, float]
    ln2: tuple[torch.Tensor, float]
    qkv: list[tuple[torch.Tensor, torch.Tensor | None]]    # one fused (w, b), or q, k, v separately
    q_norm: Any
    k_norm: Any
    o: tuple[torch.Tensor, torch.Tensor | None]
    gate_up: list[tuple[torch.Tensor, torch.Tensor | None]]  # one fused (w, b), or gate, up separately
    down: tuple[torch.Tensor, torch.Tensor | None]
    act: Any


@dataclass
class Weights:
    """The tensors a decode step reads, taken from the model's modules once. For models under
    FUSE_MAX_PARAMS parameters, q|k|v and gate|up are concatenated (a copy) so that a step runs two
    GEMMs per layer fewer: at small sizes a step's cost is mostly per-operation overhead."""
    embed: torch.Tensor
    layers: list[_Layer]
    norm: tuple[torch.Tensor, float]
    head: tuple[torch.Tensor, torch.Tensor | None]


def _wb(linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    return linear.weight, linear.bias


def _cat(linears) -> tuple[torch.Tensor, torch.Tensor | None]:
    ws, bs = zip(*(_wb(x) for x in linears), strict=True)
    if any(b is not None for b in bs):
        bs = [b if b is not None else w.new_zeros(w.shape[0]) for w, b in zip(ws, bs, strict=True)]
        return torch.cat(ws), torch.cat(bs)
    return torch.cat(ws), None


def _norm(norm) -> tuple[torch.Tensor, float]:
    return norm.weight, norm.variance_epsilon


def weights(model: Any) -> Weights:
    import torch.nn.functional as F

    inner = model.model
    fuse = sum(p.numel() for p in model.parameters()) <= FUSE_MAX_PARAMS
    layers = []
    with torch.no_grad():
        for layer in inner.layers:
            att, mlp = layer.self_attn, layer.mlp
            qkv_mods, gu_mods = (att.q_proj, att.k_proj, att.v_proj), (mlp.gate_proj, mlp.up_proj)
            act = F.silu if model.config.hidden_act == "silu" else mlp.act_fn
            layers.append(_Layer(
                ln1=_norm(layer.input_layernorm),
                ln2=_norm(layer.post_attention_layernorm),
                qkv=[_cat(qkv_mods)] if fuse else [_wb(x) for x in qkv_mods],
                q_norm=getattr(att, "q_norm", None), k_norm=getattr(att, "k_norm", None),   # Qwen3
                o=_wb(att.o_proj),
                gate_up=[_cat(gu_mods)] if fuse else [_wb(x) for x in gu_mods],
                down=_wb(mlp.down_proj), act=act))
    return Weights(inner.embed_tokens.weight, layers, _norm(inner.norm), _wb(model.lm_head))


@dataclass
class Prefix:
    """A prompt after the model's own forward at batch 1: its per-layer keys ([kv, d, P], transposed for
    the score GEMM) and values ([kv, P, d]), and the logits for the first new token ([V])."""
    tokens: tuple[int, ...]
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    logits: torch.Tensor


def prefill(model: Any, prompt: list[int]) -> Prefix:
    from rlvr.harness.sample.models import cache_kwargs
    from transformers import DynamicCache

    cache = DynamicCache()
    x = torch.tensor([prompt], device=model.model.embed_tokens.weight.device)
    logits = model(input_ids=x, **cache_kwargs(model, cache), use_cache=True, logits_to_keep=1).logits[0, -1, :]
    kv = [(layer.keys[0].transpose(1, 2).contiguous(), layer.values[0]) for layer in cache.layers]
    return Prefix(tuple(prompt), kv, logits)


def _init_geometry(dec: Any, model: Any, w: Weights | None) -> None:
    """What both cascade decoders read from the model: its weights and its attention geometry (a ValueError
    when the model's attention is one the cascade does not implement)."""
    reason = cascade_unsupported(model)
    if reason is not None:
        raise ValueError(f"cascade decoding: {reason}")
    dec.w = w if w is not None else weights(model)
    att = model.model.layers[0].self_attn
    dec.head_dim = att.head_dim
    dec.kv_heads = att.k_proj.out_features // dec.head_dim
    dec.heads = att.q_proj.out_features // dec.head_dim
    dec.scaling = att.scaling


class CascadeDecoder:
    """Decode `rows` rows that share one prompt (`prefix`). `first_logits` are the logits for the first new
    token; each `step(tokens)` appends one token per live row and returns the next logits; `select(keep)`
    drops finished rows. `w` (from `weights(model)`) may be passed in to reuse it across batches."""

    def __init__(self, model: Any, prefix: Prefix, rows: int, max_new_tokens: int, w: Weights | None = None):
        _init_geometry(self, model, w)
        self.prefix = prefix.kv
        self.prompt_len = len(prefix.tokens)
        self.first_logits = prefix.logits.expand(rows, -1)
        self.max_new = max_new_tokens
        self.length = 0                                             # tokens in the suffix buffers
        # the rotary table for every position this batch can reach, from the model's own rotary module
        pos = torch.arange(self.prompt_len, self.prompt_len + max_new_tokens, device=self.w.embed.device)
        cos, sin = model.model.rotary_emb(self.w.embed[:1].unsqueeze(0), pos.unsqueeze(0))
        half = cos.shape[-1] // 2
        # rotate_half(x) * sin == swap_halves(x) * (sin with its first half negated), exactly
        self.cos, self.sin = cos[0, :, None, :], torch.cat((-sin[..., :half], sin[..., half:]), -1)[0, :, None, :]
        cap = min(max_new_tokens, 128)
        dtype = self.prefix[0][1].dtype
        self.suffix = [(torch.empty((rows, self.kv_heads, cap, self.head_dim), dtype=dtype, device=pos.device),
                        torch.empty((rows, self.kv_heads, cap, self.head_dim), dtype=dtype, device=pos.device))
                       for _ in self.prefix]

    def select(self, keep: torch.Tensor) -> None:
        """Keep rows `keep`: only the filled part of each buffer is copied (its capacity is kept)."""
        t, kept = self.length, []
        for k, v in self.suffix:
            k2 = k.new_empty((keep.numel(), *k.shape[1:]))
            v2 = v.new_empty(k2.shape)
            k2[:, :, :t] = k[keep, :, :t]
            v2[:, :, :t] = v[keep, :, :t]
            kept.append((k2, v2))
        self.suffix = kept

    def _grow(self) -> None:
        cap = self.suffix[0][0].shape[2]
        new = min(2 * cap, self.max_new)
        grown = []
        for k, v in self.suffix:
            k2 = k.new_empty((k.shape[0], k.shape[1], new, k.shape[3]))
            v2 = v.new_empty(k2.shape)
            k2[:, :, :cap] = k
            v2[:, :, :cap] = v
            grown.append((k2, v2))
        self.suffix = grown

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [B] (one per live row) -> next-token logits [B, V]."""
        import torch.nn.functional as F

        if self.length == self.suffix[0][0].shape[2]:
            self._grow()
        b, t, d, kv, nh = tokens.shape[0], self.length, self.head_dim, self.kv_heads, self.heads
        g = nh // kv
        cos, sin = self._rope(t)                                        # [1, d] (one prompt) or [B, 1, d]
        h = F.embedding(tokens, self.w.embed)                                           # [B, H]
        for lw, (pk, pv), (sk, sv) in zip(self.w.layers, self.prefix, self.suffix, strict=True):
            x = _rms(h, *lw.ln1)
            if len(lw.qkv) == 1:
                qkv = F.linear(x, *lw.qkv[0]).view(b, nh + 2 * kv, d)
                qk, v = qkv[:, : nh + kv], qkv[:, nh + kv:]
            else:
                qk = torch.cat([F.linear(x, *lw.qkv[0]), F.linear(x, *lw.qkv[1])], dim=-1).view(b, nh + kv, d)
                v = F.linear(x, *lw.qkv[2]).view(b, kv, d)
            if lw.q_norm is not None:      # Qwen3: per-head RMSNorm before the rotary embedding
                qk = torch.cat([lw.q_norm(qk[:, :nh]), lw.k_norm(qk[:, nh:])], dim=1)
            half = d // 2
            qk = qk * cos + torch.cat((qk[..., half:], qk[..., :half]), dim=-1) * sin    # [B, nh + kv, d]
            sk[:, :, t] = qk[:, nh:]
            sv[:, :, t] = v
            q = (qk[:, :nh] * self.scaling).reshape(b, kv, g, d)
            out = self._attend(q, pk, pv, sk[:, :, : t + 1], sv[:, :, : t + 1])        # [B, kv, g, d]
            h = h + F.linear(out.reshape(b, nh * d), *lw.o)
            x = _rms(h, *lw.ln2)
            if len(lw.gate_up) == 1:
                gate, up = F.linear(x, *lw.gate_up[0]).chunk(2, dim=-1)
            else:
                gate, up = F.linear(x, *lw.gate_up[0]), F.linear(x, *lw.gate_up[1])
            h = h + F.linear(lw.act(gate) * up, *lw.down)
        self.length = t + 1
        return F.linear(_rms(h, *self.w.norm), *self.w.head)

    def _rope(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos[t], self.sin[t]

    def _attend(self, q: torch.Tensor, pk: torch.Tensor, pv: torch.Tensor, sk: torch.Tensor, sv: torch.Tensor
                ) -> torch.Tensor:
        """q [B, kv, g, d] against the prompt (pk [kv, d, P], pv [kv, P, d]) and each row's own tokens
        (sk, sv [B, kv, t+1, d]) -> [B, kv, g, d]."""
        b, kv, g, d = q.shape
        # Scores are laid out [kv, B, g, P + t + 1]: the prompt block is one GEMM per kv head over all
        # rows and query heads of the group ([kv, B*g, d] @ [kv, d, P]), and its probabilities are read
        # back in place by the second GEMM; the rows' own block is a batched product per row.
        pre = torch.bmm(q.transpose(0, 1).reshape(kv, b * g, d), pk).view(kv, b, g, -1)
        own = torch.matmul(q, sk.transpose(2, 3)).transpose(0, 1)                       # [kv, B, g, t+1]
        p_len = pre.shape[-1]
        probs = torch.softmax(torch.cat((pre, own), dim=-1), dim=-1, dtype=torch.float32)
        probs = probs.to(q.dtype)
        out = torch.matmul(probs[..., p_len:].transpose(0, 1), sv)                     # [B, kv, g, d]
        shared = torch.bmm(probs[..., :p_len].reshape(kv, b * g, p_len), pv)           # [kv, B*g, d]
        return out + shared.view(kv, b, g, d).transpose(0, 1)


@dataclass
class Prefixes:
    """Several prompts after one right-padded forward of the model: per layer their keys ([N, kv, d, Pmax],
    transposed for the score product) and values ([N, kv, Pmax, d]), each prompt once; the prompts'
    lengths ([N]) and the logits for each prompt's first new token ([N, V])."""
    tokens: list[tuple[int, ...]]
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    lengths: torch.Tensor
    logits: torch.Tensor


def prefill_many(model: Any, prompts: list[list[int]]) -> Prefixes:
    """One forward over the prompts, right-padded (a prompt's own positions never see the padding after it
    under the causal mask, so its keys, values and last logits are those of its batch-1 forward, to float
    rounding). Only the last position of each prompt goes through the LM head."""
    from transformers import DynamicCache

    device = model.model.embed_tokens.weight.device
    n, width = len(prompts), max(len(p) for p in prompts)
    x = torch.zeros((n, width), dtype=torch.long, device=device)
    attn = torch.zeros((n, width), dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        x[i, : len(p)] = torch.tensor(p, device=device)
        attn[i, : len(p)] = 1
    lengths = attn.sum(-1)
    from rlvr.harness.sample.models import cache_kwargs

    cache = DynamicCache()
    h = model.model(input_ids=x, attention_mask=attn, **cache_kwargs(model.model, cache), use_cache=True).last_hidden_state
    logits = model.lm_head(h[torch.arange(n, device=device), lengths - 1])
    kv = [(layer.keys.transpose(2, 3).contiguous(), layer.values) for layer in cache.layers]
    return Prefixes([tuple(p) for p in prompts], kv, lengths, logits)


class MultiCascadeDecoder(CascadeDecoder):
    """Decode rows of several prompts together (training rollouts: G rows for each of P prompts). Each
    prompt's KV is held once (`prefill_many`); row r reads the KV of prompt `row_prompt[r]` (the prompt
    blocks are padded to the longest prompt, the padding masked out of the softmax, so it gets
    probability exactly 0), then its own tokens. Rotary positions run on from each row's prompt length.
    `select(keep)` drops finished rows as in `CascadeDecoder`."""

    def __init__(self, model: Any, prefixes: Prefixes, row_prompt: torch.Tensor, max_new_tokens: int,
                 w: Weights | None = None):
        _init_geometry(self, model, w)
        self.prefix = prefixes.kv
        device = self.w.embed.device
        row_prompt = row_prompt.to(device)
        self.row_prompt = row_prompt
        self.first_logits = prefixes.logits[row_prompt]
        self.max_new = max_new_tokens
        self.length = 0
        width = int(prefixes.lengths.max())
        pos = torch.arange(width + max_new_tokens, device=device)
        cos, sin = model.model.rotary_emb(self.w.embed[:1].unsqueeze(0), pos.unsqueeze(0))
        half = cos.shape[-1] // 2
        self.cos, self.sin = cos[0, :, None, :], torch.cat((-sin[..., :half], sin[..., half:]), -1)[0, :, None, :]
        self.start = prefixes.lengths.to(device)[row_prompt]                    # each row's first new position
        dtype = self.prefix[0][1].dtype
        # additive mask of the prompt block: 0 on a row's own prompt tokens, -inf on the padding after them
        pad = torch.arange(width, device=device)[None, :] >= prefixes.lengths.to(device)[:, None]
        self.prompt_mask = torch.zeros(pad.shape, dtype=dtype, device=device).masked_fill_(pad, float("-inf"))
        self.row_mask = self.prompt_mask[row_prompt][:, None, None, :]          # [B, 1, 1, Pmax]
        rows, cap = row_prompt.numel(), min(max_new_tokens, 128)
        self.suffix = [(torch.empty((rows, self.kv_heads, cap, self.head_dim), dtype=dtype, device=device),
                        torch.empty((rows, self.kv_heads, cap, self.head_dim), dtype=dtype, device=device))
                       for _ in self.prefix]

    def select(self, keep: torch.Tensor) -> None:
        super().select(keep)
        self.row_prompt, self.start, self.row_mask = self.row_prompt[keep], self.start[keep], self.row_mask[keep]

    def _rope(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        at = self.start + t
        return self.cos[at], self.sin[at]                                       # [B, 1, d]

    def _attend(self, q, pk, pv, sk, sv):
        # the prompt block per row: its prompt's keys and values, read by index (stored once per prompt)
        pre = torch.matmul(q, pk.index_select(0, self.row_prompt)) + self.row_mask               # [B, kv, g, Pmax]
        own = torch.matmul(q, sk.transpose(2, 3))                                # [B, kv, g, t+1]
        p_len = pre.shape[-1]
        probs = torch.softmax(torch.cat((pre, own), dim=-1), dim=-1, dtype=torch.float32).to(q.dtype)
        return torch.matmul(probs[..., p_len:], sv) + torch.matmul(probs[..., :p_len], pv.index_select(0, self.row_prompt))
