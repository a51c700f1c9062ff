"""Finding the final answer in a math completion: pure string work that runs in the parent process.

Rules (benchmarks.md section 4, "Extraction"):
- `boxed`: the content of the last non-empty `\\boxed{...}` / `\\fbox{...}`, found by brace matching
  (answers nest braces: `\\frac{a}{b}`), or the token after `\\boxed ` written without braces.
- `any_boxed`: every distinct non-empty box, in order of appearance (BBG's protocol: a sample counts as
  correct if any of its boxed answers matches).
- fallbacks, off by default: `answer_is` (the text after the last "the answer is" / "final answer is"),
  then `last_number` (the last number in the text), as Qwen's `extract_answer` does.

The result is encoded as a JSON list `[rule, candidate, ...]`: that string is the verdict-cache key and the
input of `check`, so the rule that fired travels with it into the worker and into `Verdict.reason`.
"""

from __future__ import annotations

import json
import re

BOX_COMMANDS = ("\\boxed", "\\fbox")
RULES = ("boxed", "any_boxed", "answer_is", "last_number")

_WS = re.compile(r"\s+")
_ANSWER_IS = re.compile(r"(?:final answer|the answer)\s+is\s*:?\s*", re.IGNORECASE)
# Integers with thousands separators, decimals, simple fractions, with an optional sign.
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")


def _braced_group(text: str, open_at: int) -> tuple[str, int] | None:
    """The content of the `{...}` group opening at `text[open_at]` and the index after its `}`.

    `\\{` and `\\}` are literal braces in LaTeX and do not open or close groups. None when the group
    never closes (a truncated completion).
    """
    depth = 0
    i = open_at
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1:i], i + 1
        i += 1
    return None


def find_boxed(text: str) -> list[str]:
    """Contents of all `\\boxed`/`\\fbox` answers in order of appearance (empty ones included).

    A box nested inside a box is part of the outer box's content, not a separate answer.
    """
    out: list[str] = []
    i = 0
    while True:
        hits = [(text.find(cmd, i), cmd) for cmd in BOX_COMMANDS]
        hits = [(pos, cmd) for pos, cmd in hits if pos >= 0]
        if not hits:
            return out
        pos, cmd = min(hits)
        j = pos + len(cmd)
        if j < len(text) and (text[j].isalpha()):
            i = j          # another command that starts with the same letters (\boxedfoo)
            continue
        k = j
        while k < len(text) and text[k] in " \t":
            k += 1
        if k < len(text) and text[k] == "{":
            group = _braced_group(text, k)
            if group is None:
                return out
            content, i = group
            out.append(content)
        elif k > j:
            # `\boxed 5`: TeX takes one token; Qwen's parser takes the text up to the next `$`.
            m = re.match(r"[^\s$]+", text[k:])
            if m:
                out.append(m.group(0))
                i = k + m.end()
            else:
                i = k
        else:
            i = j


def _unwrap_box(s: str) -> str | None:
    """`x` when `s` is exactly `\\boxed{x}` (or `\\fbox{x}`), else None."""
    for cmd in BOX_COMMANDS:
        if s.startswith(cmd):
            rest = s[len(cmd):].lstrip()
            group = _braced_group(rest, 0) if rest.startswith("{") else None
            if group is not None and group[1] == len(rest):
                return group[0]
    return None


def normalize_answer(answer: str) -> str:
    """Canonical form of one candidate, changing nothing that could change a verdict.

    Collapses whitespace, drops enclosing `$`, trailing full stops and a redundant inner
    `\\boxed{}`, and maps `\\dfrac`/`\\tfrac` to `\\frac` and `\\mbox` to `\\text` (same meaning), so
    that repeated answers share a cache entry.
    """
    s = _WS.sub(" ", answer).strip()
    while True:
        prev = s
        s = s.strip().lstrip("$")
        while s.endswith("$") and not s.endswith("\\$"):   # keep an escaped dollar sign
            s = s[:-1]
        s = s.strip().rstrip(".").rstrip()
        inner = _unwrap_box(s)
        if inner is not None:
            s = inner
        if s == prev:
            break
    return s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\mbox{", "\\text{")


def _answer_is(text: str) -> str | None:
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end():]
    line = rest.split("\n", 1)[0].strip()
    if line.startswith("$"):
        close = line.find("$", 1)
        line = line[1:close] if close > 0 else line[1:]
    else:
        # Prose: the answer ends at the end of the sentence.
        line = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0]
    return line or None


def _last_number(text: str) -> str | None:
    nums = _NUMBER.findall(text)
    return nums[-1].replace(",", "") if nums else None


def extract_candidates(text: str, mode: str = "boxed", fallback: bool = False) -> tuple[str, list[str]] | None:
    """(rule that fired, normalised candidates) or None when the text holds no answer.

    mode: "boxed" (last box) or "any_boxed" (all distinct boxes). fallback: also try `answer_is`, then
    `last_number`, when there is no non-empty box.
    """
    if mode not in ("boxed", "any_boxed"):
        raise ValueError(f"answer mode {mode!r}: expected 'boxed' or 'any_boxed'")
    boxes = [b for b in (normalize_answer(x) for x in find_boxed(text)) if b]
    if boxes:
        if mode == "boxed":
            return "boxed", [boxes[-1]]
        return "any_boxed", list(dict.fromkeys(boxes))
    if not fallback:
        return None
    for rule, finder in (("answer_is", _answer_is), ("last_number", _last_number)):
        found = finder(text)
        if found is not None and normalize_answer(found):
            return rule, [normalize_answer(found)]
    return None


def encode(rule: str, candidates: list[str]) -> str:
    """The cache key / `check` input: a JSON list `[rule, candidate, ...]`."""
    return json.dumps([rule, *candidates], ensure_ascii=False)


def decode(extracted: str) -> tuple[str, list[str]]:
    """Inverse of `encode`; raises ValueError on anything `encode` cannot have produced."""
    try:
        value = json.loads(extracted)
    except json.JSONDecodeError:
        value = None
    if (not isinstance(value, list) or len(value) < 2 or value[0] not in RULES
            or not all(isinstance(v, str) for v in value)):
        raise ValueError(f"not an extracted math answer: {extracted[:80]!r}")
    return value[0], value[1:]
