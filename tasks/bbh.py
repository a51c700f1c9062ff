"""BIG-Bench Hard (`bbh`): 27 subtasks, 6,511 items, scored by normalised exact match.

Data: `<data_dir>/bbh/test.jsonl` (fields id, task, index, input, target) plus the official 3-shot
chain-of-thought exemplars `<data_dir>/bbh/cot-prompts/<subtask>.txt`; or the hub
(`lukaemon/bbh`, one config per subtask, split `test`, fields input/target).

Templates:
- `cot_3shot` (default, the official protocol): the exemplar file without its canary line and the
  `-----` separator under it, then `\\n\\nQ: {input}\\nA: Let's think step by step.` It is a
  completion prompt and stays raw text whatever the tokenizer.
- `zero_shot_boxed`: the math-style instruction asking for `\\boxed{}` (benchmarks.md section 3.5),
  in the tokenizer's chat template when one is given, else the raw Qwen ChatML string.

Extraction: the text after the last "the answer is" up to the end of its line, without a final
period (lm-eval's `(?<=the answer is )(.*)(?=.)`), or the last `\\boxed{}` for the boxed template.
Either rule is tried in that order, so a completion is scored the same whichever template made it.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from rlvr.tasks import register
from rlvr.tasks.base import HubSource, Problem, Task, Verdict
from rlvr.tasks.errors import UserError
from rlvr.tasks.loading import hub_or_local_cache, load_records, local_file, resolve_data_dir
from rlvr.tasks.templates import chatml, with_chat_template

SUBTASKS: tuple[str, ...] = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa",
    "dyck_languages", "formal_fallacies", "geometric_shapes", "hyperbaton",
    "logical_deduction_five_objects", "logical_deduction_seven_objects",
    "logical_deduction_three_objects", "movie_recommendation", "multistep_arithmetic_two", "navigate",
    "object_counting", "penguins_in_a_table", "reasoning_about_colored_objects", "ruin_names",
    "salient_translation_error_detection", "snarks", "sports_understanding", "temporal_sequences",
    "tracking_shuffled_objects_five_objects", "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects", "web_of_lies", "word_sorting",
)

# How each subtask's answer is compared; every subtask not listed is multiple choice "(X)".
ANSWER_KIND: dict[str, str] = {
    "boolean_expressions": "label", "causal_judgement": "label", "formal_fallacies": "label",
    "navigate": "label", "sports_understanding": "label", "web_of_lies": "label",
    "multistep_arithmetic_two": "exact", "object_counting": "exact",
    "word_sorting": "words", "dyck_languages": "brackets",
}

COT_SUFFIX = "Q: {input}\nA: Let's think step by step."
BOXED_SYSTEM = "You are a helpful assistant."
BOXED_INSTRUCTION = "{input}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def answer_kind(subtask: str) -> str:
    return ANSWER_KIND.get(subtask, "choice")


def strip_prompt_header(text: str) -> str:
    """The exemplar file without the canary line and the `-----` line that follow it upstream."""
    lines = text.split("\n")
    if lines and "canary GUID" in lines[0]:
        lines = lines[1:]
    if lines and lines[0].strip() == "-----":
        lines = lines[1:]
    return "\n".join(lines).strip()


def last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth, j = start + len("\\boxed{"), 1, start + len("\\boxed{")
    while j < len(text):
        if text[j] == "\\":  # `\{` and `\}` are literal braces (dyck answers), not grouping
            j += 2
            continue
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
        j += 1
    return None


def _unbox(text: str) -> str:
    boxed = last_boxed(text)
    inner = re.sub(r"\\text\{([^{}]*)\}", r"\1", boxed if boxed is not None else text)
    return inner.replace("\\{", "{").replace("\\}", "}").strip()


def extract_bbh_answer(completion: str) -> str | None:
    """The later of two markers: the last 'the answer is X.' (case-insensitive, to the end of its
    line, without a final period) and the last `\\boxed{X}`. Taking the later one lets a completion
    that states an answer mid-way and corrects it in a final box be scored on the box."""
    hits = list(re.finditer(r"the answer is ", completion, flags=re.IGNORECASE))
    phrase_at = hits[-1].end() if hits else -1
    box_at = completion.rfind("\\boxed{")
    if phrase_at < 0 and box_at < 0:
        return None
    if phrase_at > box_at:
        line = completion[phrase_at:].split("\n", 1)[0].strip()
        if line.endswith("."):
            line = line[:-1].rstrip()
        answer = _unbox(line) if "\\boxed{" in line else line
    else:
        answer = _unbox(completion[box_at:]) if last_boxed(completion[box_at:]) is not None else ""
    return answer or None


def extract_fewshot_answer(completion: str) -> str | None:
    """The answer of a completion of the 3-shot CoT prompt, as lm-eval's `bbh_cot_fewshot` reads it: the
    completion ends at its first blank line (the exemplars are separated by one; a base model goes on
    to write the next `Q:`), and the first 'the answer is X' in what is left counts. lm-eval also stops
    its sampler at any "Q", which can cut a chain of thought at a word such as "Queen"; the blank line
    alone is the exemplar boundary. Cutting here, not in the sampler, makes the verdict the same
    whatever the sampler's stop strings were."""
    head = completion.split("\n\n", 1)[0]
    hit = re.search(r"the answer is ", head, flags=re.IGNORECASE)
    if hit is None:
        return extract_bbh_answer(head)     # a boxed answer, or none
    return extract_bbh_answer(head[hit.start():].split("\n", 1)[0])   # that line: to its end, as lm-eval


