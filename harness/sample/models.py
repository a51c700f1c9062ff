"""Loading causal LMs (hub id or local directory) and building small ones offline.

`init_model` writes a standard Qwen2-architecture model with a byte-level BPE tokenizer trained
locally (the `tokenizers` library) in Hugging Face format, so a tiny model and a 7B model go through
the same `from_pretrained` path. The tokenizer carries the ChatML special tokens and chat template
that the papers' prompts use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rlvr.harness.errors import UserError
from rlvr.tasks.loading import hub_reachable

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# the tokenizer's files as transformers and sentencepiece write them (what a model fingerprint covers
# besides the weights)
TOKENIZER_FILES = frozenset({"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model",
                             "spiece.model", "chat_template.jinja", "chat_template.json"})


# the `rlvr init-model` flag of each TinyModelSpec field, for error messages
SPEC_FLAGS = {"vocab_size": "--vocab-size", "hidden_size": "--hidden-size", "num_layers": "--layers",
              "num_heads": "--heads", "num_kv_heads": "--heads", "intermediate_size": "intermediate_size",
              "max_position_embeddings": "max_position_embeddings"}


@dataclass(frozen=True)
class TinyModelSpec:
    """Size of a model built by `init_model` (defaults: about 0.15M parameters, CPU-fast)."""

    vocab_size: int = 1024
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 192
    max_position_embeddings: int = 4096
    seed: int = 0

    def check(self) -> None:
        """Refuse a shape the architecture cannot run (a `UserError` naming the flag), before anything is
        built: attention splits hidden_size into num_heads heads of an even size (rotary embeddings rotate
        pairs of dimensions), and the query heads share num_kv_heads key/value heads evenly."""
        f = SPEC_FLAGS
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                     "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise UserError(f"{f[name]}: must be at least 1, got {getattr(self, name)}")
        low = 256 + len(SPECIAL_TOKENS)   # the byte alphabet of the BPE and the special tokens
        if self.vocab_size < low:
            raise UserError(f"{f['vocab_size']}: must be at least {low} (256 bytes and {len(SPECIAL_TOKENS)} "
                            f"special tokens), got {self.vocab_size}")
        if self.hidden_size % self.num_heads:
            raise UserError(f"{f['hidden_size']} {self.hidden_size} is not a multiple of {f['num_heads']} "
                            f"{self.num_heads} (each attention head gets hidden_size / heads dimensions)")
        if (self.hidden_size // self.num_heads) % 2:
            raise UserError(f"{f['hidden_size']} {self.hidden_size} / {f['num_heads']} {self.num_heads} = "
                            f"{self.hidden_size // self.num_heads} dimensions per head; rotary position "
                            f"embeddings need an even number")
        if self.num_heads % self.num_kv_heads:
            raise UserError(f"{f['num_heads']} {self.num_heads}: not a multiple of the {self.num_kv_heads} "
                            f"key/value heads")


def default_tokenizer_corpus() -> list[str]:
    """Text the default tokenizer is trained on: the prompt skeletons and the symbols of math answers.
    Deterministic, so the same spec always gives the same tokenizer."""
    from rlvr.tasks.templates import chatml

    lines = [chatml("You are a helpful assistant.", "Solve the problem.\nPlease reason step by step, and put "
                    "your final answer within \\boxed{}.") + "The answer is \\boxed{42}.<|im_end|>"]
    words = ("the answer is so let step think we have therefore compute sum product number value "
             "question problem solution true false valid invalid yes no def return import print for in if "
             "else while range len int str list dict class self").split()
    lines += [" ".join(words[i:] + words[:i]) for i in range(len(words))]
    lines += [f"{a} + {b} = {a + b}, {a} * {b} = {a * b}, \\frac{{{a}}}{{{b}}}, {a}^{{{b}}}, \\sqrt{{{a}}}"
              for a in range(0, 60, 3) for b in range(1, 40, 7)]
    return lines


def build_tokenizer(corpus: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer (any text encodes; no unknown tokens) with ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # digits one by one (as Qwen's tokenizer does): arithmetic stays learnable for a small model
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None)
    fast.chat_template = CHATML_TEMPLATE
    return fast


def init_model(out: str | Path, spec: TinyModelSpec = TinyModelSpec(), corpus: Iterable[str] | None = None,
               overwrite: bool = False) -> Path:
    """Write a freshly initialised Qwen2-architecture model and its tokenizer to `out`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    spec.check()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UserError(f"--out: {out} is not an empty directory (pass --overwrite to replace it)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out: cannot create {out} ({e.strerror or e})") from None
    tokenizer = build_tokenizer(corpus if corpus is not None else default_tokenizer_corpus(), spec.vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_kv_heads,
        intermediate_size=spec.intermediate_size, max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(spec.seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "rlvr_model_spec.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
    return out


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise UserError(f"--dtype: expected auto, float32, bfloat16 or float16, got {dtype!r}") from None


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device: expected auto, cpu, cuda or cuda:N (a torch device), got {device!r}") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device is available here")
    return device


def looks_like_path(name: str) -> bool:
    """Whether a model name can only mean a local directory: it starts with `.`, `/` or `~`, has more
    than one `/` (a hub id is `org/name`), or its parent directory exists here (`models/x` beside a
    `models/` folder)."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        return True
    parent = Path(name).expanduser().parent
    return str(parent) not in ("", ".") and parent.is_dir()


def resolve_model(name_or_path: str, what: str = "--model") -> str:
    """What `from_pretrained` gets: a local directory that holds a model (its config.json), or a hub id.
    Cheap, so callers check --model with it before loading data or weights. `what` names the flag or
    config field the name came from, for the error message."""
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            # a training output folder keeps its models in checkpoints/ (`last` links to the newest)
            hint = next((c for c in (local / "checkpoints" / "last", local / "last") if (c / "config.json").is_file()),
                        None)
            raise UserError(f"{what}: {name_or_path} holds no model (no config.json)"
                            + (f"; did you mean {hint}?" if hint else ""))
        return str(local)
    if local.exists():
        raise UserError(f"{what}: {name_or_path} is a file; pass the directory that holds the model")
    if looks_like_path(name_or_path):
        raise UserError(f"{what}: {name_or_path}: no such directory")
    return name_or_path


def load_model(name_or_path: str, device: str = "auto", dtype: str = "auto", revision: str | None = None,
               what: str = "--model"):
    """(model, tokenizer) from a hub id or a local directory, in eval mode on `device`. A hub id is
    looked up in the local cache only when the hub cannot be reached (see `hub_reachable`). `what`
    names the flag or config field the name came from, for error messages."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    src = resolve_model(name_or_path, what)
    offline = not Path(src).is_dir() and not hub_reachable()
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, revision=revision, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(src, revision=revision, dtype=torch_dtype,
                                                     local_files_only=offline)
    except OSError as e:
        where = "; the hub is not reachable from here, so only the local cache was searched" if offline else ""
        raise UserError(f"{what}: cannot load {name_or_path} ({str(e).splitlines()[0][:200]}){where}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(dev).eval()
    return model, tokenizer


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """The keyword argument that hands a KV cache to `model`'s forward: `cache` in transformers releases
    that deprecate `past_key_values` (a FutureWarning on every call), `past_key_values` in older ones."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        params = {}
    return {"cache": cache} if "cache" in params else {"past_key_values": cache}


def _safetensors_digest(path: Path, h) -> None:
    """Feed `h` the tensors of a safetensors file in name order: name, dtype, shape and raw bytes. The
    header's layout and metadata do not count, so two writers of the same tensors give one digest; a
    file whose header cannot be read is hashed as bytes (so a damaged file still hashes, differently)."""
    with open(path, "rb") as f:
        try:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size)) if 0 < size < (1 << 30) else None
            tensors = sorted((k, v) for k, v in header.items() if k != "__metadata__")
            base = 8 + size
            for name, info in tensors:
                h.update(json.dumps([name, info["dtype"], info["shape"]]).encode())
                start, end = info["data_offsets"]
                f.seek(base + start)
                left = end - start
                while left > 0:
                    block = f.read(min(left, 1 << 22))
                    if not block:
                        raise ValueError("truncated")
                    h.update(block)
                    left -= len(block)
            return
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            f.seek(0)
            h.update(b"raw:")
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)


def fingerprint_files(model_dir: str | Path) -> tuple[list[Path], list[Path]]:
    """(weight files, tokenizer files) of a local model directory, sorted: what its fingerprint covers."""
    local = Path(model_dir)
    files = sorted(p for p in local.iterdir() if p.is_file())
    weights = [p for p in files if p.suffix == ".safetensors"
               or (p.suffix == ".bin" and p.name.startswith("pytorch_model"))]
    tokenizer = [p for p in files if p.name in TOKENIZER_FILES]
    extra = local / "additional_chat_templates"
    if extra.is_dir():
        tokenizer += sorted(p for p in extra.iterdir() if p.is_file())
    return weights, tokenizer


def model_fingerprint(name_or_path: str, revision: str | None = None) -> dict[str, Any]:
    """What run.json records about a model: for a local directory the sha256 over its weights and its
    tokenizer (the weight files tensor by tensor, the tokenizer's files as bytes), for a hub id the id
    and the requested revision. Files that carry wall-clock times or library versions (config.json's
    transformers_version, generation_config.json, rlvr_pretrain.json's seconds, trainer state) are left
    out, so the same weights and tokenizer always give the same hash."""
    local = Path(name_or_path).expanduser()
    if not local.is_dir():
        return {"name": name_or_path, "revision": revision, "sha256": None}
    h = hashlib.sha256()
    weights, tokenizer = fingerprint_files(local)
    for f in weights:
        h.update(b"\0weights\0" + str(f.relative_to(local)).encode() + b"\0")
        if f.suffix == ".safetensors":
            _safetensors_digest(f, h)
        else:
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
    for f in tokenizer:
        h.update(b"\0tokenizer\0" + str(f.relative_to(local)).encode() + b"\0")
        h.update(f.read_bytes())
    return {"name": local.name, "path": str(local.resolve()), "sha256": h.hexdigest()}
