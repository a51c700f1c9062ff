"""The GPU path in one short run: five checks, each pass/fail with its numbers, into DIR/gpu_check.json.

    python benchmarks/gpu_check.py --out DIR [--checks pytest,cascade,sampling,trainer,token_stats]
    python benchmarks/gpu_check.py --smoke --out DIR      # tiny shapes on the CPU (the test suite runs it)

Checks (every model is randomly initialised from a config written below; nothing comes from the hub):
  pytest       `pytest -m gpu` in a subprocess: passed / failed / skipped counts and each skip's reason.
  cascade      harness/sample/cascade.py on a Qwen2.5-1.5B-shaped and a Llama-3.2-1B-shaped model, fp32 and bf16:
               every step's logits against the model's own forward, and in fp32 the same sampled tokens
               as transformers' decoding path at top-p 1 (with top-k 50; the tolerances and why: below).
  sampling     tokens/s of the `hf` engine against one `model.generate(num_return_sequences=n)` per
               problem, n = 64 and 1024, 512 new tokens, Qwen2.5-0.5B shape in bf16, interleaved rounds.
  trainer      3 steps each of GRPO, Lp-Reg and CaSP through `rlvr.harness.train.trainer.Trainer` on a
               Qwen2.5-0.5B-shaped model in bf16 (vocabulary 151,936), 1,024-token responses: seconds per
               step and peak GPU memory; passes if Lp-Reg's and CaSP's peaks are within 1.3x GRPO's.
  token_stats  harness/train/token_stats.py at V = 151,936 and 16,384 tokens: peak memory of one loss step per
               method against full logits, and its values and gradients against full logits.

Each check runs in its own process with a time limit (a crash, an out-of-memory or a hung check costs
that check only); the whole run is held to --budget-s (default 450 s). `--smoke` runs every check with
tiny shapes on the CPU; the CUDA-only parts (peak-memory numbers) are skipped there with the reason.

On the GPU machine (PyTorch + CUDA, transformers, numpy, pytest, hypothesis, tabulate, matplotlib,
safetensors, tokenizers, tqdm, pyyaml; no internet; the repository is not pip-installed): the trainer check and
the collection of `pytest -m gpu` load the task registry, which imports math-verify, so three small
pure-Python wheels (380 KB) go along. Download them here, into a folder that travels with the checkout:

    pip download --only-binary=:all: --no-deps --platform manylinux2014_x86_64 --python-version 3.12 \\
        --implementation cp --abi cp312 -d .whl \\
        math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2

(latex2sympy2_extended needs sympy, which torch brings.) Then, from the repository root there:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
        PYTHONPATH=/tmp/site:. python3 benchmarks/gpu_check.py --out $OUT

The run is held to --budget-s (450 s, so under 8 minutes with start-up; not yet timed on a GPU) and exits 0
when every check passed.
DIR also holds logs/ (each check's output), the pytest junit XML and the trainer's logs.
Without a .git folder there, pass --git-sha; `source_sha256` (over the harness's Python files) is recorded
either way. datasets, reasoning-gym and vLLM are not needed: the checks import none of them, and the vLLM
test skips with its reason.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rlvr.tasks import register  # noqa: E402  (light: no torch, no verifier libraries)
from rlvr.tasks.base import Problem, Task, Verdict  # noqa: E402

CHECKS = ("pytest", "cascade", "sampling", "trainer", "token_stats")
# Per-check time limits in seconds on the GPU (the run as a whole is held to --budget-s); --smoke gets
# SMOKE_LIMIT_S each (a shared CPU can be slow, and nothing there is timed).
LIMIT_S = {"env": 60, "pytest": 120, "cascade": 120, "sampling": 150, "trainer": 200, "token_stats": 90}
SMOKE_LIMIT_S = 300
RESERVE_S = 20               # kept back for each check not yet started, so that a slow one cannot starve them

# ---- model shapes ---------------------------------------------------------------------------------------
# The published config.json values of these models (architecture fields only; no weights are used):
#   Qwen2.5-1.5B: Qwen2, hidden 1536, 28 layers, 12 heads (head_dim 128), 2 kv heads, intermediate 8960,
#     vocab 151,936, q/k/v biases, rope theta 1e6, RMSNorm eps 1e-6, tied embeddings, no sliding window
#     (use_sliding_window false), 131,072 positions.
#   Qwen2.5-0.5B: Qwen2, hidden 896, 24 layers, 14 heads (head_dim 64), 2 kv heads, intermediate 4864,
#     vocab 151,936, otherwise as above, 32,768 positions.
#   Llama-3.2-1B: Llama, hidden 2048, 16 layers, 32 heads (head_dim 64), 8 kv heads, intermediate 8192,
#     vocab 128,256, no biases, llama3 rope (theta 5e5, factor 32, low/high frequency factors 1 and 4,
#     original context 8192), RMSNorm eps 1e-5, tied embeddings, 131,072 positions.
QWEN_ROPE = {"rope_type": "default", "rope_theta": 1000000.0}
LLAMA_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
SHAPES = {
    "qwen2.5-1.5b": ("qwen2", dict(vocab_size=151936, hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                                   num_key_value_heads=2, intermediate_size=8960, max_position_embeddings=131072,
                                   rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
                                   rope_parameters=QWEN_ROPE)),
    "qwen2.5-0.5b": ("qwen2", dict(vocab_size=151936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                                   num_key_value_heads=2, intermediate_size=4864, max_position_embeddings=32768,
                                   rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
                                   rope_parameters=QWEN_ROPE)),
    "llama-3.2-1b": ("llama", dict(vocab_size=128256, hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                                   num_key_value_heads=8, head_dim=64, intermediate_size=8192,
                                   max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True,
                                   attention_bias=False, mlp_bias=False, rope_parameters=LLAMA_ROPE)),
}
# --smoke: the same families and options at toy sizes
_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128)
SMOKE_SHAPES = {
    "qwen2.5-1.5b": ("qwen2", {**SHAPES["qwen2.5-1.5b"][1], **_TINY, "vocab_size": 1000}),
    "qwen2.5-0.5b": ("qwen2", {**SHAPES["qwen2.5-0.5b"][1], **_TINY, "vocab_size": 1000}),
    "llama-3.2-1b": ("llama", {**SHAPES["llama-3.2-1b"][1], **_TINY, "head_dim": 16, "vocab_size": 1000}),
}

# ---- tolerances of the cascade check ---------------------------------------------------------------------
# fp32: max |cascade - forward| <= CASCADE_FP32_TOL * std(forward logits). Both sides are IEEE fp32 (TF32 is
# switched off) and differ only in summation order: about sqrt(K) * 6e-8 relative per matrix product (K up to
# 8,960), compounded over 16-28 layers, i.e. ~1e-5 of the logits' scale. 5e-4 leaves a wide margin for the
# maximum over ~7e7 logits, while a wrong position, mask, cache row or TF32 products (10-bit mantissa,
# ~1e-3 relative per product) land far above it.
CASCADE_FP32_TOL = 5e-4
# bf16: bf16 keeps 8 significant bits, so any two bf16 evaluations of a 28-layer model differ from each
# other about as much as each differs from exact arithmetic; a fixed tolerance would be a guess. Instead both
# bf16 paths are compared with the fp32 forward of the same (bf16-representable) weights, and the cascade
# must be about as accurate as transformers' own bf16 forward with eager attention (whose precision the
# cascade copies: scores in bf16, softmax in fp32): max error <= 2x and mean error <= 1.5x eager's. The
# factor 2 on the maximum allows for the noise of a maximum over ~7e7 entries.
CASCADE_BF16_MAX_RATIO = 2.0
CASCADE_BF16_MEAN_RATIO = 1.5
# Sampled tokens, fp32, temperature 1, top-p 1 (no nucleus cut), top-k TOKENS_TOP_K. The sampler draws by
# inverse CDF in vocabulary order, with the CDF summed in fp32, whose rounding near 1 is 6e-8. A randomly
# initialised model's next-token distribution is nearly uniform, 6.6e-6 per token over 151,936 tokens: only
# ~100 rounding steps wide, so two paths whose logits agree to rounding pick different tokens now and then
# (measured on the CPU with the full vocabulary: 3 of 32 rows, 1,920 tokens, cascade against transformers).
# Trained models are peaked, with most tokens far below that resolution. (Sharpening a random model's logits,
# tried first, makes it repeat one token forever, which tests nothing.) So the criterion is taken with
# transformers' default top-k 50, which keeps each row random over ~50 tokens of ~2% each: every row is
# identical, or it first differs where rounding explains it, on the fp32 forward's logits: the uniform lies
# within CDF_FLIP_REL of the smaller token probability from the boundary between the two tokens (a wrong row,
# seed or step lands anywhere in a token's interval: ~2% chance per row), or the 50th and 51st logits lie
# closer than 10x the largest fp32 logit difference measured between cascade and forward (then the two paths
# may keep different top-k sets, which moves the CDF by a whole token); and at most a quarter of the rows
# differ. The same comparison without a top-k cut is recorded, not judged.
TOKENS_TOP_K = 50
CDF_FLIP_REL = 0.01
TRAINER_PEAK_RATIO = 1.3

# ---- the synthetic training task (no data files, no verifier libraries) ----------------------------------


class ParityTask(Task):
    """A verifiable task for the trainer check: a completion is correct when the blake2b digest of its text
    is even, so about half of every group is right and each method's loss has non-zero advantages."""

    name = "gpu_check_parity"
    domain = "micro"
    templates = ("plain",)

    def problem(self, index: int) -> Problem:
        rng = random.Random(index)
        numbers = ", ".join(str(rng.randrange(10**6)) for _ in range(16))
        return Problem(id=f"train-{index}", task=self.name, answer=None,
                       text=f"Problem {index}. Add these numbers and say whether the sum is even: {numbers}.")

    def load(self, data_dir=None) -> list[Problem]:
        self.last_source = {"kind": "generated", "split": "eval", "size": 4}
        return [self.problem(10**6 + i) for i in range(4)]

    def train_problems(self, count: int, start: int = 0) -> list[Problem]:
        return [self.problem(i) for i in range(start, start + count)]

    def prompt(self, problem: Problem, template: str | None = None, tokenizer=None) -> str:
        return problem.text + "\nAnswer:"

    def extract(self, problem: Problem, completion: str) -> str | None:
        return hashlib.blake2b(completion.encode(), digest_size=8).hexdigest()

    def check(self, problem: Problem, extracted: str) -> Verdict:
        ok = int(extracted, 16) % 2 == 0
        return Verdict(ok, float(ok), extracted, "ok" if ok else "mismatch")


