"""The math tasks: AIME 2024/2025, AMC 2023, MATH-500, Minerva Math, OlympiadBench and the full MATH test.

Prompt templates (benchmarks.md section 3), selected by name and recorded by the run:
- `qwen_boxed` (default): raw ChatML, system "You are a helpful assistant.", user
  `{problem}\\nPlease reason step by step, and put your final answer within \\boxed{}.`; the template
  of the NSR and CaSP code (`prompt_template_type: qwen`).
- `qwen25_math_cot`: the Qwen2.5-Math evaluation template, the instruction in the system turn.
- `chat`: the tokenizer's own chat template, user turn as in `qwen_boxed`.
- `simple`: `Question:\\n{problem}\\nAnswer:\\nLet's think step by step.\\n`, for base models.
- `qwen_boxed_hints` (OlympiadBench only): `qwen_boxed` plus the answer-format hints of the official
  OlympiadBench prompt (answer type, several answers, unit), written in our own words.

Checking is math-verify: `verify(parse(gold), parse(pred))`, gold first (its comparison is
asymmetric). Both sides are parsed from `\\boxed{...}` so that they go through the same normalisation.
`answers_match` adds two rules for forms math-verify misreads: a numeral with its base as a subscript
(`1011_2`, MATH's number theory) is compared by its value, and a column vector (`pmatrix`) matches the
same entries written as a tuple `(1, 2)`.
`check` runs in a verifier-pool worker's main thread, where math-verify's signal-based timeouts work.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import math
import re
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import sympy
from math_verify import parse, verify
from math_verify.errors import TimeoutException
from math_verify.utils import timeout
from rlvr.tasks import register
from rlvr.tasks.base import HubSource, Problem, Task, Verdict, VerifierError
from rlvr.tasks.errors import UserError
from rlvr.tasks.loading import load_records
from rlvr.tasks.math_extract import decode, encode, extract_candidates, find_boxed, normalize_answer
from rlvr.tasks.templates import chatml, with_chat_template

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
QWEN_SYSTEM = "You are a helpful assistant."
MATH_TEMPLATES = ("qwen_boxed", "qwen25_math_cot", "chat", "simple")

# math-verify's own per-call limits (whole seconds: it uses signal.alarm). Three calls at most per
# candidate (gold parse, cached; pred parse; verify), which stays under the pool's default deadline.
PARSE_TIMEOUT_S = 3
VERIFY_TIMEOUT_S = 3

# Minerva golds are mostly rounded to 2-3 significant figures ("to two significant figures"), and the
# model's own rounding of the same value can differ in the last digit. A number matches when it is within
# 1% of the gold AND within half a unit of the last digit of the coarser of the two as written: 9.62 and
# 9.648 match 9.6, 4.5e33 matches 4.46e33, but 9.69 does not match 9.6 and 15626 does not match the exact
# 15625 (1% alone accepted both). The Qwen grader uses 1e-4, which marks such roundings wrong; math-verify
# alone compares to 6 decimal places.
MINERVA_REL_TOL = 1e-2

# Stored golds that no parser can read as intended; each fix says why. Keyed by (task, problem id).
GOLD_FIXES: dict[tuple[str, str], tuple[str, str]] = {
    ("olympiadbench", "2045"): ("(0,4]", "stored as 't(0,4]': the '\\in' of 't \\in (0,4]' was lost"),
    ("olympiadbench", "1965"): ("f(x)=ax+b",
                                "stored as a sentence whose last formula, '\\mho(a)=0', is what a parser reads "
                                "(gold 0); the answer is the family f(x)=ax+b (its conditions on a, b go unchecked)"),
    ("olympiadbench", "1760"): ("90^{\\circ},90^{\\circ}",
                                "stored as two equations '\\angle BEA_1=90,\\angle AEB_1=90'; the question "
                                "asks for the two angles"),
}


# ---------------------------------------------------------------------------------------------------
# gold answers


def _drop_unescaped_dollars(s: str) -> str:
    return re.sub(r"(?<!\\)\$", "", s)


_SCI = re.compile(r"(?<![\w.\\{])(\d+(?:\.\d*)?)[eE]([+-]?\d+)(?![\w.])")


def sci_to_latex(s: str) -> str:
    """`4.5e33` -> `4.5\\times10^{33}`: math-verify reads the `e` of Python notation as Euler's number
    (Minerva golds are written this way, and models copy the style)."""
    return _SCI.sub(lambda m: f"{m.group(1)}\\times10^{{{m.group(2)}}}", s)


def gold_string(raw: Any) -> str:
    """The stored gold as a LaTeX answer string.

    AMC23 stores floats (`27.0`); OlympiadBench a one-element list of `$...$` fragments joined by
    `$,$`; a few Minerva golds are Python (`np.arcsin(10/13)`, `-1./3`).
    """
    if isinstance(raw, list | tuple):
        raw = ",".join(gold_string(x) for x in raw)
    if isinstance(raw, bool):
        raise TypeError(f"gold answer {raw!r} is not a number or string")
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float):
        return str(int(raw)) if raw.is_integer() else repr(raw)
    s = _drop_unescaped_dollars(str(raw)).strip()
    s = re.sub(r"\bnp\.(?=[a-z])", "\\\\", s)       # np.arcsin -> \arcsin
    s = re.sub(r"(\d)\.(?=[/*)\s]|$)", r"\1", s)      # Python floats: -1./3 -> -1/3
    return normalize_answer(s)                         # as the candidates are


# ---------------------------------------------------------------------------------------------------
# checking (worker side)


def _timeouts() -> tuple[int | None, int | None]:
    # math-verify's alarms raise in a non-main thread; there (a caller's own thread pool) run without
    # them and rely on the caller for the deadline. The verifier pool always calls from a main thread.
    if threading.current_thread() is threading.main_thread():
        return PARSE_TIMEOUT_S, VERIFY_TIMEOUT_S
    return None, None


class AnswerTimeout(Exception):
    """math-verify timed out on an answer twice, the second time with twice the budget: the answer itself is
    too hard to read or compare (a power tower, Math-Verify#65), not a slow moment of the machine. The
    checker scores that candidate as not matching, with the reason saying so; on the gold side it is a
    VerifierError (a gold must always be readable)."""


# answers math-verify timed out on twice: not tried again in this process
_TIMED_OUT: set[tuple] = set()


def _twice(what: tuple, run, budget: int | None):
    """run(budget), and once more with twice the budget when math-verify's alarm fires: a timeout on a
    loaded machine (or a first call that pays lazy imports inside the alarm) gets a second, longer try and
    is then the true result, never the [] / False math-verify returns at its alarm. A second timeout raises
    AnswerTimeout (remembered per process, so a pathological answer costs its time once)."""
    if what in _TIMED_OUT:
        raise AnswerTimeout(what[0])
    try:
        return run(budget)
    except TimeoutException:
        if budget is None:
            raise
    try:
        return run(2 * budget)
    except TimeoutException:
        _TIMED_OUT.add(what)
        raise AnswerTimeout(f"math-verify timed out twice ({budget} s, then {2 * budget} s)") from None


def _mv_parse(text: str, parse_timeout: int | None) -> list:
    """math-verify's `parse`, with `_twice`'s timeout rule instead of the empty parse math-verify returns at
    its alarm (which reads as a wrong answer and, memoised, would stay one). Any other parser failure is an
    unreadable answer, [] as in math-verify."""
    def run(budget):
        try:
            return parse(text, parsing_timeout=budget, raise_on_error=True)
        except Exception:
            return []
    return _twice(("parse", text), run, parse_timeout)


def _mv_verify(gold: list, pred: list, verify_timeout: int | None, **kw) -> bool:
    """math-verify's `verify` (any pair of gold and candidate parses equal), with `_twice`'s timeout rule per
    pair instead of the False math-verify returns at its alarm. Any other failure of one comparison makes
    that pair unequal, as in math-verify."""
    for g, t in itertools.product(gold, pred):
        def run(budget, g=g, t=t):
            try:
                return verify([g], [t], timeout_seconds=budget, raise_on_error=True, **kw)
            except Exception:
                return False
        if _twice(("verify", str(g), str(t), tuple(sorted(kw.items()))), run, verify_timeout):
            return True
    return False


@functools.lru_cache(maxsize=8192)
def parse_answer(answer: str) -> tuple:
    """math-verify's parse of one answer string (gold or candidate), memoised per process (AnswerTimeout is
    raised, not memoised; `_TIMED_OUT` remembers it)."""
    parse_timeout, _ = _timeouts()
    return tuple(_mv_parse("\\boxed{" + sci_to_latex(answer) + "}", parse_timeout))


@functools.lru_cache(maxsize=8192)
def parse_gold(gold: str) -> tuple:
    """Gold parse; when the whole gold is unreadable but is an equation (`m_{\\max}=n^2-n-1`), its right
    side is added, as math-verify itself compares `x=3` with `3` by the right side."""
    try:
        parsed = parse_answer(gold)
    except AnswerTimeout as e:
        raise VerifierError(f"the gold answer {gold[:80]!r} could not be parsed: {e}") from None
    if not any(isinstance(p, sympy.Basic | sympy.MatrixBase) for p in parsed) and "=" in gold:
        parsed = parsed + parse_answer(gold.rsplit("=", 1)[1])
    return parsed


def _real_value(parsed: tuple) -> float | None:
    """The value of the first parsed element when it is a plain real number (or `x = number`)."""
    for p in parsed:
        if isinstance(p, sympy.Eq) and isinstance(p.lhs, sympy.Symbol):
            p = p.rhs
        if isinstance(p, sympy.Expr) and p.is_number:
            if any(isinstance(a.exp, sympy.Pow) for a in p.atoms(sympy.Pow)):
                return None   # a power tower: N() can run for ever inside C, where no alarm reaches it
            try:
                z = complex(sympy.N(p, 17))
            except (TypeError, ValueError):
                return None
            if z.imag == 0 and math.isfinite(z.real):
                return z.real
            return None
        if isinstance(p, sympy.Basic | sympy.MatrixBase):
            return None
    return None


def answers_match(gold: str, candidate: str, rel_tol: float | None = None, abs_tol: float | None = None) -> bool:
    """Is `candidate` (an extracted answer) equivalent to the gold answer string?

    1. When either side is a numeral in a stated base (`base_value`), the two sides are compared by value
       and math-verify's own reading (which drops the subscript) is not used: see `_base_match`.
    2. math-verify.
    3. When one side is a column vector and the other a tuple of as many entries, the tuple is read as
       that column vector (`_vector_match`).
    4. When the task allows a numeric tolerance and both sides are plain real numbers,
       |pred - gold| <= max(rel_tol * |gold|, abs_tol).
    """
    _, verify_timeout = _timeouts()
    gold_base, cand_base = base_value(gold), base_value(candidate)
    if gold_base is not None or cand_base is not None:
        return _base_match(gold, candidate, gold_base, cand_base, verify_timeout)
    gold_parsed = parse_gold(gold)
    pred_parsed = parse_answer(candidate)
    if not gold_parsed or not pred_parsed:
        return False
    if _mv_verify(list(gold_parsed), list(pred_parsed), verify_timeout, allow_set_relation_comp=True):
        return True
    vector = _vector_match(gold, candidate, gold_parsed, pred_parsed, verify_timeout)
    if vector is not None:
        return vector
    if rel_tol is None and abs_tol is None:
        return False
    units = [u for u in (_half_unit(gold), _half_unit(candidate)) if u is not None]
    half = max(units) if units else None

    def run(budget):
        return timeout(budget)(_within_tolerance)(gold_parsed, pred_parsed, rel_tol, abs_tol, half)
    return _twice(("tolerance", gold, candidate, rel_tol, abs_tol), run, verify_timeout)


def _within_tolerance(gold_parsed: tuple, pred_parsed: tuple, rel_tol: float | None, abs_tol: float | None,
                      half_unit: float | None = None) -> bool:
    """|pred - gold| <= max(rel_tol * |gold|, abs_tol), the relative part capped at `half_unit` (half a unit
    of the last written digit of the coarser number) when known."""
    g, p = _real_value(gold_parsed), _real_value(pred_parsed)
    if g is None or p is None:
        return False
    rel = (rel_tol or 0.0) * abs(g)
    if half_unit is not None:
        rel = min(rel, half_unit)
    return abs(p - g) <= max(rel, abs_tol or 0.0)


# ---------------------------------------------------------------------------------------------------
# numerals in a stated base

# After `\\text{}`-like wrappers and spaces are dropped: an optional sign, the digits (0-9 and capital
# letters, with a fractional part or not, bare or in parentheses), `_`, and the base: a decimal number
# (`_2`, `_{11}`, `_{(8)}`) or one lowercase letter (`_b`, for "in base b").
MAX_BASE_DIGITS = 256    # longer digit strings are read as math-verify reads them (int() refuses > 4300)
_BASE_DIGITS = r"[+-]?[0-9A-Z]+(?:\.[0-9A-Z]+)?"
_BASE_SUBSCRIPT = r"\d+|[a-z]"
_BASE_NUMERAL = re.compile(rf"([+-]?)(?:({_BASE_DIGITS})|\(({_BASE_DIGITS})\))"
                           rf"_(?:({_BASE_SUBSCRIPT})|\{{({_BASE_SUBSCRIPT})\}}|\{{\(({_BASE_SUBSCRIPT})\)\}})")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textrm|textnormal|mathrm|mbox)\s*\{([^{}]*)\}")


@functools.lru_cache(maxsize=8192)
def base_value(answer: str) -> sympy.Expr | None:
    """The value of `answer` when the whole answer is one numeral with its base as a subscript, else None.

    The forms of MATH's number-theory golds and of models' answers: `1011_2`, `1011_{2}`, `4210_{5}`,
    `\\text{4210}_{5}`, `(1011)_2`, `1011_{(2)}`, `-221_3` (= -25), `0.0011_{2}` (= 3/16), `152A_{11}`
    (capital letters are the digits from 10 up); `321_b` (a base named by a letter) is the polynomial
    3b^2 + 2b + 1. The digits must hold at least one of 0-9 (`A_{11}`, `F_n` are indexed names), a
    numeric base lies in 2..36 and exceeds every digit (`1012_2` is not a numeral: its subscript is not
    a base), and a letter base takes the digits 0-9 only.
    """
    s = re.sub(r"\s+", "", _TEXT_WRAPPER.sub(r"\1", answer)).replace("\\left(", "(").replace("\\right)", ")")
    m = _BASE_NUMERAL.fullmatch(s)
    if m is None:
        return None
    digits = m.group(2) or m.group(3)
    base = m.group(4) or m.group(5) or m.group(6)
    negative = (m.group(1) + digits[:1]).count("-") % 2 == 1
    digits = digits.lstrip("+-")
    if not any(ch.isdigit() for ch in digits) or len(digits) > MAX_BASE_DIGITS:
        return None
    whole, _, frac = digits.partition(".")
    if base.isdigit():
        b = int(base)
        if not 2 <= b <= 36 or any(int(ch, 36) >= b for ch in whole + frac):
            return None
        value = sympy.Integer(int(whole, b)) + sympy.Rational(int(frac or "0", b), b ** len(frac))
    else:
        if not (whole + frac).isdigit():
            return None
        x = sympy.Symbol(base, real=True)   # as math-verify makes its symbols
        value = sympy.Add(*(int(ch) * x ** k for k, ch in enumerate(reversed(whole))),
                          *(int(ch) * x ** -(k + 1) for k, ch in enumerate(frac)))
    return -value if negative else value


def _base_match(gold: str, candidate: str, gold_base: sympy.Expr | None, cand_base: sympy.Expr | None,
                verify_timeout: int | None) -> bool:
    """Compare by value when either side is a numeral in a stated base (`base_value`).

    The rule: a numeral means its value, and an answer without a base subscript is read as usual, in base
    10. So against the gold `1011_2` (eleven) the answers `1011_2`, `1011_{2}`, `\\text{1011}_2`, `11`,
    `11_{10}` and `102_3` are correct, and `1011_3` (31) and a bare `1011` (one thousand and eleven) are
    not; the same the other way round (gold `11`: `1011_2` correct, gold `1011`: `1011_2` not).
    Why: MATH writes every gold in a base other than 10 with its subscript (34 in MATH and MATH-500) and
    its base-10 golds without one ("Express your answer in base 10"), so a bare number is a base-10 number
    there too. The right value in base 10 where the question asked for base 2 is accepted, as the rest
    of the checker judges values and not forms (math-verify accepts `0.5` where the question asks for a
    common fraction); the gold's digits read in a wrong base, which math-verify alone accepts (it drops
    the subscript), never are.
    """
    if gold_base is not None and cand_base is not None:
        return sympy.expand(gold_base - cand_base) == 0
    if gold_base is not None:
        gold_parsed, pred_parsed = (gold_base,), parse_answer(candidate)
    else:
        gold_parsed, pred_parsed = parse_gold(gold), (cand_base,)
    if not gold_parsed or not pred_parsed:
        return False
    return _mv_verify(list(gold_parsed), list(pred_parsed), verify_timeout, allow_set_relation_comp=True)


# ---------------------------------------------------------------------------------------------------
# column vectors written as tuples

_TRANSPOSE = re.compile(r"\^\s*(?:\{\s*(?:T|\\top|\\intercal|\\mathsf\{T\})\s*\}|T|\\top|\\intercal)$")
_VECTOR_BRACKETS = (("(", ")"), ("\\langle", "\\rangle"))


def tuple_entries(answer: str) -> list[str] | None:
    """The entries of `answer` when it is one tuple of two or more entries: `(1, 2)`, `\\left(1,2\\right)`,
    `\\langle 1, 2 \\rangle`, and their transposes `(1, 2)^T`; else None. `(1,2),(3,4)` (two tuples) and
    `[1, 2]` (an interval) are not one tuple."""
    s = re.sub(r"\\(?:left|right)(?![a-zA-Z])\s*", "", answer).strip()
    s = _TRANSPOSE.sub("", s).strip()
    for open_, close in _VECTOR_BRACKETS:
        if not (s.startswith(open_) and s.endswith(close)):
            continue
        inner = s[len(open_):len(s) - len(close)]
        entries, depth, start, i = [], 0, 0, 0
        while i < len(inner):
            ch = inner[i]
            if ch == "\\":
                i += 2
                continue
            if ch in "({[":
                depth += 1
            elif ch in ")}]":
                depth -= 1
                if depth < 0:
                    return None          # the opening bracket closes before the end: not one tuple
            elif ch == "," and depth == 0:
                entries.append(inner[start:i].strip())
                start = i + 1
            i += 1
        entries.append(inner[start:].strip())
        if depth == 0 and len(entries) >= 2 and all(entries):
            return entries
        return None
    return None


def _column_length(parsed: tuple) -> int | None:
    """n when math-verify read the answer as an n x 1 matrix (a column vector), n >= 2, or as `name = ` one."""
    for p in parsed:
        if isinstance(p, sympy.Eq):
            p = p.rhs
        if isinstance(p, sympy.MatrixBase):
            return p.shape[0] if p.shape[1] == 1 and p.shape[0] >= 2 else None
        if isinstance(p, sympy.Basic):
            return None
    return None


def _as_column(entries: list[str]) -> tuple:
    return parse_answer("\\begin{pmatrix}" + " \\\\ ".join(entries) + "\\end{pmatrix}")


def _vector_match(gold: str, candidate: str, gold_parsed: tuple, pred_parsed: tuple,
                  verify_timeout: int | None) -> bool | None:
    """A column vector against a tuple of as many entries, the tuple read as that column vector, entry by
    entry and in order (MATH writes vectors as `pmatrix` columns; models often write `(1, 2)`). Either side
    may be the vector, and either may be written `v = ...` (math-verify compares such an equation by its
    right side). None when the rule does not apply: neither side a column vector, the other side not
    one tuple, or another number of entries. A row vector or a square matrix is never read as a tuple (a
    row and a column vector with the same entries stay different matrices, as in math-verify)."""
    for vector_parsed, other, vector_is_gold in ((gold_parsed, candidate, True), (pred_parsed, gold, False)):
        n = _column_length(vector_parsed)
        entries = tuple_entries(other.rsplit("=", 1)[-1]) if n else None   # `v = (1, 2)`: the right side
        if entries is None or len(entries) != n:
            continue
        column = _as_column(entries)
        if not column:
            return False
        g, p = (vector_parsed, column) if vector_is_gold else (column, vector_parsed)
        return _mv_verify(list(g), list(p), verify_timeout)
    return None


_WRITTEN_NUMBER = re.compile(r"^\$?\s*[-+]?(\d*)(?:\.(\d*))?\s*(?:(?:[eE]|\\times\s*10\s*\^|\\cdot\s*10\s*\^|\*\s*10\s*\^)"
                             r"\s*\{?\s*([-+]?\d+)\s*\}?)?\s*\$?$")


def _half_unit(text: str) -> float | None:
    """Half a unit of the last digit of a number as written (`9.6` -> 0.05, `4.5e33` and
    `4.5\\times 10^{33}` -> 5e31, `15625` -> 0.5), or None when `text` is not a plain written number."""
    m = _WRITTEN_NUMBER.match(text.strip().replace(",", ""))
    if m is None or not (m.group(1) or m.group(2)):
        return None
    decimals = len(m.group(2) or "")
    return 0.5 * 10.0 ** (int(m.group(3) or 0) - decimals)


_PLAIN_NUMBER = re.compile(r"([+-]?)(\d+(?:\.\d+)?)")
_PLAIN_FRACTION = re.compile(r"([+-]?)\\[dt]?frac\{(\d+)\}\{([1-9]\d*)\}")


@functools.lru_cache(maxsize=65536)
def vote_key(answer: str) -> str:
    """A canonical form of an extracted math answer for majority voting (`Task.answer_key`): answers
    with the same key are one vote.

    Read as `answers_match` reads them: a numeral in a stated base by its value (`1011_2` and `11` are one
    answer), else math-verify's parse. A plain real number is keyed by its value to 12 significant digits
    (`0.5`, `1/2` and `\\frac{1}{2}` are one answer), any other parsed expression by sympy's canonical
    printing of it (`x^2+1` and `1+x^2` are one answer). Answers math-verify cannot parse are keyed by their
    text with whitespace collapsed. The key is an equivalence (it is transitive), slightly coarser than
    nothing and finer than math-verify's pairwise `verify`, which may hold two answers equal whose keys differ
    (`\\sqrt{2}/2` and `1/\\sqrt{2}` share a value, so they share a key; two equal sets written in different
    orders may not): such answers then split their votes."""
    text = " ".join(answer.split())
    plain = _PLAIN_NUMBER.fullmatch(text) or _PLAIN_FRACTION.fullmatch(text)
    if plain is not None:   # most answers: the value without a parse (same key as the parse gives)
        sign = -1 if plain.group(1) == "-" else 1
        value = Fraction(plain.group(2)) / (Fraction(plain.group(3)) if plain.lastindex == 3 else 1)
        if value.denominator and math.isfinite(float(value)):
            return f"={sign * float(value) + 0.0:.12g}"
    try:
        base = base_value(answer)
        parsed = (base,) if base is not None else parse_answer(answer)
        value = _real_value(parsed) if parsed else None
        if value is not None:
            return f"={value + 0.0:.12g}"
        first = next((p for p in parsed if isinstance(p, sympy.Basic | sympy.MatrixBase)), None)
        if first is not None:
            return f"~{first}"
    except (Exception, TimeoutException):    # an answer the parser chokes on votes as written
        pass
    return text


def warm_up() -> None:
    """Run by verifier-pool workers before they take items: math-verify compiles its extraction regexes
    and sympy loads lazily on first use, which would otherwise be charged to the first item's deadline."""
    answers_match("\\frac{1}{2}", "0.5")
    answers_match("(1,2]", "x=3")