def normalize(kind: str, answer: str) -> Any:
    """The comparison key of an answer (gold or extracted) for one answer kind."""
    text = " ".join(answer.split())
    if kind == "choice":
        m = re.fullmatch(r"\(?([A-Za-z])\)?", text)
        return f"({m.group(1).upper()})" if m else text
    if kind == "label":
        return text.lower()
    if kind == "words":
        return [w for w in re.split(r"[\s,]+", text) if w]
    if kind == "brackets":
        return [c for c in text if not c.isspace()]
    return text


@functools.lru_cache(maxsize=64)
def fewshot_prefix(cot_prompts: str | None, subtask: str) -> str:
    """The 3-shot exemplars of one subtask, header stripped (read once per process)."""
    path = Path(cot_prompts) / f"{subtask}.txt" if cot_prompts else None
    if path is None or not path.is_file():
        raise UserError(f"bbh template cot_3shot: exemplar file {path or 'bbh/cot-prompts/' + subtask + '.txt'} "
                        f"not found; pass --data-dir DIR holding bbh/cot-prompts/")
    return strip_prompt_header(path.read_text(encoding="utf-8"))


def answers_match(subtask: str, gold: str, extracted: str) -> bool:
    kind = answer_kind(subtask)
    return normalize(kind, extracted) == normalize(kind, gold)


