"""Sampling engines: `hf` (our batched KV-cache sampler, CPU and CUDA) and `vllm` (optional extra).

Reproducibility contract: every sample has its own seed, derived from (run seed, task, problem id,
sample index) by `sample_seed`. The `hf` engine draws each token by inverse-CDF sampling with a
uniform number that is a pure function of (sample seed, step) (a counter-based generator, no
shared RNG state), and it always batches the samples of one problem in fixed chunks of sample
indices. So sample i of a problem is the same whether it was produced in one run, after a resume,
or on another shard. vLLM gets the same per-sample seed through `SamplingParams(seed=...)`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from rlvr.harness.errors import UserError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0                 # 0: off
    max_new_tokens: int = 1024
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        if self.temperature < 0:
            raise UserError(f"--temperature must be >= 0, got {self.temperature}")
        if not (0 < self.top_p <= 1):
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise UserError(f"--top-k must be >= 0, got {self.top_k}")
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if any(not st for st in self.stop):
            raise UserError("--stop: a stop string must not be empty (it would cut every completion to '')")

    def with_stop(self, extra: Sequence[str]) -> SamplingParams:
        """These settings with `extra` stop strings after the own ones (a task's, for its template)."""
        stop = tuple(dict.fromkeys((*self.stop, *extra)))
        return self if stop == self.stop else replace(self, stop=stop)


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str             # "stop" (EOS or a stop string) or "length"

    @property
    def tokens(self) -> int:
        return len(self.token_ids)


def sample_seed(run_seed: int, task: str, problem_id: str, sample_index: int) -> int:
    """A 63-bit seed that depends only on its arguments (not on batch, shard or resume state)."""
    digest = hashlib.blake2b(f"{run_seed}\x1f{task}\x1f{problem_id}\x1f{sample_index}".encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def counter_uniforms(seeds: np.ndarray, step) -> np.ndarray:
    """Uniform(0, 1) numbers, one per seed, a pure function of (seed, step) (splitmix64 mixing). `step` may
    be an array that broadcasts against `seeds` (a [B, 1] column of seeds and a [1, T] row of steps give
    the [B, T] table of a batch, element for element equal to the per-step calls)."""
    with np.errstate(over="ignore"):
        x = seeds.astype(np.uint64) + (np.asarray(step).astype(np.uint64) + np.uint64(1)) * _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _filtered(logits, params: SamplingParams):
    """(probs, order): the unnormalised probabilities `choose_tokens` draws from ([B, V]) and, where they are
    sorted, the token id at each position (None: vocabulary order). Filtered tokens have probability 0."""
    import torch

    scaled = logits.float()
    if params.temperature != 1.0:        # dividing by 1 changes nothing: skip the operation
        scaled = scaled / params.temperature
    if params.top_k and params.top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, params.top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if params.top_p >= 1.0:
        return torch.softmax(scaled, dim=-1), None   # inverse-CDF sampling is exact in any order: no sort needed
    # transformers' TopPLogitsWarper (and vLLM's PyTorch top-p), operation for operation, so that the same tokens
    # are kept, ties and rounding at the threshold included: sort ascending, drop the tokens whose cumulative mass
    # from the least likely up is <= 1 - top_p, always keep the most likely one. Sampling walks the kept tokens
    # from the most likely down.
    asc, order = torch.sort(scaled, dim=-1)
    probs = torch.softmax(asc, dim=-1)
    drop = torch.cumsum(probs, dim=-1) <= 1 - params.top_p
    drop[..., -1] = False
    return probs.masked_fill(drop, 0.0).flip(-1), order.flip(-1)


def choose_tokens(logits, uniforms, params: SamplingParams):
    """Next token per row from logits [B, V] and uniforms [B] in [0, 1), by inverse-CDF sampling from the
    distribution transformers' `generate(do_sample=True)` samples from with these settings: logits / temperature
    (temperature 0: argmax), then top-k (every token tied with the k-th largest logit stays), then top-p (the
    smallest set of most likely tokens whose mass reaches top_p, at least one), renormalised. Where tokens of equal
    probability straddle the top-p threshold, only as many of them stay as that needs (as in transformers and vLLM):
    those `torch.sort` puts last, the same ones as transformers' on the same logits. `token_distribution` gives
    the distribution."""
    import torch

    if params.temperature == 0:
        return logits.argmax(dim=-1)
    probs, order = _filtered(logits, params)
    cum = torch.cumsum(probs, dim=-1)
    total = cum[:, -1:]
    u = torch.as_tensor(uniforms, dtype=cum.dtype, device=cum.device).unsqueeze(-1)
    # u < 1, but u * total can round up to total (u itself rounds to 1.0 in float32 from 1 - 2**-25 on), and a
    # target of total would fall past the last kept token: the target stays below total, so the chosen token
    # always has a probability > 0
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    j = torch.searchsorted(cum, target, right=True).clamp_(max=cum.shape[-1] - 1)   # (a NaN row: stay in range)
    return (j if order is None else order.gather(-1, j)).squeeze(-1)


def token_distribution(logits, params: SamplingParams):
    """The distribution `choose_tokens` draws the next token from, [B, V] in vocabulary order, rows summing to 1
    (temperature 0: all mass on the argmax)."""
    import torch

    if params.temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).float()
    probs, order = _filtered(logits, params)
    if order is not None:
        probs = torch.zeros_like(probs).scatter_(-1, order, probs)
    return probs / probs.sum(dim=-1, keepdim=True)


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """A rendered prompt's token ids, without special tokens (the template already holds any it needs)."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if not ids:
        raise UserError("empty prompt")
    return ids


class Engine(Protocol):
    name: str

    def generate(self, requests: Sequence[tuple[str, Sequence[int]]], params: SamplingParams
                 ) -> list[list[Completion]]:
        """For each (prompt, sample seeds): one completion per seed, in order."""
        ...


class HFEngine:
    """Batched sampling with a KV cache on any transformers causal LM.

    All rows of a batch share one prompt (the chunk of one problem's samples), so there is no padding
    and a row's tokens do not depend on which other problems are being sampled. Finished rows leave
    the batch (their cache rows are dropped), which keeps long-tail decoding cheap. Rows that share a
    prompt decode through `rlvr.harness.sample.cascade` where the architecture allows (the prompt's KV is held and
    read once for all rows); `decode_path` says which path an engine uses.
    """

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, merge_prompts: bool = False, max_batch_rows: int = 256,
                 cascade: bool | None = None):
        """merge_prompts: batch the rows of several requests together (each prompt's KV held once on the
        cascade path, left-padded prompts on transformers'). Faster for many short requests (training
        rollouts); `rlvr eval` keeps it off so that a problem's samples never depend, even by float rounding,
        on which other problems share their batch.
        cascade: decode rows that share a prompt with `rlvr.harness.sample.cascade` (one copy of the prompt's KV);
        None = wherever the architecture is supported. Off, transformers' forward decodes every batch."""
        from rlvr.harness.sample.cascade import cascade_unsupported

        unsupported = cascade_unsupported(model)
        if cascade and unsupported:
            raise UserError(f"cascade decoding: {unsupported}")
        self.cascade = unsupported is None if cascade is None else cascade
        self.decode_path = "cascade" if self.cascade else "transformers"
        self._prefix = self._weights = None
        self.model = model
        self.tokenizer = tokenizer
        self.merge_prompts = merge_prompts
        self.max_batch_rows = max_batch_rows
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            ids.add(tokenizer.eos_token_id)
        self.eos_ids = sorted(ids)
        self._stop_token_cache: dict[tuple, Any] = {}

    def generate(self, requests, params, on_finish=None):
        """on_finish(request index, sample index, completion), if given, is called as each sample finishes,
        while the others are still decoding (the trainer starts verifying it there)."""
        if not self.merge_prompts:
            return [self._decode([self._encode(prompt)] * len(seeds), list(seeds), params,
                                 None if on_finish is None else (lambda j, c, i=i: on_finish(i, j, c)))
                    for i, (prompt, seeds) in enumerate(requests)]
        rows = [(self._encode(prompt), s, i, j) for i, (prompt, seeds) in enumerate(requests)
                for j, s in enumerate(seeds)]
        out: list[list[Completion]] = [[] for _ in requests]
        for start in range(0, len(rows), self.max_batch_rows):
            part = rows[start:start + self.max_batch_rows]
            done = None if on_finish is None else (lambda r, c, part=part: on_finish(part[r][2], part[r][3], c))
            comps = self._decode([r[0] for r in part], [r[1] for r in part], params, done)
            for (_, _, i, _), c in zip(part, comps, strict=True):
                out[i].append(c)
        return out

    def _encode(self, prompt: str) -> list[int]:
        return encode_prompt(self.tokenizer, prompt)

    def _decoder(self, prompts: list[list[int]], rows: int, max_new_tokens: int):
        """The step function for one batch: where the architecture allows, the cascade decoder (rows of one
        prompt) or the multi-prompt cascade decoder (rows of several prompts, each prompt's KV held once),
        else transformers' own forward with a DynamicCache."""
        import torch
        from rlvr.harness.sample.cascade import (
            CascadeDecoder,
            MultiCascadeDecoder,
            prefill,
            prefill_many,
            weights,
        )

        shared = all(p is prompts[0] or p == prompts[0] for p in prompts)
        if self.cascade:
            # The step's weight views and a problem's prompt KV (its chunks share it) are kept until the
            # weights change: in-place updates (optimizer steps, load_state_dict) bump a parameter's version
            # counter, and new tensors change its data_ptr.
            version = tuple((p.data_ptr(), p._version) for p in self.model.parameters())
            if self._weights is None or self._weights[0] != version:
                self._weights, self._prefix = (version, weights(self.model)), None
        if not shared and self.cascade:
            # rows of several prompts (merged training rollouts): each distinct prompt prefilled once
            index: dict[tuple[int, ...], int] = {}
            row_prompt = [index.setdefault(tuple(p), len(index)) for p in prompts]
            prefixes = prefill_many(self.model, [list(p) for p in index])
            return MultiCascadeDecoder(self.model, prefixes, torch.tensor(row_prompt), max_new_tokens,
                                       self._weights[1])
        if shared and self.cascade:
            key = (tuple(prompts[0]), version)
            if self._prefix is None or self._prefix[0] != key:
                self._prefix = (key, prefill(self.model, prompts[0]))
            return CascadeDecoder(self.model, self._prefix[1], rows, max_new_tokens, self._weights[1])
        return _TransformersDecoder(self.model, prompts, shared, self.tokenizer.pad_token_id or 0)

    def _decode(self, prompts: list[list[int]], seeds: list[int], params: SamplingParams, on_finish=None
                ) -> list[Completion]:
        import torch

        device = next(self.model.parameters()).device
        b, t_max = len(seeds), params.max_new_tokens
        # every uniform this batch can use, [B, T], computed once (one vectorised call, not one per step)
        table = torch.from_numpy(counter_uniforms(np.array(seeds, dtype=np.uint64)[:, None],
                                                  np.arange(t_max, dtype=np.uint64)[None, :]))
        out = torch.full((b, t_max), -1, dtype=torch.long, device=device)   # generated ids, -1 = none
        stopped = torch.zeros(b, dtype=torch.bool, device=device)
        rows = torch.arange(b, device=device)                                 # live batch row -> sample
        eos = torch.tensor(self.eos_ids, device=device, dtype=torch.long)
        max_stop = max((len(s) for s in params.stop), default=0)
        finished: dict[int, Completion] = {}       # rows handed to on_finish before the end
        with torch.inference_mode():
            dec = self._decoder(prompts, b, t_max)
            logits = dec.first_logits
            may_stop = self._stop_tokens(params.stop, logits.shape[-1], device) if max_stop else None
            for step in range(t_max):
                nxt = choose_tokens(logits, table[rows.cpu(), step], params)
                out[rows, step] = nxt
                done = torch.isin(nxt, eos)
                if may_stop is not None:
                    # only rows whose new token can complete a stop string are decoded and searched
                    for i in may_stop[nxt].nonzero().squeeze(-1).tolist():
                        if self._hit_stop(out[int(rows[i]), :step + 1], params.stop, max_stop):
                            done[i] = True
                if step + 1 == t_max:
                    stopped[rows[done]] = True
                    break
                if bool(done.any()):
                    stopped[rows[done]] = True
                    if on_finish is not None:
                        for r in rows[done].tolist():
                            finished[r] = self._finish([t for t in out[r, :step + 1].tolist() if t >= 0], "stop",
                                                       params.stop)
                            on_finish(r, finished[r])
                    keep = (~done).nonzero().squeeze(-1)
                    if keep.numel() == 0:
                        break
                    dec.select(keep)
                    rows, nxt = rows[keep], nxt[keep]
                logits = dec.step(nxt)
        ids = out.cpu().tolist()
        reasons = stopped.cpu().tolist()
        comps = [finished.get(r) or self._finish([t for t in row if t >= 0], "stop" if st else "length", params.stop)
                 for r, (row, st) in enumerate(zip(ids, reasons, strict=True))]
        if on_finish is not None:
            for r, c in enumerate(comps):
                if r not in finished:
                    on_finish(r, c)
        return comps

    def _stop_tokens(self, stop: tuple[str, ...], vocab: int, device) -> Any:
        """A bool per token id ([vocab]): whether appending that token can complete one of `stop`.

        A stop string that first appears when a token is appended ends inside that token's text, so the
        token's text holds the stop string's last character. The text is read alone and after a plain
        letter (for tokenizers that write a token's leading space only after other text); a token whose
        text cannot be told that way (empty, a partial UTF-8 sequence, an id past the tokenizer's
        vocabulary) is flagged too. Every token is flagged (every row is searched, as without this table)
        when the letter cannot serve (unknown or special) or when the tokenizer's `decode` cleans up
        spaces (`clean_up_tokenization_spaces`): its clean-up joins " ' t" into "'t", so the token that
        completes a stop string need not hold its last character. Built once per stop tuple, with the fast
        tokenizer's batch decoder where there is one."""
        import torch

        key = (stop, vocab, str(device))
        if key not in self._stop_token_cache:
            tok = self.tokenizer
            backend = getattr(tok, "backend_tokenizer", None)

            def texts(seqs: list[list[int]]) -> list[str]:
                if backend is not None:
                    return backend.decode_batch(seqs, skip_special_tokens=True)
                return [tok.decode(x, skip_special_tokens=True) for x in seqs]

            flags = [True] * vocab
            letter = (tok("a", add_special_tokens=False)["input_ids"] or [None])[-1]
            head = texts([[letter]])[0] if letter is not None else ""
            usable = (head and letter not in set(tok.all_special_ids) and letter != tok.unk_token_id
                      and not getattr(tok, "clean_up_tokenization_spaces", False))
            if usable:
                last = {s[-1] for s in stop}
                known = min(vocab, len(tok))
                alone = texts([[i] for i in range(known)])
                after = texts([[letter, i] for i in range(known)])
                for i, (a, c) in enumerate(zip(alone, after, strict=True)):
                    unclear = not a or "\ufffd" in a + c or not c.startswith(head)
                    flags[i] = unclear or any(ch in a or ch in c[len(head):] for ch in last)
            self._stop_token_cache[key] = torch.tensor(flags, dtype=torch.bool, device=device)
        return self._stop_token_cache[key]

    def _hit_stop(self, ids, stop: tuple[str, ...], max_stop: int) -> bool:
        # the text of the last tokens: enough for the longest stop string even where a character takes four
        # byte tokens (byte-level and byte-fallback vocabularies)
        tail = self.tokenizer.decode(ids[-(4 * max_stop + 8):].tolist(), skip_special_tokens=True)
        return any(s in tail for s in stop)

    def _finish(self, ids: list[int], reason: str, stop: tuple[str, ...]) -> Completion:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if stop:
            cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
            if cut >= 0:
                text = text[:cut]  # like vLLM, the stop string itself is not part of the output
        return Completion(text, ids, reason)


class _TransformersDecoder:
    """Decoding through the model's own forward and a DynamicCache: any causal LM. Rows that share one
    prompt are prefilled once (batch 1) and the cache is repeated; different prompts are left-padded."""

    def __init__(self, model: Any, prompts: list[list[int]], shared: bool, pad_id: int):
        import torch
        from rlvr.harness.sample.models import cache_kwargs
        from transformers import DynamicCache

        self.model = model
        device = next(model.parameters()).device
        b = len(prompts)
        self.cache = DynamicCache()
        self.cache_kw = cache_kwargs(model, self.cache)
        if shared:
            # no padding, so no attention mask is needed
            x = torch.tensor([prompts[0]], device=device)
            self.first_logits = model(input_ids=x, **self.cache_kw, use_cache=True,
                                      logits_to_keep=1).logits[:, -1, :].expand(b, -1)
            self.cache.batch_repeat_interleave(b)
            self.attn = self.next_pos = None
        else:
            width = max(len(p) for p in prompts)
            x = torch.full((b, width), pad_id, dtype=torch.long, device=device)
            self.attn = torch.zeros((b, width), dtype=torch.long, device=device)
            for r, p in enumerate(prompts):          # left padding: every row ends at the same column
                x[r, width - len(p):] = torch.tensor(p, device=device)
                self.attn[r, width - len(p):] = 1
            pos = (self.attn.cumsum(-1) - 1).clamp_(min=0)
            self.first_logits = model(input_ids=x, attention_mask=self.attn, position_ids=pos,
                                      **self.cache_kw, use_cache=True, logits_to_keep=1).logits[:, -1, :]
            self.next_pos = torch.tensor([len(p) for p in prompts], device=device)

    def select(self, keep) -> None:
        self.cache.batch_select_indices(keep)
        if self.attn is not None:
            self.attn, self.next_pos = self.attn[keep], self.next_pos[keep]

    def step(self, tokens):
        import torch

        kwargs = {}
        if self.attn is not None:
            self.attn = torch.cat([self.attn, self.attn.new_ones((self.attn.shape[0], 1))], dim=1)
            kwargs = {"attention_mask": self.attn, "position_ids": self.next_pos.unsqueeze(-1)}
            self.next_pos = self.next_pos + 1
        return self.model(input_ids=tokens.unsqueeze(-1), **self.cache_kw, use_cache=True,
                          logits_to_keep=1, **kwargs).logits[:, -1, :]


class VLLMEngine:
    """vLLM sampling (optional extra `vllm`). One request per sample with its own seed; vLLM's
    prefix cache shares the prompt's KV across a problem's samples."""

    name = "vllm"

    def __init__(self, model_path: str, dtype: str = "auto", max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.9, seed: int = 0, revision: str | None = None):
        try:
            from vllm import LLM
        except ImportError:
            raise UserError("--engine vllm: vllm is not installed (pip install 'rlvr-harness[vllm]')") from None
        self.llm = LLM(model=model_path, dtype=dtype, max_model_len=max_model_len, seed=seed, revision=revision,
                       gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=True)

    def generate(self, requests, params):
        return vllm_generate(self.llm, requests, params)


def vllm_generate(llm: Any, requests, params: SamplingParams) -> list[list[Completion]]:
    """`Engine.generate` on a `vllm.LLM`: one request per sample with its own seed. A request's prompt is a
    string or anything vLLM takes as a prompt (e.g. {"prompt_token_ids": [...]})."""
    from vllm import SamplingParams as VParams

    prompts, sps, shape = [], [], []
    for prompt, seeds in requests:
        shape.append(len(seeds))
        for s in seeds:
            prompts.append(prompt)
            sps.append(VParams(n=1, seed=int(s), temperature=params.temperature, top_p=params.top_p,
                               top_k=params.top_k if params.top_k else -1, max_tokens=params.max_new_tokens,
                               stop=list(params.stop) or None))
    outs = llm.generate(prompts, sps, use_tqdm=False)
    flat = [Completion(o.outputs[0].text, list(o.outputs[0].token_ids),
                       "length" if o.outputs[0].finish_reason == "length" else "stop") for o in outs]
    result, i = [], 0
    for n in shape:
        result.append(flat[i:i + n])
        i += n
    return result