# Registered only under the module's importable name: the verifier pool's workers import
# `benchmarks.gpu_check` to find the task, and the trainer check imports it the same way.
if __name__ == "benchmarks.gpu_check":
    register(ParityTask)


class IdTokenizer:
    """The sampler's tokenizer interface over token ids written as text ("17 4 99"): no vocabulary file, no
    special tokens, no EOS (every sample runs to max_new_tokens)."""

    eos_token_id = None
    pad_token_id = 0
    unk_token_id = None
    all_special_ids: list[int] = []

    def __call__(self, text: str, add_special_tokens: bool = False, return_tensors=None):
        return {"input_ids": [int(t) for t in text.split()]}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return " ".join(str(int(i)) for i in ids)

    @staticmethod
    def render(ids) -> str:
        return " ".join(str(int(i)) for i in ids)


# ---- results ---------------------------------------------------------------------------------------------


class Result:
    """What one check reports: criteria (each pass/fail with its value and limit), numbers, notes, skips and
    the errors of parts that raised (a part that raises fails the check; the other parts still run)."""

    def __init__(self, path: Path | None = None, name: str = ""):
        self.path, self.name, self.t0 = path, name, time.perf_counter()
        self.criteria: list[dict] = []
        self.numbers: dict = {}
        self.notes: list[str] = []
        self.skipped: list[str] = []
        self.errors: list[dict] = []

    def require(self, name: str, ok: bool, value=None, limit=None) -> bool:
        self.criteria.append({"name": name, "passed": bool(ok), "value": _plain(value), "limit": _plain(limit)})
        return bool(ok)

    @contextlib.contextmanager
    def part(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        except Exception as e:          # recorded; the check's other parts go on
            self.errors.append({"part": name, "error": f"{type(e).__name__}: {e}"[:2000],
                                "traceback": traceback.format_exc()[-6000:]})
            print(f"[{name}] raised {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        finally:
            _free()
            self.numbers.setdefault("part_seconds", {})[name] = round(time.perf_counter() - t0, 2)
            self.flush(final=False)

    def flush(self, final: bool = True) -> None:
        """Write the result so far (a check killed at its time limit keeps what it measured)."""
        if self.path is None:
            return
        out = {"name": self.name, "seconds": time.perf_counter() - self.t0, **self.as_dict()}
        if not final:
            out["incomplete"] = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        tmp.replace(self.path)

    def as_dict(self) -> dict:
        passed = not self.errors and bool(self.criteria) and all(c["passed"] for c in self.criteria)
        return {"passed": passed, "criteria": self.criteria, "numbers": _plain(self.numbers), "notes": self.notes,
                "skipped": self.skipped, "errors": self.errors}


def _plain(x):
    """JSON-able: tensors and numpy scalars to Python numbers, floats rounded to 6 significant digits."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and callable(x.item) and getattr(x, "numel", lambda: 1)() == 1:
        x = x.item()
    if isinstance(x, float):
        return float(f"{x:.6g}")
    return x


def _free() -> None:
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class Ctx:
    def __init__(self, args):
        self.args = args
        self.smoke = args.smoke
        self.out = Path(args.out)
        self.t0 = time.perf_counter()
        self.budget_s = args.child_budget_s

    @property
    def device(self) -> str:
        return "cpu" if self.smoke else "cuda"

    def shape(self, name: str):
        return (SMOKE_SHAPES if self.smoke else SHAPES)[name]

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_reset(device: str) -> float | None:
    """Reset the allocator's peak; returns the bytes allocated now (None on the CPU: no such statistics)."""
    import torch

    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def _peak_gib(device: str, base: float | None = 0.0) -> float | None:
    import torch

    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - (base or 0.0)) / 2**30


def _precise_fp32() -> None:
    """fp32 products in full fp32 (no TF32) for the checks that compare numbers."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


# ---- models ----------------------------------------------------------------------------------------------


def build_model(ctx: Ctx, shape: str, dtype=None, seed: int = 0, perturb: bool = True):
    """A randomly initialised causal LM of `shape` on the check's device. `perturb` moves biases and norm
    weights away from their 0 / 1 initialisation (as tests/test_cascade.py does), so that every term of
    the decode step matters."""
    import torch
    import transformers

    family, kwargs = ctx.shape(shape)
    cfg_cls, model_cls = {"qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
                          "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM)}[family]
    cfg = cfg_cls(**kwargs, bos_token_id=None, eos_token_id=None, pad_token_id=0)
    torch.manual_seed(seed)
    with torch.device(ctx.device):
        model = model_cls(cfg)
    if perturb:
        g = torch.Generator(device=ctx.device).manual_seed(seed + 1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias") or "norm" in name:
                    p.add_(0.1 * torch.randn(p.shape, generator=g, device=p.device, dtype=p.dtype))
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    model.generation_config.bos_token_id = None
    if dtype is not None:
        model.to(dtype)
    return model.eval()


# ---- 1. pytest -m gpu ------------------------------------------------------------------------------------


def check_pytest(ctx: Ctx, res: Result) -> None:
    import xml.etree.ElementTree as ET

    xml = ctx.out / "pytest-gpu.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
           "--continue-on-collection-errors", f"--junitxml={xml}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=max(30, ctx.budget_s - 10))
    res.numbers["seconds"] = time.perf_counter() - t0
    res.numbers["command"] = "python -m pytest -m gpu"
    res.numbers["returncode"] = proc.returncode
    print(proc.stdout[-20000:], proc.stderr[-5000:], sep="\n", flush=True)
    lines = proc.stdout.strip().splitlines()
    res.numbers["summary_line"] = lines[-1] if lines else ""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    skips, failures = [], []
    if xml.exists():
        for case in ET.parse(xml).getroot().iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            kinds = {child.tag: child for child in case}
            if "skipped" in kinds:
                counts["skipped"] += 1
                skips.append({"test": name, "reason": kinds["skipped"].get("message", "")})
            elif "failure" in kinds:
                counts["failed"] += 1
                failures.append({"test": name, "message": (kinds["failure"].get("message") or "")[:500]})
            elif "error" in kinds:
                counts["errors"] += 1
                failures.append({"test": name, "message": (kinds["error"].get("message") or "")[:500]})
            else:
                counts["passed"] += 1
    res.numbers["counts"] = counts
    res.numbers["skips"] = skips
    res.numbers["failures"] = failures
    res.require("junit XML written", xml.exists())
    # 0: all selected tests passed or skipped; 5: nothing selected (no gpu test left in the suite)
    res.require("pytest exit status 0 (or 5: no test selected)", proc.returncode in (0, 5), proc.returncode, [0, 5])
    res.require("no failed test and no collection error", counts["failed"] + counts["errors"] == 0,
                counts["failed"] + counts["errors"], 0)


# ---- 2. the cascade decoder ------------------------------------------------------------------------------


def _cascade_logits(model, prompt: list[int], tokens, drop_at: int, keep):
    """Every step's logits from CascadeDecoder (first_logits, then one step per token, a row dropped at
    `drop_at`) and the model's own forward over prompt + tokens: ([R, S+1, V], [R, S+1, V])."""
    import torch
    from rlvr.harness.sample.cascade import CascadeDecoder, prefill

    dev = model.model.embed_tokens.weight.device
    tokens = tokens.to(dev)
    steps = tokens.shape[1]
    with torch.inference_mode():
        dec = CascadeDecoder(model, prefill(model, prompt), rows=tokens.shape[0], max_new_tokens=steps + 1)
        got = [dec.first_logits]
        for t in range(steps):
            if t == drop_at:
                dec.select(keep)
                tokens, got = tokens[keep], [x[keep] for x in got]
            got.append(dec.step(tokens[:, t]))
        got = torch.stack(got, dim=1)
        full = torch.cat([torch.tensor([prompt] * tokens.shape[0], device=dev), tokens], dim=1)
    return got, full


