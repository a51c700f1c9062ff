"""Supervised training from scratch of a small model on (prompt, solution) documents.

This is how the micro world's base model is made: a standard next-token loss on the solution part of
each document (the prompt is context only), AdamW with warm-up and cosine decay, seeded. The result
is a Hugging Face directory like any other model.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0


def pretrain(model_dir: str | Path, documents: Sequence[tuple[str, str]], cfg: PretrainConfig,
             progress: bool = True) -> dict:
    """Train the model saved at `model_dir` in place on (prompt, solution) pairs; returns a summary.

    Each document is tokenised as prompt + solution + EOS; the loss covers the solution and EOS.
    """
    import torch
    from rlvr.harness.progress import bar as tqdm
    from rlvr.harness.sample.models import load_model

    model, tok = load_model(str(model_dir), device="cpu", dtype="float32")
    model.train()
    eos = tok.eos_token_id
    seqs, starts = [], []
    for prompt, solution in documents:
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        s_ids = tok(solution, add_special_tokens=False)["input_ids"] + [eos]
        seqs.append(p_ids + s_ids)
        starts.append(len(p_ids))
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * frac))

    pad = tok.pad_token_id
    losses = []
    t0 = time.monotonic()
    bar = tqdm(range(cfg.steps), desc="pre-training", disable=not progress, dynamic_ncols=True)
    for step in bar:
        idx = torch.randint(len(seqs), (cfg.batch_size,), generator=g).tolist()
        width = max(len(seqs[i]) for i in idx)
        x = torch.full((len(idx), width), pad, dtype=torch.long)
        labels = torch.full((len(idx), width), -100, dtype=torch.long)
        attn = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            s = seqs[i]
            x[r, :len(s)] = torch.tensor(s)
            attn[r, :len(s)] = 1
            labels[r, starts[i]:len(s)] = torch.tensor(s[starts[i]:])
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=x, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.eval()
    model.save_pretrained(model_dir)
    summary = {"config": asdict(cfg), "documents": len(seqs), "final_loss": sum(losses[-50:]) / len(losses[-50:]),
               "seconds": time.monotonic() - t0}
    (Path(model_dir) / "rlvr_pretrain.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
