"""SynLogic-Easy (`synlogic_easy`): procedurally generated logic puzzles, one verifier per task type.

Data: `<data_dir>/synlogic_easy/test.jsonl` (a locally generated stand-in, see its README) or the hub
(`MiniMaxAI/SynLogic`, config `easy`, split `validation`), whose rows carry the generator's record as
JSON in `extra_info.game_data_str` and the task type as `data_source = "val/<task>"`.

Scoring follows the README's common part: keep the text after the first `</think>` (and before a
second one), take the first `<answer>…</answer>`, and give it to the task type's verifier
(`tasks/synlogic_verifiers.py`); no `<answer>` means the verifier sees the empty string. The
prompts themselves never ask for `<answer>` tags, so the default template adds a system turn that
asks for them (our wording: the instruction SynLogic used is not published); `question` gives the
question alone for models that already follow that convention.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from rlvr.tasks import register
from rlvr.tasks.base import HubSource, Problem, Task, Verdict
from rlvr.tasks.errors import UserError
from rlvr.tasks.loading import load_records
from rlvr.tasks.synlogic_verifiers import VERIFIERS, SynLogicRecord, game_of_24
from rlvr.tasks.templates import chat_or_chatml, with_chat_template

THINK_ANSWER_SYSTEM = (
    "You are a helpful assistant. First think about the reasoning process inside <think> </think> "
    "tags, then give the final answer inside <answer> </answer> tags, in the format the question "
    "asks for, i.e. <think> reasoning here </think> <answer> answer here </answer>."
)

# task type -> verifier key, where they differ (README, "Record format")
_VERIFIER_KEY = {"game_of_24": "mathador"}


def extract_answer_tag(completion: str) -> str:
    """The README's common part: after the first `</think>` (up to a second one), the stripped
    content of the first `<answer>…</answer>`; the empty string when there is none."""
    text = completion
    if "</think>" in text:
        text = text.split("</think>")[1]
    m = re.search(r"<answer>(.*?)</answer>", text, flags=re.DOTALL)
    return m.group(1).strip() if m else ""


def record_from_hub_row(row: dict) -> dict:
    """A hub row (`extra_info.game_data_str`, `data_source = "val/<task>"`) in the local layout."""
    extra = row.get("extra_info") or {}
    if isinstance(extra, str):
        extra = json.loads(extra)
    if "game_data_str" not in extra or "data_source" not in row:
        raise UserError("synlogic_easy: hub row has no extra_info.game_data_str / data_source field")
    data = json.loads(extra["game_data_str"])
    task_type = str(row["data_source"]).split("/", 1)[-1]
    digest = hashlib.sha1(data["question"].encode("utf-8")).hexdigest()[:12]
    return {"id": f"{task_type}-{digest}", "task": task_type,
            "verifier_key": _VERIFIER_KEY.get(task_type, task_type), "question": data["question"],
            "answer": data.get("answer"), "metadata": data.get("metadata") or {},
            "difficulty": data.get("difficulty")}


@register
class SynLogicEasy(Task):
    name = "synlogic_easy"
    domain = "logic"
    local_dir = "synlogic_easy"
    hub = HubSource("MiniMaxAI/SynLogic", name="easy", split="validation")
    templates = ("think_answer", "question")

    # The official game_of_24 verifier never compares the value with 24 (README); ours does.
    # `with_options(game_of_24_checks_value=False)` reproduces official scoring when its `check` is called
    # directly. It acts in `check`, which the verifier pool's workers run on the registered instance, so
    # `rlvr eval` cannot set it (it is not among `eval_options`).
    game_of_24_checks_value: bool = True

    def with_options(self, game_of_24_checks_value: bool | None = None) -> SynLogicEasy:
        """A copy with other scoring options (the registered instance is left alone)."""
        out = copy.copy(self)
        if game_of_24_checks_value is not None:
            out.game_of_24_checks_value = bool(game_of_24_checks_value)
        return out

    last_source: dict | None = None  # provenance of the last `load` (recorded in run.json), as tasks/math.py

    def load(self, data_dir: str | Path | None = None) -> list[Problem]:
        problems, self.last_source = self.load_with_source(data_dir)
        return problems

    def load_with_source(self, data_dir: str | Path | None = None) -> tuple[list[Problem], dict[str, Any]]:
        rows, source = load_records(self, data_dir)
        records = [record_from_hub_row(r) if "extra_info" in r and "question" not in r else r for r in rows]
        unknown = sorted({r.get("verifier_key") or r.get("task") for r in records} - set(VERIFIERS))
        if unknown:
            raise UserError(f"synlogic_easy: {source.get('path', self.hub.path)}: no verifier for task "
                            f"type(s) {', '.join(map(str, unknown))}")
        problems = [Problem(id=str(r["id"]), task=self.name, text=r["question"], answer=r["answer"],
                            meta={"task_type": r["task"], "verifier_key": r["verifier_key"],
                                  "metadata": r.get("metadata") or {}, "difficulty": r.get("difficulty")})
                    for r in records]
        return problems, source

    def prompt(self, problem: Problem, template: str | None = None, tokenizer: Any = None) -> str:
        template = template or self.templates[0]
        if template == "think_answer":
            return chat_or_chatml(tokenizer, THINK_ANSWER_SYSTEM, problem.text)
        if template == "question":
            return with_chat_template(tokenizer, None, problem.text) if tokenizer is not None else problem.text
        raise UserError(f"--template {template!r}: task {self.name} offers {', '.join(self.templates)}")

    def extract(self, problem: Problem, completion: str) -> str | None:
        return extract_answer_tag(completion)

    def check(self, problem: Problem, extracted: str) -> Verdict:
        key = problem.meta["verifier_key"]
        record = SynLogicRecord(problem.text, problem.answer, problem.meta["metadata"])
        try:
            if VERIFIERS[key] is game_of_24:
                ok = game_of_24(record, extracted, check_value=self.game_of_24_checks_value)
            else:
                ok = VERIFIERS[key](record, extracted)
        except Exception as e:  # the README's rule: an exception in the verifier means wrong
            return Verdict(False, 0.0, extracted, f"error: {type(e).__name__}: {str(e)[:120]}")
        if ok:
            return Verdict(True, 1.0, extracted, "ok")
        return Verdict(False, 0.0, extracted, "mismatch" if extracted else "no_answer")