def _forward_logits(model, full, prompt_len: int):
    import torch

    with torch.inference_mode():
        return model(input_ids=full).logits[:, prompt_len - 1:]


def _diff(got, ref) -> dict:
    d = (got.float() - ref.float()).abs()
    return {"max_abs": d.max().item(), "mean_abs": d.mean().item(), "ref_std": ref.float().std().item(),
            "top1_agree": (got.argmax(-1) == ref.argmax(-1)).float().mean().item()}


def _flip(logits, top_k: int, u: float, a: int, b: int, tie_tol: float) -> dict:
    """Why two paths drew tokens a and b from (nearly) these logits with uniform u: the reference CDF around
    them, computed as rlvr.harness.sample.engine.choose_tokens does (temperature 1), and whether rounding explains it."""
    import torch

    z = logits.float()
    out: dict = {"tokens": [a, b]}
    if top_k:
        vals = z.topk(top_k + 1).values
        out["topk_margin"] = float(vals[top_k - 1] - vals[top_k])
        if out["topk_margin"] <= tie_tol:
            out["explained"] = "the top-k boundary: its two logits tie within the paths' logit difference"
            return out
        z = z.masked_fill(z < vals[top_k - 1], float("-inf"))
    probs = torch.softmax(z, -1)
    cum = torch.cumsum(probs, -1).double()
    pos = u * float(cum[-1])
    lo, hi = sorted((a, b))
    out["gap"] = max(abs(pos - float(cum[lo])), abs(pos - float(cum[hi - 1])))
    out["probs"] = [float(probs[lo]), float(probs[hi])]
    out["gap_rel"] = out["gap"] / min(out["probs"]) if min(out["probs"]) > 0 else float("inf")
    out["mass_between"] = float(cum[hi - 1] - cum[lo])
    if out["gap_rel"] <= CDF_FLIP_REL:
        out["explained"] = "a CDF boundary: the uniform lies within rounding of it"
    return out