@register
class BBH(Task):
    name = "bbh"
    domain = "logic"
    local_dir = "bbh"
    hub = HubSource("lukaemon/bbh", name=None, split="test")
    templates = ("cot_3shot", "zero_shot_boxed")

    def hub_kwargs_for(self, subtask: str) -> dict[str, Any]:
        """`datasets.load_dataset` arguments for one subtask: the hub has one config each."""
        assert self.hub is not None
        kwargs: dict[str, Any] = {"path": self.hub.path, "name": subtask, "split": self.hub.split}
        if self.hub.revision:
            kwargs["revision"] = self.hub.revision
        return kwargs

    last_source: dict | None = None  # provenance of the last `load` (recorded in run.json), as tasks/math.py

    def load(self, data_dir: str | Path | None = None) -> list[Problem]:
        problems, self.last_source = self.load_with_source(data_dir)
        return problems

    def load_with_source(self, data_dir: str | Path | None = None) -> tuple[list[Problem], dict[str, Any]]:
        if local_file(self, data_dir) is not None:
            rows, source = load_records(self, data_dir)
        else:
            rows, source = self._load_hub(data_dir)
        for row in rows:
            if row.get("task") not in SUBTASKS:
                raise UserError(f"bbh: row {row.get('id')!r} has unknown subtask {row.get('task')!r}")
        root = resolve_data_dir(data_dir)
        prompt_dir = root / self.local_dir / "cot-prompts" if root else None
        # The exemplar folder travels in each problem so that `prompt` needs no data_dir argument.
        cot_prompts = str(prompt_dir.resolve()) if prompt_dir is not None and prompt_dir.is_dir() else None
        problems = [Problem(id=str(r["id"]), task=self.name, text=r["input"], answer=r["target"],
                            meta={"subtask": r["task"], "index": r["index"], "cot_prompts": cot_prompts})
                    for r in rows]
        return problems, source

    def _load_hub(self, data_dir: str | Path | None) -> tuple[list[dict], dict[str, Any]]:
        rows: list[dict] = []
        fingerprints: dict[str, Any] = {}
        try:
            import datasets

            with hub_or_local_cache():      # one probe of the hub for all subtasks
                for subtask in SUBTASKS:
                    ds = datasets.load_dataset(**self.hub_kwargs_for(subtask))
                    fingerprints[subtask] = getattr(ds, "_fingerprint", None)
                    rows += [{"id": f"{subtask}-{i}", "task": subtask, "index": i, "input": r["input"],
                              "target": r["target"]} for i, r in enumerate(ds)]
        except Exception as e:  # no network or no `datasets`: say where the local copy belongs
            root = resolve_data_dir(data_dir)
            where = root / self.local_dir / "test.jsonl" if root else "--data-dir / $RLVR_DATA_DIR (unset)"
            raise UserError(f"task bbh: no local data at {where}, and the hub dataset {self.hub.path} could "
                            f"not be loaded ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); "
                            f"pass --data-dir DIR holding bbh/test.jsonl"
                            ) from None
        return rows, {"kind": "hub", "path": self.hub.path, "split": self.hub.split,
                      "revision": self.hub.revision, "configs": list(SUBTASKS), "fingerprints": fingerprints}

    def prompt(self, problem: Problem, template: str | None = None, tokenizer: Any = None) -> str:
        template = template or self.templates[0]
        if template == "cot_3shot":
            prefix = fewshot_prefix(problem.meta.get("cot_prompts"), problem.meta["subtask"])
            return prefix + "\n\n" + COT_SUFFIX.format(input=problem.text)
        if template == "zero_shot_boxed":
            user = BOXED_INSTRUCTION.format(input=problem.text)
            if tokenizer is not None:
                return with_chat_template(tokenizer, None, user)
            return chatml(BOXED_SYSTEM, user)
        raise UserError(f"--template {template!r}: task {self.name} offers {', '.join(self.templates)}")

    def stop_strings(self, template: str | None) -> tuple[str, ...]:
        return ("\n\n",) if (template or self.templates[0]) == "cot_3shot" else ()

    def extract(self, problem: Problem, completion: str) -> str | None:
        if (problem.meta.get("template") or self.templates[0]) == "cot_3shot":
            return extract_fewshot_answer(completion)
        return extract_bbh_answer(completion)

    def answer_key(self, problem_id: str, extracted: str) -> str:
        """The comparison key of `answers_match` for the problem's subtask (ids are `SUBTASK-INDEX`)."""
        key = normalize(answer_kind(str(problem_id).rsplit("-", 1)[0]), extracted)
        return " ".join(key) if isinstance(key, list) else key

    def check(self, problem: Problem, extracted: str) -> Verdict:
        ok = answers_match(problem.meta["subtask"], str(problem.answer), extracted)
        return Verdict(ok, 1.0 if ok else 0.0, extracted, "ok" if ok else "mismatch")
