"""Peak memory and time of one loss step (old pass + update forward + loss + backward) per method.

    python benchmarks/bench_token_stats.py [--tokens 16384] [--vocab 32768] [--hidden 256] [--json PATH]

Methods: GRPO (needs logp only), Lp-Reg (+ min-p proxy in the old pass), CaSP (+ entropy and top-3 with
grad). Implementations of harness/train/token_stats.py: `function` (custom autograd.Function, the default),
`checkpoint` (torch.utils.checkpoint per chunk) and `naive` (the whole [tokens, V] logits).

How peak memory is measured on CPU: each case runs in a fresh subprocess (with glibc's mmap
threshold fixed at 64 KiB, see CHILD_ENV), which builds its inputs
(hidden states with grad, LM head weight with grad, tokens, rewards), then reads ru_maxrss (the peak
resident set so far) as its baseline, runs the step, and reads ru_maxrss again; the difference is the
extra peak the step needed above its inputs. A fresh process per case keeps one case's allocator state
and peak from hiding another's. The ratios printed are against GRPO with the same implementation,
all measured in this one run; absolute times only mean something on the machine that printed them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = {"grpo": {"kl_coef": 0.0, "loss_agg_mode": "token-mean"}, "lp_reg": {}, "casp": {}}
IMPLS = ("function", "checkpoint", "naive")
# glibc raises its mmap threshold after large frees (up to 32 MiB), after which big tensors live on the
# heap and freed memory can stay resident; a fixed threshold keeps every large tensor in its own mmap,
# returned on free, so the resident-set peak tracks the peak of live tensors.
CHILD_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_case(method_name: str, impl: str, tokens: int, vocab: int, hidden: int, seq: int, chunk: int | None) -> dict:
    import torch
    from rlvr.harness.train.token_stats import old_pass_fields, update_pass_fields
    from rlvr.methods.base import TokenBatch

    from rlvr import methods

    torch.manual_seed(0)
    torch.set_num_threads(2)
    B, T = tokens // seq, seq
    method = methods.build(method_name, METHODS[method_name])
    h = torch.randn(B, T, hidden, requires_grad=True)
    w = (torch.randn(vocab, hidden) / hidden**0.5).requires_grad_()
    y = torch.randint(0, vocab, (B, T))
    mask = torch.ones(B, T)
    rewards = (torch.arange(B) % 3 == 0).float()
    gids = torch.arange(B) // 8
    base = peak_mib()
    t0 = time.perf_counter()
    old = old_pass_fields(method, h.detach(), w.detach(), y, mask, chunk_size=chunk)
    new = update_pass_fields(method, h, w, y, mask, old_topk_ids=old.get("old_topk_ids"), chunk_size=chunk, impl=impl)
    batch = TokenBatch(old_logp=old["old_logp"], mask=mask, advantages=method.advantages(rewards, gids, mask),
                       rewards=rewards, group_ids=gids, **{k: v for k, v in old.items() if k != "old_logp"}, **new)
    loss, _ = method.loss(batch)
    loss.backward()
    seconds = time.perf_counter() - t0
    assert torch.isfinite(h.grad).all()
    return {"method": method_name, "impl": impl, "peak_mib": peak_mib() - base, "seconds": seconds,
            "inputs_mib": base}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=16384, help="B*T response tokens in the batch")
    ap.add_argument("--seq", type=int, default=512, help="tokens per response (T)")
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=None, help="tokens per chunk (default: 2^26 / vocab)")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--json", help="also write the measurements here")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: method:impl, run in this process
    a = ap.parse_args()
    if a.case:
        m, impl = a.case.split(":")
        print(json.dumps(run_case(m, impl, a.tokens, a.vocab, a.hidden, a.seq, a.chunk)))
        return 0

    from rlvr.harness.provenance import collect, write_measurements

    provenance = collect()          # of the code that runs (taken before it runs)
    rows = []
    for impl in a.impls.split(","):
        for m in METHODS:
            cmd = [sys.executable, __file__, "--case", f"{m}:{impl}", "--tokens", str(a.tokens), "--seq", str(a.seq),
                   "--vocab", str(a.vocab), "--hidden", str(a.hidden)] + (["--chunk", str(a.chunk)] if a.chunk else [])
            out = subprocess.run(cmd, capture_output=True, text=True, env=CHILD_ENV)
            if out.returncode:
                print(out.stderr, file=sys.stderr)
                return 1
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{impl:10s} {m:7s} peak +{r['peak_mib']:8.1f} MiB  {r['seconds']:6.1f} s", flush=True)
    print(f"\ntokens={a.tokens} vocab={a.vocab} hidden={a.hidden}; full fp32 logits would be "
          f"{a.tokens * a.vocab * 4 / 2**20:.0f} MiB")
    by = {(r["impl"], r["method"]): r for r in rows}
    naive = by.get(("naive", "grpo"))
    print(f"{'impl':10s} {'method':7s} {'peak/GRPO(same impl)':>21s} {'peak/naive GRPO':>16s} {'time/GRPO':>10s}")
    for r in rows:
        g = by[(r["impl"], "grpo")]
        r["peak_vs_grpo"] = r["peak_mib"] / g["peak_mib"]
        r["peak_vs_naive_grpo"] = r["peak_mib"] / naive["peak_mib"] if naive else None
        r["time_vs_grpo"] = r["seconds"] / g["seconds"]
        print(f"{r['impl']:10s} {r['method']:7s} {r['peak_vs_grpo']:21.2f} "
              f"{r['peak_vs_naive_grpo'] if naive else float('nan'):16.3f} {r['time_vs_grpo']:10.2f}")
    if a.json:
        settings = {k: v for k, v in vars(a).items() if k != "case"}
        write_measurements(a.json, settings, {"full_logits_fp32_mib": a.tokens * a.vocab * 4 / 2**20, "rows": rows},
                           provenance)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