# ---------------------------------------------------------------------------------------------------
# row adapters


def _text_id(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _first(row: dict, *fields: str) -> Any:
    for f in fields:
        if row.get(f) is not None:
            return row[f]
    return None


def _verl_ground_truth(row: dict) -> tuple[str | None, Any]:
    """(question, target) of a verl-format row (`reward_model.ground_truth`, a dict or a bare answer)."""
    gt = (row.get("reward_model") or {}).get("ground_truth")
    if isinstance(gt, dict):
        return gt.get("question"), gt.get("target")
    return None, gt


def _verl_prompt_text(row: dict) -> str | None:
    prompt = row.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        return prompt[-1].get("content")
    return None


# ---------------------------------------------------------------------------------------------------
# the tasks


class MathTask(Task):
    """A math benchmark: `problem` text in, a `\\boxed{}` answer out, checked with math-verify.

    Extraction options (they change the extracted string, hence the cache key, and are encoded in it,
    so `check` in a worker needs no options):
      answer_mode: "boxed" (last box, default) or "any_boxed" (correct if any box matches; BBG).
      fallback:    also accept "the answer is ..." and then the last number when there is no box
                   (Qwen's extractor); OFF by default, as most RLVR evaluations mark unboxed answers
                   wrong. `Verdict.reason` names the rule that fired.
    Use `task.with_options(...)` for a configured copy; the registered instance keeps the defaults.
    """

    domain = "math"
    templates = MATH_TEMPLATES
    answer_mode = "boxed"
    fallback = False
    eval_gold_from_solution = False       # True: the evaluation split's gold is the solution's last box
    eval_options = ("answer_mode", "fallback")
    rel_tol: float | None = None
    id_fields: tuple[str, ...] = ("id",)
    text_fields: tuple[str, ...] = ("problem", "question", "Problem")
    answer_fields: tuple[str, ...] = ("answer", "Answer")
    meta_fields: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.last_source: dict | None = None   # provenance of the last `load` (recorded in run.json)

    # -- options -------------------------------------------------------------------------------------
    def with_options(self, answer_mode: str | None = None, fallback: bool | None = None) -> MathTask:
        if answer_mode is not None and answer_mode not in ("boxed", "any_boxed"):
            raise UserError(f"task {self.name}: answer_mode {answer_mode!r} is not one of boxed, any_boxed")
        out = copy.copy(self)
        if answer_mode is not None:
            out.answer_mode = answer_mode
        if fallback is not None:
            out.fallback = bool(fallback)
        return out

    # -- data ----------------------------------------------------------------------------------------
    def load(self, data_dir: str | Path | None = None) -> list[Problem]:
        rows, source = load_records(self, data_dir)
        problems = [self.problem_from_row(row, evaluation=True) for row in rows]
        seen: set[str] = set()
        for p in problems:
            if p.id in seen:
                raise UserError(f"task {self.name}: problem id {p.id!r} occurs twice in {source.get('path', source)}")
            seen.add(p.id)
        self.last_source = source
        return problems

    def row_text(self, row: dict) -> str | None:
        text = _first(row, *self.text_fields)
        return text if text is not None else (_verl_ground_truth(row)[0] or _verl_prompt_text(row))

    def row_answer(self, row: dict) -> Any:
        answer = _first(row, *self.answer_fields)
        if answer is None:
            answer = _verl_ground_truth(row)[1]
        if (answer is None or answer == "") and isinstance(row.get("solution"), str):
            # The gold is the solution's last box, as NSR and Qwen's parser take it (one MATH row has an
            # empty stored answer because its box holds `\mbox{Saturday}`).
            boxes = find_boxed(row["solution"])
            answer = boxes[-1] if boxes else answer
        return answer

    def row_id(self, row: dict, text: str) -> str:
        raw = _first(row, *self.id_fields)
        if raw is None:
            raw = (row.get("extra_info") or {}).get("index")
        return str(raw) if raw is not None else _text_id(text)

    def row_meta(self, row: dict) -> dict[str, Any]:
        return {f: row[f] for f in self.meta_fields if row.get(f) is not None}

    def problem_from_row(self, row: dict, evaluation: bool = False) -> Problem:
        """One data row (local copy or hub schema) -> Problem. `evaluation`: a row of the evaluation split
        (`load`), where a task with `eval_gold_from_solution` takes the gold from the solution's last box."""
        text = self.row_text(row)
        raw_answer = self.row_answer(row)
        solution_box = None
        if evaluation and self.eval_gold_from_solution and isinstance(row.get("solution"), str):
            boxes = [b.strip().removesuffix(".").strip() for b in find_boxed(row["solution"])]
            boxes = [b for b in boxes if b]      # a sentence's full stop inside the box is not the answer's
            solution_box = boxes[-1] if boxes else None
        if not isinstance(text, str) or raw_answer is None:
            raise UserError(f"task {self.name}: a row lacks the problem text ({'/'.join(self.text_fields)}) "
                            f"or the answer ({'/'.join(self.answer_fields)}); row keys: {sorted(row)}")
        pid = self.row_id(row, text)
        gold = gold_string(raw_answer)
        meta = self.row_meta(row)
        if solution_box is not None and solution_box != gold:
            meta["gold_stored"] = gold
            gold = solution_box
        if (self.name, pid) in GOLD_FIXES:
            meta["gold_stored"] = gold
            gold = GOLD_FIXES[(self.name, pid)][0]
        return Problem(id=pid, task=self.name, text=text, answer=gold, meta=meta)

    # -- prompts -------------------------------------------------------------------------------------
    def prompt_text(self, problem: Problem, template: str) -> str:
        return problem.text

    def prompt(self, problem: Problem, template: str | None = None, tokenizer: Any = None) -> str:
        template = template or self.templates[0]
        if template not in self.templates:
            raise UserError(f"task {self.name}: unknown template {template!r}; "
                            f"choose one of {', '.join(self.templates)}")
        text = self.prompt_text(problem, template)
        if template in ("qwen_boxed", "qwen_boxed_hints"):
            return chatml(QWEN_SYSTEM, f"{text}\n{BOXED_INSTRUCTION}")
        if template == "qwen25_math_cot":
            return chatml(BOXED_INSTRUCTION, text)
        if template == "chat":
            return with_chat_template(tokenizer, None, f"{text}\n{BOXED_INSTRUCTION}")
        return f"Question:\n{text}\nAnswer:\nLet's think step by step.\n"   # simple

    # -- verification --------------------------------------------------------------------------------
    def extract(self, problem: Problem, completion: str) -> str | None:
        found = extract_candidates(completion, self.answer_mode, self.fallback)
        return None if found is None else encode(*found)

    def answer_key(self, problem_id: str, extracted: str) -> str:
        return vote_key(extracted)

    def check(self, problem: Problem, extracted: str) -> Verdict:
        rule, candidates = decode(extracted)
        abs_tol = problem.meta.get("abs_tol")
        timed_out = None
        for cand in candidates:
            try:
                if answers_match(str(problem.answer), cand, self.rel_tol, abs_tol):
                    return Verdict(True, 1.0, cand, _reason("ok", rule))
            except AnswerTimeout as e:    # the candidate is too hard to read or compare: not a match
                timed_out = str(e)
        reason = _reason("mismatch", rule)
        return Verdict(False, 0.0, candidates[-1], reason + (f"; {timed_out}" if timed_out else ""))


def _reason(outcome: str, rule: str) -> str:
    return outcome if rule == "boxed" else f"{outcome} ({rule})"


@register
class AIME24(MathTask):
    name = "aime24"
    local_dir = "aime24"
    hub = HubSource("HuggingFaceH4/aime_2024", split="train")


@register
class AIME25(MathTask):
    name = "aime25"
    local_dir = "aime25"
    hub = HubSource("TianHongZXY/AIME2025", split="test")   # verl format: prompt / reward_model


@register
class AMC23(MathTask):
    name = "amc23"
    local_dir = "amc23"
    hub = HubSource("math-ai/amc23", split="test")


@register
class MATH500(MathTask):
    name = "math500"
    local_dir = "math500"
    hub = HubSource("HuggingFaceH4/MATH-500", split="test")
    id_fields = ("unique_id",)
    meta_fields = ("subject", "level")


@register
class MinervaMath(MathTask):
    name = "minerva_math"
    local_dir = "minerva_math"
    # The hub copy has `question`/`answer` and no `idx`: its ids are text hashes, unlike the local idx.
    hub = HubSource("math-ai/minervamath", split="test")
    id_fields = ("idx",)
    meta_fields = ("type",)
    rel_tol = MINERVA_REL_TOL


_OLYMPIAD_TYPES = {"Numerical": "a numerical value", "Expression": "an expression",
                   "Equation": "an equation", "Interval": "an interval", "Tuple": "a tuple"}


@register
class OlympiadBench(MathTask):
    name = "olympiadbench"
    local_dir = "olympiadbench"
    hub = HubSource("Hothan/OlympiadBench", name="OE_TO_maths_en_COMP", split="train")
    templates = MATH_TEMPLATES + ("qwen_boxed_hints",)
    text_fields = ("question",)
    answer_fields = ("final_answer",)
    meta_fields = ("is_multiple_answer", "unit", "answer_type", "subfield")

    def row_text(self, row: dict) -> str | None:
        text = super().row_text(row)
        context = row.get("context")
        return f"{context}\n{text}" if context and text is not None else text

    def row_meta(self, row: dict) -> dict[str, Any]:
        meta = super().row_meta(row)
        if row.get("error"):
            # OlympiadBench's judge treats `error` as an absolute tolerance on numerical answers.
            meta["abs_tol"] = float(row["error"])
        return meta

    def prompt_text(self, problem: Problem, template: str) -> str:
        if template != "qwen_boxed_hints":
            return problem.text
        kind = _OLYMPIAD_TYPES.get(problem.meta.get("answer_type", ""), "")
        if problem.meta.get("is_multiple_answer"):
            hint = "This problem has several answers" + (f", each of them {kind}" if kind else "") + \
                   "; give all of them in the box, separated by commas."
        else:
            hint = f"The answer is {kind}." if kind else ""
        unit = problem.meta.get("unit")
        if unit:
            hint += f" The answer is measured in {_drop_unescaped_dollars(unit)}; leave the unit out of the box."
        return f"{problem.text}\n{hint.strip()}" if hint.strip() else problem.text


@register
class MATH(MathTask):
    """The full 5,000-problem MATH test split that NSR evaluates on (not part of the CaSP suite)."""

    name = "math"
    local_dir = "math"
    # NSR's eval script takes MATH's gold from the reference solution's last box (benchmarks.md 2.3); the
    # stored `answer` (verl's ground truth, which training rows keep using) lost backslashes and units in
    # about 95 rows (pmatrix rows, `864^2` for `864 \mbox{ inches}^2`, ...)
    eval_gold_from_solution = True
    hub = HubSource("TianHongZXY/MATH", split="test")    # verl format: prompt / reward_model
    meta_fields = ("level", "type")
