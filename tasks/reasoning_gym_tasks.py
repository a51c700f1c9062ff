"""Offline logic extras made with reasoning-gym: `rg_knights_knaves`, `rg_zebra`, `rg_countdown`.

Data: `<data_dir>/reasoning_gym_logic/test.jsonl` (700 items; fields id, task, config, seed, index,
question, answer, metadata). Each item comes from a block
`reasoning_gym.create_dataset(task, size=N, seed=S, **config)`; N is the number of rows of the block.

Scoring is reasoning-gym's own `score_answer(answer, entry)` (countdown has many right answers,
knights-and-knaves answers are sentences, so no string match). The dataset object of a block is
rebuilt in the worker and cached there; the entry is the stored record, which the data README
says regenerates byte-identically. reasoning-gym is optional (`pip install reasoning-gym==0.1.25`)
and imported only when needed; without it the prompt and check raise a UserError naming it.

`score` is reasoning-gym's score, partial credit included (knights-and-knaves credits the people
it got right, countdown gives a wrong expression 0.05 or 0.01); `correct`, what pass@k
counts, means a full score of 1.0.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from rlvr.tasks import register
from rlvr.tasks.base import Problem, Task, Verdict
from rlvr.tasks.errors import UserError
from rlvr.tasks.loading import load_records
from rlvr.tasks.templates import chat_or_chatml, with_chat_template

RG_PACKAGE = "reasoning-gym==0.1.25"


def _reasoning_gym() -> Any:
    try:
        import reasoning_gym
    except ImportError:
        raise UserError(f"the reasoning-gym tasks need the optional package {RG_PACKAGE} "
                        f"(pip install '{RG_PACKAGE}')") from None
    return reasoning_gym


@functools.lru_cache(maxsize=32)
def block_dataset(task: str, size: int, seed: int, config_json: str) -> Any:
    """The reasoning-gym dataset of one generation block, built once per process."""
    return _reasoning_gym().create_dataset(task, size=size, seed=seed, **json.loads(config_json))


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def extract_rg_answer(completion: str) -> str | None:
    """reasoning-gym's convention, the last `<answer>…</answer>` (stripped); else the last
    `\\boxed{}`; None when neither is there."""
    tags = re.findall(r"<answer>(.*?)</answer>", completion, flags=re.DOTALL)
    if tags:
        return tags[-1].strip()
    boxed = _last_boxed(completion)
    return boxed.strip() if boxed is not None else None


class ReasoningGymTask(Task):
    """One reasoning-gym generator's items from the shared offline file."""

    rg_task: str = ""
    domain = "logic"
    local_dir = "reasoning_gym_logic"
    hub = None
    templates = ("rg_default", "question")

    last_source: dict | None = None  # provenance of the last `load` (recorded in run.json), as tasks/math.py

    def load(self, data_dir: str | Path | None = None) -> list[Problem]:
        problems, self.last_source = self.load_with_source(data_dir)
        return problems

    def load_with_source(self, data_dir: str | Path | None = None) -> tuple[list[Problem], dict[str, Any]]:
        rows, source = load_records(self, data_dir)
        rows = [r for r in rows if r.get("task") == self.rg_task]
        if not rows:
            raise UserError(f"task {self.name}: {source.get('path')} holds no {self.rg_task!r} rows")

        def block(r: dict) -> tuple[int, str]:
            return int(r["seed"]), json.dumps(r.get("config") or {}, sort_keys=True)

        sizes = Counter(block(r) for r in rows)
        problems = []
        for r in rows:
            seed, config_json = block(r)
            problems.append(Problem(
                id=str(r["id"]), task=self.name, text=r["question"], answer=r["answer"],
                meta={"rg_task": self.rg_task, "seed": seed, "config": config_json,
                      "size": sizes[(seed, config_json)], "index": int(r["index"]),
                      "metadata": r.get("metadata") or {}}))
        return problems, source

    def prompt(self, problem: Problem, template: str | None = None, tokenizer: Any = None) -> str:
        template = template or self.templates[0]
        if template == "rg_default":
            # reasoning-gym's own default system prompt, which asks for <answer> tags
            system = _reasoning_gym().utils.SYSTEM_PROMPTS["default"]
            return chat_or_chatml(tokenizer, system, problem.text)
        if template == "question":
            return with_chat_template(tokenizer, None, problem.text) if tokenizer is not None else problem.text
        raise UserError(f"--template {template!r}: task {self.name} offers {', '.join(self.templates)}")

    def extract(self, problem: Problem, completion: str) -> str | None:
        return extract_rg_answer(completion)

    def check(self, problem: Problem, extracted: str) -> Verdict:
        m = problem.meta
        dataset = block_dataset(m["rg_task"], m["size"], m["seed"], m["config"])
        entry = {"question": problem.text, "answer": problem.answer, "metadata": m["metadata"]}
        score = float(dataset.score_answer(extracted, entry))
        correct = score >= 1.0
        return Verdict(correct, score, extracted, "ok" if correct else "mismatch")


@register
class RGKnightsKnaves(ReasoningGymTask):
    name = "rg_knights_knaves"
    rg_task = "knights_knaves"


@register
class RGZebra(ReasoningGymTask):
    name = "rg_zebra"
    rg_task = "zebra_puzzles"


@register
class RGCountdown(ReasoningGymTask):
    name = "rg_countdown"
    rg_task = "countdown"
