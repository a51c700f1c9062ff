"""The micro world: procedurally generated, verifiable tasks in the three domains, small enough that a
model trained from scratch on a CPU learns them in minutes.

    micro_arith  (math)   "Compute ((3+4)*2)-5."          answer in \\boxed{}, checked by the math verifier
    micro_order  (logic)  "B>A. C>B. Order from smallest."  answer in <answer></answer>, checked for
                                                            consistency with every stated relation
    micro_code   (code)   "f(1)=5. f(2)=7. Write f."        answer `return <expr>`, run in the code sandbox
                                                            against held-out inputs

Every family has a training split (for the base model's pre-training and for RL) and a held-out
evaluation split, both pure functions of (family, split, index) and of `MICRO_VERSION`. Evaluation
problems are never in a training split (checked by text). `solution(problem, rng, error_rate)` writes a
worked solution in the family's format; with error_rate > 0 some steps go wrong and the mistake is
carried through (the base model learns a noisy solver, the starting point RLVR papers assume).
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from rlvr.tasks import register
from rlvr.tasks.base import Problem, Task, Verdict

MICRO_VERSION = "micro-v1"
EVAL_SIZE = {"micro_arith": 64, "micro_order": 64, "micro_code": 64}


def _rng(family: str, split: str, index: int) -> random.Random:
    digest = hashlib.blake2b(f"{MICRO_VERSION}|{family}|{split}|{index}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


class MicroTask(Task):
    """A generated family. Subclasses implement `generate(rng) -> (text, answer, meta)`, `solution`,
    `extract` and `check`."""

    local_dir = ""
    hub = None
    templates = ("micro",)

    def problem(self, split: str, index: int) -> Problem:
        text, answer, meta = self.generate(_rng(self.name, split, index))
        return Problem(id=f"{split}-{index}", task=self.name, text=text, answer=answer,
                       meta={**meta, "version": MICRO_VERSION})

    def load(self, data_dir=None) -> list[Problem]:
        self.last_source = {"kind": "generated", "version": MICRO_VERSION, "split": "eval",
                            "size": EVAL_SIZE[self.name]}
        return [self.problem("eval", i) for i in range(EVAL_SIZE[self.name])]

    def train_problems(self, count: int, start: int = 0) -> list[Problem]:
        """Training problems `start .. start+count-1`, with any text that is also an eval problem skipped."""
        held_out = {p.text for p in self.load()}
        out, i = [], start
        while len(out) < count:
            p = self.problem("train", i)
            if p.text not in held_out:
                out.append(p)
            i += 1
        return out

    def prompt(self, problem: Problem, template: str | None = None, tokenizer: Any = None) -> str:
        # A bare completion prompt: the micro models are trained on exactly this format.
        return f"Q: {problem.text}\nA:"

    def generate(self, rng: random.Random) -> tuple[str, Any, dict]:
        raise NotImplementedError

    def solution(self, problem: Problem, rng: random.Random, error_rate: float) -> str:
        raise NotImplementedError


def _slip(value: int, rng: random.Random, error_rate: float) -> int:
    """The value, or with probability error_rate a nearby wrong one (a careless step)."""
    if rng.random() >= error_rate:
        return value
    return value + rng.choice([-3, -2, -1, 1, 2, 3])


@register
class MicroArith(MicroTask):
    """Nested integer arithmetic with 2-4 operations on digits; the answer goes in \\boxed{}."""

    name = "micro_arith"
    domain = "math"

    def generate(self, rng):
        steps = rng.choice([2, 3, 3, 4])
        start = rng.randint(1, 9)
        expr, value, ops = str(start), start, []
        for _ in range(steps):
            op, b = rng.choice("+-*"), rng.randint(1, 9)
            ops.append((op, b))
            value = value + b if op == "+" else value - b if op == "-" else value * b
            expr = f"({expr}{op}{b})"
        return f"Compute {expr[1:-1]}.", str(value), {"start": start, "ops": ops}

    def solution(self, problem, rng, error_rate):
        acc, parts = problem.meta["start"], []
        for op, b in problem.meta["ops"]:
            true = acc + b if op == "+" else acc - b if op == "-" else acc * b
            new = _slip(true, rng, error_rate)
            parts.append(f"{acc}{op}{b}={new}.")
            acc = new
        return " " + " ".join(parts) + f" \\boxed{{{acc}}}"

    def extract(self, problem, completion):
        from rlvr.tasks.math_extract import extract_candidates

        found = extract_candidates(completion, "boxed")
        return found[1][0] if found else None

    def answer_key(self, problem_id, extracted):
        from rlvr.tasks.math import vote_key

        return vote_key(extracted)

    def check(self, problem, extracted):
        from rlvr.tasks.math import answers_match

        ok = answers_match(problem.answer, extracted)
        return Verdict(ok, float(ok), extracted, "ok" if ok else "mismatch")


LETTERS = "ABCDEF"


@register
class MicroOrder(MicroTask):
    """A hidden order of 3-5 letters, stated as shuffled adjacent relations; answer: the letters from
    smallest to largest inside <answer></answer>. Any order consistent with every relation is correct
    (the relations form a chain, so exactly one is)."""

    name = "micro_order"
    domain = "logic"

    def generate(self, rng):
        k = rng.choice([3, 4, 4, 5])
        order = rng.sample(LETTERS[:k], k)
        rels = [f"{order[i + 1]}>{order[i]}" if rng.random() < 0.5 else f"{order[i]}<{order[i + 1]}"
                for i in range(k - 1)]
        rng.shuffle(rels)
        return (f"{'. '.join(rels)}. Order from smallest.", "".join(order), {"relations": rels})

    def solution(self, problem, rng, error_rate):
        order = list(problem.answer)
        if rng.random() < error_rate * (len(order) - 1):     # one careless swap of neighbours
            i = rng.randrange(len(order) - 1)
            order[i], order[i + 1] = order[i + 1], order[i]
        return f" {'<'.join(order)}. <answer>{''.join(order)}</answer>"

    def extract(self, problem, completion):
        start = completion.find("<answer>")
        end = completion.find("</answer>", start + 8)
        if start < 0 or end < 0:
            return None
        return completion[start + 8:end].strip().upper().replace(" ", "")

    def check(self, problem, extracted):
        letters = sorted(problem.answer)
        if sorted(extracted) != letters:
            return Verdict(False, 0.0, extracted, "not a permutation of the letters")
        pos = {c: i for i, c in enumerate(extracted)}
        for rel in problem.meta["relations"]:
            a, sym, b = rel[0], rel[1], rel[2]
            small, big = (b, a) if sym == ">" else (a, b)
            if pos[small] > pos[big]:
                return Verdict(False, 0.0, extracted, f"violates {rel}")
        return Verdict(True, 1.0, extracted, "ok")


@register
class MicroCode(MicroTask):
    """Infer an affine function from two examples and write it as Python; the program runs in the code
    sandbox on six held-out inputs."""

    name = "micro_code"
    domain = "code"
    timeout_s = 5.0

    def preflight(self) -> None:
        """A correct and a wrong program for the first evaluation problem through `check` (see
        `rlvr.tasks.code.preflight_code_task`)."""
        from rlvr.tasks.code import preflight_code_task

        p = self.problem("eval", 0)
        good = self.extract(p, self.solution(p, random.Random(0), 0.0))
        preflight_code_task(self, [(p, good, True), (p, "def f(x):\n    return 1000003\n", False)])

    def generate(self, rng):
        a, b = rng.randint(1, 5), rng.randint(-5, 9)
        x1 = rng.randint(0, 3)
        x2 = x1 + 1
        text = f"f({x1})={a * x1 + b}. f({x2})={a * x2 + b}. Write f."
        return text, {"a": a, "b": b}, {"examples": [[x1, a * x1 + b], [x2, a * x2 + b]]}

    def solution(self, problem, rng, error_rate):
        (x1, y1), (x2, y2) = problem.meta["examples"]
        a = _slip(y2 - y1, rng, error_rate)
        b = _slip(y1 - a * x1, rng, error_rate)
        expr = f"{a}*x" + (f"+{b}" if b > 0 else f"-{-b}" if b < 0 else "")
        return f" slope {a}. start {b}.\nreturn {expr}"

    def extract(self, problem, completion):
        for line in completion.splitlines():
            s = line.strip()
            if s.startswith("return "):
                return f"def f(x):\n    {s}\n"
        return None

    def check(self, problem, extracted):
        """One sandboxed process runs the candidate on held-out inputs and prints the outputs after a
        nonce it reads from stdin; the comparison happens here, in the verifier. This is lighter than
        the two-process checker of tasks/code.py (one sandbox start instead of two), which is enough for
        one-line expressions; HumanEval and LiveCodeBench keep the two-process protocol."""
        import secrets

        from rlvr.tasks.sandbox import run_checked

        a, b = problem.answer["a"], problem.answer["b"]
        line = extracted.split("\n")[1].strip()
        nonce = secrets.token_hex(8)
        source = (f"import json, sys\n_n = sys.stdin.readline().strip()\n{extracted}"
                  f"print(_n + json.dumps([f(x) for x in {list(CHECK_INPUTS)!r}]))\n")
        # a sandbox that cannot run the program raises VerifierError: an error verdict, never a wrong answer
        res = run_checked(source, stdin=nonce + "\n", timeout_s=self.timeout_s, memory_mb=256)
        if res.status != "ok":
            return Verdict(False, 0.0, line, f"run: {res.status}")
        last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
        expected = [a * x + b for x in CHECK_INPUTS]
        try:
            ok = last.startswith(nonce) and json.loads(last[len(nonce):]) == expected
        except ValueError:
            ok = False
        return Verdict(ok, float(ok), line, "ok" if ok else "wrong output")


CHECK_INPUTS = (-2, 0, 1, 5, 7, 12)


MICRO_TASKS = ("micro_arith", "micro_order", "micro_code")
