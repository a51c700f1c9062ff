"""Rendering a prompt: a raw string fixed by a paper, or the model's own chat template.

Papers differ here and scores move by points between templates, so every run records the template
name and a hash of the rendered prompts (benchmarks.md section 3).
"""

from __future__ import annotations

from typing import Any

CHATML_TURN = "<|im_start|>{role}\n{content}<|im_end|>\n"


def chatml(system: str | None, user: str, assistant_prefix: str = "") -> str:
    """The raw ChatML string (Qwen family), applied as text whatever the tokenizer is, as the NSR and
    CaSP code do (`prompt_template_type: qwen`)."""
    out = CHATML_TURN.format(role="system", content=system) if system is not None else ""
    out += CHATML_TURN.format(role="user", content=user)
    return out + "<|im_start|>assistant\n" + assistant_prefix


def with_chat_template(tokenizer: Any, system: str | None, user: str, assistant_prefix: str = "") -> str:
    """The tokenizer's own chat template with a generation prompt; falls back to a plain
    `system\\n\\nuser\\n` text when the tokenizer has none (base models)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + assistant_prefix
    head = f"{system}\n\n" if system else ""
    return f"{head}{user}\n{assistant_prefix}"


def chat_or_chatml(tokenizer: Any, system: str | None, user: str) -> str:
    """The tokenizer's chat template when a tokenizer is given, else the raw ChatML string (the form the
    Qwen-based papers use)."""
    return with_chat_template(tokenizer, system, user) if tokenizer is not None else chatml(system, user)