def _same_tokens(model, prompts: list[list[int]], n_tok: int, new_tokens: int, top_k: int, tie_tol: float) -> dict:
    """Sample with HFEngine through the cascade and through transformers' forward (same seeds, temperature 1,
    top-p 1, `top_k`) and compare the tokens; each row that differs is examined at its first difference
    (`_flip`)."""
    import numpy as np
    import torch
    from rlvr.harness.sample.engine import HFEngine, SamplingParams, counter_uniforms, sample_seed

    dev = model.model.embed_tokens.weight.device
    params = SamplingParams(temperature=1.0, top_p=1.0, top_k=top_k, max_new_tokens=new_tokens)
    tok = IdTokenizer()
    seeds = [[sample_seed(0, "gpu_check", f"p{j}", i) for i in range(n_tok)] for j in range(len(prompts))]
    reqs = [(IdTokenizer.render(p), s) for p, s in zip(prompts, seeds, strict=True)]
    t0 = time.perf_counter()
    a = HFEngine(model, tok, cascade=True).generate(reqs, params)
    t1 = time.perf_counter()
    b = HFEngine(model, tok, cascade=False).generate(reqs, params)
    t2 = time.perf_counter()
    flips = []
    for j in range(len(prompts)):
        for i in range(n_tok):
            x, y = a[j][i].token_ids, b[j][i].token_ids
            if x == y:
                continue
            k = next((t for t, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
            flip = {"prompt": j, "sample": i, "step": k}
            if k < min(len(x), len(y)):
                with torch.inference_mode():
                    logits = model(input_ids=torch.tensor([prompts[j] + x[:k]], device=dev)).logits[0, -1]
                u = float(counter_uniforms(np.array([seeds[j][i]], dtype=np.uint64), k)[0])
                flip.update(_flip(logits, top_k, u, x[k], y[k], tie_tol))
            flips.append(flip)
    rows = len(prompts) * n_tok
    return {"top_k": top_k, "rows": rows, "tokens": sum(c.tokens for r in a for c in r),
            "distinct_tokens": len({t for r in a for c in r for t in c.token_ids}),
            "rows_identical": rows - len(flips), "rows_differing": len(flips),
            "rows_unexplained": sum("explained" not in f for f in flips), "flips": flips[:16],
            "seconds_cascade": t1 - t0, "seconds_transformers": t2 - t1}


def _set_attn(model, impl: str) -> None:
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(impl)
    else:
        model.config._attn_implementation = impl


def check_cascade(ctx: Ctx, res: Result) -> None:
    import torch
    from rlvr.harness.sample.cascade import cascade_unsupported

    _precise_fp32()
    prompt_len, steps, drop_at, rows = 100, 150, 70, 4        # 150 steps: past the first 128-token buffer
    n_tok, n_prompts, new_tokens = (16, 2, 40) if ctx.smoke else (32, 2, 160)
    res.numbers["settings"] = {"prompt_len": prompt_len, "steps": steps, "rows": rows, "row_dropped_at": drop_at,
                               "sampling": {"prompts": n_prompts, "samples": n_tok, "new_tokens": new_tokens,
                                            "temperature": 1.0, "top_p": 1.0, "top_k": [TOKENS_TOP_K, 0]},
                               "tolerances": {"fp32_max_over_std": CASCADE_FP32_TOL, "cdf_flip_rel": CDF_FLIP_REL,
                                              "tokens_top_k": TOKENS_TOP_K,
                                              "bf16_max_ratio_to_eager": CASCADE_BF16_MAX_RATIO,
                                              "bf16_mean_ratio_to_eager": CASCADE_BF16_MEAN_RATIO},
                               }
    for shape in ("qwen2.5-1.5b", "llama-3.2-1b"):
        out = res.numbers.setdefault(shape, {})
        with res.part(shape):
            out["config"] = {k: v for k, v in ctx.shape(shape)[1].items()}
            model = build_model(ctx, shape, torch.float32)
            out["params"] = sum(p.numel() for p in model.parameters())
            reason = cascade_unsupported(model)
            if not res.require(f"{shape}: cascade supports the architecture", reason is None, reason):
                continue
            with torch.no_grad():       # bf16-representable weights: the fp32 and bf16 models are the same model
                for p in model.parameters():
                    p.copy_(p.to(torch.bfloat16).float())
            V = model.config.vocab_size
            g = torch.Generator().manual_seed(1)
            prompt = torch.randint(0, V, (prompt_len,), generator=g).tolist()
            tokens = torch.randint(0, V, (rows, steps), generator=g)
            keep = torch.tensor([0, 2, 3], device=ctx.device)

            # fp32: cascade against the model's own forward
            got, full = _cascade_logits(model, prompt, tokens, drop_at, keep)
            ref32 = _forward_logits(model, full, prompt_len)
            d = _diff(got, ref32)
            out["fp32"] = d
            res.require(f"{shape}: fp32 logits, max|cascade - forward| / std(logits)",
                        d["max_abs"] <= CASCADE_FP32_TOL * d["ref_std"], d["max_abs"] / d["ref_std"], CASCADE_FP32_TOL)
            del got

            # fp32: the same tokens as transformers' decoding path (same seeds; see TOKENS_TOP_K)
            prompts = [torch.randint(0, V, (prompt_len,), generator=g).tolist() for _ in range(n_prompts)]
            tie = 10 * d["max_abs"]        # transformers' incremental decode differs from its forward alike
            t = out["fp32_tokens"] = _same_tokens(model, prompts, n_tok, new_tokens, TOKENS_TOP_K, tie)
            res.require(f"{shape}: fp32 tokens (top-k {TOKENS_TOP_K}): rows that differ from transformers' path "
                        f"without a rounding explanation", t["rows_unexplained"] == 0, t["rows_unexplained"], 0)
            res.require(f"{shape}: fp32 tokens (top-k {TOKENS_TOP_K}): fraction of rows that differ at all",
                        t["rows_differing"] <= t["rows"] / 4, t["rows_differing"] / t["rows"], 0.25)
            out["fp32_tokens_full_vocabulary"] = _same_tokens(model, prompts, n_tok, new_tokens, 0, tie)

            # bf16: both bf16 paths against the fp32 forward of the same weights
            m16 = model.to(torch.bfloat16)      # in place: the fp32 numbers are taken
            del model
            _free()
            got16, _ = _cascade_logits(m16, prompt, tokens, drop_at, keep)
            c = _diff(got16, ref32)
            del got16
            ref16_sdpa = _forward_logits(m16, full, prompt_len)
            s = _diff(ref16_sdpa, ref32)
            del ref16_sdpa
            _set_attn(m16, "eager")
            ref16_eager = _forward_logits(m16, full, prompt_len)
            e = _diff(ref16_eager, ref32)
            del ref16_eager, m16
            out["bf16"] = {"cascade_vs_fp32": c, "forward_sdpa_vs_fp32": s, "forward_eager_vs_fp32": e}
            res.require(f"{shape}: bf16 max error vs fp32, cascade / transformers eager",
                        c["max_abs"] <= CASCADE_BF16_MAX_RATIO * e["max_abs"], c["max_abs"] / e["max_abs"],
                        CASCADE_BF16_MAX_RATIO)
            res.require(f"{shape}: bf16 mean error vs fp32, cascade / transformers eager",
                        c["mean_abs"] <= CASCADE_BF16_MEAN_RATIO * e["mean_abs"], c["mean_abs"] / e["mean_abs"],
                        CASCADE_BF16_MEAN_RATIO)
            del ref32


# ---- 3. sampling throughput ------------------------------------------------------------------------------


def check_sampling(ctx: Ctx, res: Result) -> None:
    import torch
    from rlvr.harness.sample.engine import HFEngine, SamplingParams, sample_seed

    a = ctx.args
    grid = [(1, 8), (1, 32)] if ctx.smoke else [(1, 64), (1, 1024)]
    chunks = [16, 32] if ctx.smoke else a.chunks
    new_tokens = 16 if ctx.smoke else 512
    rounds = 1 if ctx.smoke else a.rounds
    dtype = torch.float32 if ctx.smoke else torch.bfloat16     # what `rlvr eval --dtype auto` picks
    dev = ctx.device
    model = build_model(ctx, "qwen2.5-0.5b", dtype, perturb=False)
    tok = IdTokenizer()
    engine = HFEngine(model, tok)
    V = model.config.vocab_size
    prompt_ids = torch.randint(0, V, (128,), generator=torch.Generator().manual_seed(3)).tolist()
    prompt = IdTokenizer.render(prompt_ids)
    params = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=new_tokens)
    cap = None if ctx.smoke else a.naive_cap_s
    res.numbers["settings"] = {"model": "qwen2.5-0.5b" + (" (smoke: toy size)" if ctx.smoke else ""),
                               "dtype": str(dtype), "prompt_tokens": len(prompt_ids), "new_tokens": new_tokens,
                               "grid": [f"{p}x{n}" for p, n in grid], "chunks": chunks, "timed_rounds": rounds,
                               "decode_path": engine.decode_path, "eos": "none: every sample has new_tokens tokens",
                               "naive_cap_s": cap, "sampling": "temperature 1, no top-p, no top-k"}
    res.notes.append("our engine runs as `rlvr eval --chunk C` does (a problem's samples in batches of C); the "
                     "baseline is one model.generate(do_sample=True, num_return_sequences=n) per problem; both "
                     "without EOS, so both produce n x new_tokens tokens; a ratio is the median over rounds of "
                     "the paired per-round ratios of tokens per second")

    def ours(n: int, chunk: int) -> int:
        toks = 0
        seeds = [sample_seed(0, "gpu_check", "p0", i) for i in range(n)]
        for start in range(0, n, chunk):
            toks += sum(c.tokens for c in engine.generate([(prompt, seeds[start:start + chunk])], params)[0])
        return toks

    def naive(n: int) -> int:
        ids = torch.tensor([prompt_ids], device=dev)
        kw = {"max_time": cap} if cap else {}
        with torch.inference_mode():
            out = model.generate(ids, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=new_tokens,
                                 num_return_sequences=n, pad_token_id=0, eos_token_id=None, **kw)
        _sync(dev)
        return int(out.shape[0]) * (int(out.shape[1]) - len(prompt_ids))

    # a timed round after the first is skipped when it would not end in time: entries before the last may
    # use 40% of the check's budget, the last one all of it
    soft_deadline = ctx.budget_s - 15
    for entry, (n_problems, n) in enumerate(grid):
        label = f"{n_problems}x{n}"
        block = res.numbers.setdefault(label, {"variants": {}, "ratios": {}})
        with res.part(f"sampling {label}"):
            cs = list(dict.fromkeys(min(c, n) for c in chunks))
            variants = [(f"hf-engine/chunk{c}", (lambda n=n, c=c: ours(n, c)), True) for c in cs]
            variants.append(("naive-generate", (lambda n=n: naive(n)), False))
            times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
            info: dict[str, dict] = {name: {} for name, _, _ in variants}
            share = 0.4 if entry < len(grid) - 1 else 1.0
            last_round = 0.0
            for rnd in range(rounds + 1):
                if rnd > 1 and ctx.elapsed() + last_round > soft_deadline * share:
                    res.notes.append(f"{label}: stopped after {rnd - 1} timed round(s) to stay within the time budget")
                    break
                r0 = time.perf_counter()
                for name, fn, cheap in variants:
                    if rnd == 0 and not (cheap or entry == 0):
                        continue        # warm-up: ours always, every variant in the first entry
                    base = _peak_reset(dev)
                    _sync(dev)
                    t0 = time.perf_counter()
                    toks = fn()
                    _sync(dev)
                    dt = time.perf_counter() - t0
                    if rnd:
                        times[name].append(dt)
                        info[name] = {"tokens": toks, "peak_gib": _peak_gib(dev, 0.0),
                                      "peak_above_weights_gib": _peak_gib(dev, base)}
                    print(f"{label} round {rnd} {name}: {toks} tokens in {dt:.2f} s", flush=True)
                last_round = time.perf_counter() - r0
            for name, _, _ in variants:
                if not times[name]:
                    continue
                dt = statistics.median(times[name])
                block["variants"][name] = {**info[name], "seconds": dt, "runs": times[name],
                                           "tokens_per_s": info[name]["tokens"] / dt}
                if name == "naive-generate" and info[name]["tokens"] < n_problems * n * new_tokens:
                    res.notes.append(f"{label}: naive generate capped at {cap} s (max_time): "
                                     f"{info[name]['tokens']} of {n * new_tokens} tokens")
                    block["variants"][name]["capped"] = True
            for name, _, _ in variants[:-1]:
                if times[name] and times["naive-generate"]:
                    # tokens/s ratio, paired by round
                    ratios = [(info[name]["tokens"] / o) / (info["naive-generate"]["tokens"] / t)
                              for o, t in zip(times[name], times["naive-generate"], strict=False)]
                    block["ratios"][f"{name} / naive-generate"] = {"median": statistics.median(ratios),
                                                                   "rounds": ratios}
                    print(f"{label}: tokens/s of {name} over naive generate: {statistics.median(ratios):.2f}x",
                          flush=True)
                res.require(f"{label}: {name} produced every token",
                            info[name].get("tokens") == n_problems * n * new_tokens, info[name].get("tokens"),
                            n_problems * n * new_tokens)
            res.require(f"{label}: naive generate ran", bool(times["naive-generate"]), len(times["naive-generate"]), ">= 1")
    res.notes.append("the ratios are measurements, not pass criteria: a check passes when every variant ran and "
                     "produced its tokens")


# ---- 4. the trainer --------------------------------------------------------------------------------------


def _write_train_model(ctx: Ctx, path: Path) -> dict:
    """A Qwen2.5-0.5B-shaped model (real vocabulary on the GPU) with a small locally trained tokenizer, in
    Hugging Face format. Token ids past the tokenizer's vocabulary decode to nothing, as Qwen's padded
    embedding rows do."""
    import torch
    from rlvr.harness.sample.models import build_tokenizer, default_tokenizer_corpus

    tok = build_tokenizer(default_tokenizer_corpus(), 1024)
    model = build_model(ctx, "qwen2.5-0.5b", None, perturb=False)
    model.config.eos_token_id = model.generation_config.eos_token_id = tok.eos_token_id
    model.config.pad_token_id = model.generation_config.pad_token_id = tok.pad_token_id
    model.to(torch.bfloat16).save_pretrained(path)
    tok.save_pretrained(path)
    return {"params": sum(p.numel() for p in model.parameters()), "vocab": model.config.vocab_size,
            "tokenizer_size": len(tok), "eos_id": tok.eos_token_id}


def check_trainer(ctx: Ctx, res: Result) -> None:
    import importlib

    from rlvr.harness.train.trainer import OptimizerConfig, SamplingConfig, TrainConfig, Trainer
    from rlvr.harness.verify.pool import VerifierPool

    task = importlib.import_module("benchmarks.gpu_check").ParityTask.name     # registers it (see above)
    dev = ctx.device
    max_new = 32 if ctx.smoke else 1024
    rows, micro, steps = (8, 4, 3) if ctx.smoke else (16, 8, 3)
    specs = {"grpo": {"name": "grpo", "kl_coef": 0.0}, "lp_reg": {"name": "lp_reg"}, "casp": {"name": "casp"}}
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-train-"))
    res.numbers["settings"] = {"model": "qwen2.5-0.5b" + (" (smoke: toy size)" if ctx.smoke else ""),
                               "dtype": "bfloat16", "device": dev, "steps": steps, "prompts_per_step": 1,
                               "rollouts_per_prompt": rows, "micro_batch_size": micro, "max_new_tokens": max_new,
                               "methods": specs, "task": task, "rollout_engine": "hf"}
    res.notes.append("GRPO runs without its KL term (kl_coef 0, no reference model), like Lp-Reg and CaSP, so the "
                     "peaks differ only by what each method computes")
    res.notes.append("response length: the sampler has no min_new_tokens; a randomly initialised model gives EOS "
                     "a probability of about 1/vocab per token, so nearly every response runs to max_new_tokens "
                     "(response_len_mean and truncation_rate from the training log are checked)")
    res.notes.append("seconds per step: the log's time_step_s (rollout + verification + update); the first step "
                     "includes one-time warm-up")
    try:
        with res.part("model"):
            res.numbers["model"] = _write_train_model(ctx, tmp / "model")
        peaks = {}
        with VerifierPool(workers=1, deadline_s=30, preload=["benchmarks.gpu_check"]) as pool:
            for name, spec in specs.items():
                with res.part(name):
                    cfg = TrainConfig(model=str(tmp / "model"), out=str(tmp / name), tasks=[task], method=spec,
                                      train_problems=16, prompts_per_step=1, rollouts_per_prompt=rows,
                                      micro_batch_size=micro, steps=steps, optimizer=OptimizerConfig(lr=1e-6),
                                      sampling=SamplingConfig(temperature=1.0, max_new_tokens=max_new),
                                      device=dev, dtype="bfloat16", workers=1, seed=0)
                    before = _peak_reset(dev)       # ~0: the previous method's trainer is gone
                    t0 = time.perf_counter()
                    tr = Trainer(cfg, progress=False)
                    tr.train(pool)
                    total = time.perf_counter() - t0
                    peak = _peak_gib(dev, before)
                    del tr
                    log = [json.loads(x) for x in (tmp / name / "train_log.jsonl").read_text().splitlines()]
                    keep = ("time_step_s", "time_rollout_s", "response_len_mean", "truncation_rate", "reward_mean",
                            "rows_kept", "grad_norm", "entropy")
                    out = {"seconds_total": total, "peak_gib": peak,
                           "allocated_before_gib": None if before is None else before / 2**30,
                           "steps": [{k: r.get(k) for k in keep} | {k: v for k, v in r.items() if k.startswith("method/")}
                                     for r in log],
                           "seconds_per_step": [r["time_step_s"] for r in log],
                           "seconds_per_step_after_first": statistics.mean([r["time_step_s"] for r in log[1:]])
                           if len(log) > 1 else None}
                    res.numbers[name] = out
                    peaks[name] = peak
                    (ctx.out / "trainer").mkdir(parents=True, exist_ok=True)
                    (ctx.out / "trainer" / f"{name}_train_log.jsonl").write_text(
                        (tmp / name / "train_log.jsonl").read_text())
                    shutil.rmtree(tmp / name / "checkpoints", ignore_errors=True)     # ~3 GB each on the GPU
                    res.require(f"{name}: {steps} steps logged", len(log) == steps, len(log), steps)
                    lens = [r["response_len_mean"] for r in log]
                    res.require(f"{name}: mean response length >= 0.95 x max_new_tokens", min(lens) >= 0.95 * max_new,
                                min(lens), 0.95 * max_new)
                    res.require(f"{name}: finite gradient norms",
                                all(r.get("grad_norm") is not None and r["grad_norm"] == r["grad_norm"]
                                    and abs(r["grad_norm"]) != float("inf") for r in log),
                                [r.get("grad_norm") for r in log])
                    rewards = [r["reward_mean"] for r in log]
                    res.require(f"{name}: mixed rewards (advantages not all zero)",
                                any(0 < x < 1 for x in rewards), rewards, "0 < mean < 1 in some step")
        if dev.startswith("cuda"):
            for name in ("lp_reg", "casp"):
                if "grpo" in peaks and name in peaks:
                    res.require(f"{name}: peak GPU memory / GRPO's", peaks[name] <= TRAINER_PEAK_RATIO * peaks["grpo"],
                                peaks[name] / peaks["grpo"], TRAINER_PEAK_RATIO)
        else:
            res.skipped.append("peak memory ratios: CUDA only (the CPU has no allocator peak statistics)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- 5. per-token statistics -----------------------------------------------------------------------------

TOKEN_STATS_METHODS = {"grpo": {"kl_coef": 0.0, "loss_agg_mode": "token-mean"}, "lp_reg": {}, "casp": {}}


def _loss_step(method_name: str, impl: str, B: int, T: int, V: int, H: int, dtype, dev: str, chunk, seed: int = 0):
    """One loss step as benchmarks/bench_token_stats.py takes it (old pass, update pass, loss, backward) on
    fresh inputs; returns (loss, h.grad, w.grad, peak GiB above the inputs or None on the CPU)."""
    import torch
    from rlvr.harness.train.token_stats import old_pass_fields, update_pass_fields
    from rlvr.methods.base import TokenBatch

    from rlvr import methods

    g = torch.Generator(device=dev).manual_seed(seed)
    method = methods.build(method_name, TOKEN_STATS_METHODS[method_name])
    h = torch.randn(B, T, H, generator=g, device=dev).to(dtype).requires_grad_()
    w = (torch.randn(V, H, generator=g, device=dev) / H**0.5).to(dtype).requires_grad_()
    y = torch.randint(0, V, (B, T), generator=g, device=dev)
    mask = torch.ones(B, T, device=dev)
    rewards = (torch.arange(B, device=dev) % 3 == 0).float()
    gids = torch.arange(B, device=dev) // 8
    base = _peak_reset(dev)
    old = old_pass_fields(method, h.detach(), w.detach(), y, mask, chunk_size=chunk)
    new = update_pass_fields(method, h, w, y, mask, old_topk_ids=old.get("old_topk_ids"), chunk_size=chunk, impl=impl)
    batch = TokenBatch(old_logp=old["old_logp"], mask=mask, advantages=method.advantages(rewards, gids, mask),
                       rewards=rewards, group_ids=gids, **{k: v for k, v in old.items() if k != "old_logp"}, **new)
    loss, _ = method.loss(batch)
    loss.backward()
    peak = _peak_gib(dev, base)
    return loss.detach().float(), h.grad.float(), w.grad.float(), peak


def check_token_stats(ctx: Ctx, res: Result) -> None:
    import torch
    from rlvr.harness.train.token_stats import default_chunk_size

    _precise_fp32()
    dev = ctx.device
    if ctx.smoke:
        V, H, (B, T), (Bc, Tc), chunk = 2048, 64, (4, 128), (4, 64), 100
    else:
        V, H, (B, T), (Bc, Tc), chunk = 151936, 896, (32, 512), (4, 512), None
    res.numbers["settings"] = {"vocab": V, "hidden": H, "tokens": B * T, "tokens_equality": Bc * Tc,
                               "chunk": chunk or default_chunk_size(V), "dtype_memory": "bfloat16",
                               "methods": TOKEN_STATS_METHODS}
    full_gib = B * T * V * 4 / 2**30
    res.numbers["full_fp32_logits_gib"] = full_gib

    # values and gradients: the chunked function against full logits, fp32 (tight) and bf16 (loose)
    tol = {torch.float32: 1e-4, torch.bfloat16: 3e-2}
    res.numbers["equality_tolerance"] = {"fp32": tol[torch.float32], "bf16": tol[torch.bfloat16],
                                         "measure": "|loss diff| / max(|loss|, 1e-3) and ||grad diff|| / ||grad||"}
    for dtype in (torch.float32, torch.bfloat16):
        for m in TOKEN_STATS_METHODS:
            with res.part(f"equality {m} {dtype}"):
                lf, hf, wf, _ = _loss_step(m, "function", Bc, Tc, V, H, dtype, dev, chunk)
                ln, hn, wn, _ = _loss_step(m, "naive", Bc, Tc, V, H, dtype, dev, chunk)
                err = {"loss": (abs(lf - ln) / max(abs(ln), 1e-3)).item(),
                       "grad_h": ((hf - hn).norm() / hn.norm().clamp_min(1e-30)).item(),
                       "grad_w": ((wf - wn).norm() / wn.norm().clamp_min(1e-30)).item()}
                res.numbers.setdefault("equality", {})[f"{m}/{str(dtype).removeprefix('torch.')}"] = err
                res.require(f"{m} {str(dtype).removeprefix('torch.')}: chunked == full logits (max relative error)",
                            max(err.values()) <= tol[dtype], max(err.values()), tol[dtype])

    # peak memory at full size, bf16 (as the trainer's hidden states and head are)
    if not dev.startswith("cuda"):
        res.skipped.append("peak memory: CUDA only (on the CPU: python benchmarks/bench_token_stats.py, one process "
                           "per case)")
        return
    peaks = {}
    for m, impl in [("grpo", "function"), ("lp_reg", "function"), ("casp", "function"), ("grpo", "naive")]:
        with res.part(f"memory {m} {impl}"):
            t0 = time.perf_counter()
            *_, peak = _loss_step(m, impl, B, T, V, H, torch.bfloat16, dev, chunk)
            peaks[f"{m}/{impl}"] = peak
            res.numbers.setdefault("memory", {})[f"{m}/{impl}"] = {"peak_gib": peak,
                                                                   "seconds": time.perf_counter() - t0}
    for m in ("lp_reg", "casp"):
        if f"{m}/function" in peaks and "grpo/function" in peaks:
            res.require(f"{m}: peak / GRPO's (chunked)", peaks[f"{m}/function"] <= TRAINER_PEAK_RATIO * peaks["grpo/function"],
                        peaks[f"{m}/function"] / peaks["grpo/function"], TRAINER_PEAK_RATIO)
    for m in TOKEN_STATS_METHODS:
        if f"{m}/function" in peaks:
            res.require(f"{m}: chunked peak / full fp32 logits", peaks[f"{m}/function"] <= 0.25 * full_gib,
                        peaks[f"{m}/function"] / full_gib, 0.25)
    if "grpo/naive" in peaks and "grpo/function" in peaks:
        res.numbers["naive_over_chunked_grpo"] = peaks["grpo/naive"] / peaks["grpo/function"]


# ---- environment -----------------------------------------------------------------------------------------


def check_env(ctx: Ctx, res: Result) -> None:
    """Not a check: what the machine is (recorded under provenance)."""
    import platform

    import torch
    from rlvr.harness.provenance import hardware, package_versions

    env = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "python": platform.python_version(), "versions": package_versions(), "hardware": hardware()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "memory_gib": p.total_memory / 2**30,
                      "multiprocessors": p.multi_processor_count, "count": torch.cuda.device_count()}
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
        env["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()[:300]
        env["driver"] = q.stdout.strip().splitlines()[0].split(",")[1].strip() if q.returncode == 0 and q.stdout.strip() \
            else None
    except (OSError, subprocess.TimeoutExpired, IndexError) as e:
        env["nvidia_smi"], env["driver"] = f"unavailable ({type(e).__name__})", None
    if env["driver"] is None and Path("/proc/driver/nvidia/version").exists():
        env["driver"] = Path("/proc/driver/nvidia/version").read_text().splitlines()[0]
    res.numbers.update(env)
    res.require("CUDA available" if not ctx.smoke else "environment recorded", ctx.smoke or env["cuda_available"],
                env["cuda_available"])


RUNNERS = {"env": check_env, "pytest": check_pytest, "cascade": check_cascade, "sampling": check_sampling,
           "trainer": check_trainer, "token_stats": check_token_stats}


# ---- orchestration ---------------------------------------------------------------------------------------


def source_sha256() -> str:
    """sha256 over the harness's Python sources and pyproject.toml (identifies the code without git)."""
    h = hashlib.sha256()
    files = [REPO / "pyproject.toml"] + sorted(p for d in ("rlvr", "harness", "methods", "tasks", "benchmarks")
                                               for p in (REPO / d).rglob("*.py"))
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(REPO)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def run_child(args) -> int:
    """One check in this process: writes OUT/checks/NAME.json."""
    ctx = Ctx(args)
    res = Result(ctx.out / "checks" / f"{args.child}.json", args.child)
    with res.part(args.child):
        RUNNERS[args.child](ctx, res)
    res.numbers.get("part_seconds", {}).pop(args.child, None)
    res.flush()
    return 0


def _run_isolated(name: str, args, limit_s: float) -> dict:
    """Run check `name` in a fresh process (its own CUDA context) under a time limit; its result, or a
    failure saying how it ended."""
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    result_file = out / "checks" / f"{name}.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--out", str(out),
           "--child-budget-s", str(int(limit_s)), "--rounds", str(args.rounds), "--naive-cap-s", str(args.naive_cap_s),
           "--chunks", ",".join(map(str, args.chunks))] + (["--smoke"] if args.smoke else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if args.smoke:      # toy shapes gain nothing from threads, and on a busy CPU OpenMP's waits cost 100x
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    log = out / "logs" / f"{name}.log"
    t0 = time.perf_counter()
    status = None
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            status = "timeout"
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)        # the check and anything it started (pool workers)
            proc.wait()
    seconds = time.perf_counter() - t0
    partial = json.loads(result_file.read_text()) if result_file.exists() else None
    if partial is not None and status == 0 and not partial.get("incomplete"):
        return partial
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    how = f"was killed at its limit of {limit_s:.0f} s" if status == "timeout" else f"exited with status {status}"
    out = partial or {"criteria": [], "numbers": {}, "notes": [], "skipped": [], "errors": []}
    out.update(name=name, seconds=seconds, passed=False)
    out["errors"] = out.get("errors", []) + [{"part": name, "error": f"the check's process {how}"
                                              + (" (the numbers are those measured before)" if partial else ""),
                                              "log_tail": tail}]
    return out


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for gpu_check.json, logs/ and the pytest XML")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (the test suite runs this)")
    ap.add_argument("--checks", default=",".join(CHECKS), help=f"subset to run (default: {','.join(CHECKS)})")
    ap.add_argument("--budget-s", type=float, default=450.0, help="the whole run's time limit (GPU; default 450)")
    ap.add_argument("--rounds", type=int, default=2, help="timed interleaved rounds of the sampling check")
    ap.add_argument("--chunks", type=_ints, default=[1024],
                    help="our engine's batch sizes per problem in the sampling check (capped at n)")
    ap.add_argument("--naive-cap-s", type=float, default=60.0,
                    help="generate's max_time per call in the sampling check (the naive baseline is cut there)")
    ap.add_argument("--git-sha", help="record this commit when the checkout has no .git")
    ap.add_argument("--child", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    ap.add_argument("--child-budget-s", type=float, default=600.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return run_child(args)

    from rlvr.harness.provenance import git_state, utc_now

    chosen = [c.strip() for c in args.checks.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(CHECKS))
    if unknown:
        ap.error(f"--checks: unknown {', '.join(unknown)} (known: {', '.join(CHECKS)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    git = git_state()
    if git["sha"] is None and args.git_sha:
        git = {"sha": args.git_sha, "dirty": None, "from": "--git-sha"}
    report = {"schema": 1, "mode": "smoke" if args.smoke else "gpu", "passed": False,
              "provenance": {"date": utc_now(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                             "argv": sys.argv, "git": git, "source_sha256": source_sha256()},
              "settings": {k: v for k, v in vars(args).items() if k not in ("child", "child_budget_s")},
              "checks": {}}

    def write() -> None:
        report["total_seconds"] = round(time.perf_counter() - t_start, 1)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")

    def limit(name: str, later: int) -> float:
        if args.smoke:
            return SMOKE_LIMIT_S
        left = args.budget_s - (time.perf_counter() - t_start) - RESERVE_S * later
        return max(10.0, min(LIMIT_S[name], left))

    env = _run_isolated("env", args, limit("env", len(chosen)))
    e = env.get("numbers", {})
    report["provenance"].update({"gpu": (e.get("gpu") or {}).get("name"), "driver": e.get("driver"),
                                 "cuda": e.get("torch_cuda"), "torch": e.get("torch"),
                                 "transformers": (e.get("versions") or {}).get("transformers"),
                                 "python": e.get("python"), "environment": e})
    if not env["passed"]:
        report["provenance"]["environment_errors"] = env.get("errors", []) or env.get("criteria", [])
    write()
    if e.get("cuda_available") is False and not args.smoke:
        print("gpu_check: no CUDA device here (see gpu_check.json); on a CPU run --smoke", file=sys.stderr)
        for name in chosen:
            report["checks"][name] = {"name": name, "passed": False, "seconds": 0.0, "criteria": [], "numbers": {},
                                      "notes": [], "skipped": [], "errors": [{"part": name, "error": "not run: no CUDA device"}]}
        write()
        return 1
    for i, name in enumerate(chosen):
        lim = limit(name, len(chosen) - i - 1)
        print(f"gpu_check: {name} (limit {lim:.0f} s) ...", flush=True)
        r = _run_isolated(name, args, lim)
        r["limit_s"] = lim
        report["checks"][name] = r
        failed = [c["name"] for c in r["criteria"] if not c["passed"]] + [e["part"] + ": " + e["error"][:200]
                                                                            for e in r["errors"]]
        print(f"gpu_check: {name}: {'PASS' if r['passed'] else 'FAIL'} in {r['seconds']:.1f} s"
              + ("" if r["passed"] else f" ({'; '.join(failed)[:600]})"), flush=True)
        write()
    report["passed"] = all(report["checks"][n]["passed"] for n in chosen)
    write()
    print(f"gpu_check: {'all checks passed' if report['passed'] else 'FAILED'} in {report['total_seconds']} s; "
          f"{out / 'gpu_check.json'}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
