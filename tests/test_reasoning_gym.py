"""reasoning-gym logic extras: gold answers score 1.0 with reasoning-gym's own scorer, wrong ones fail."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest
import rlvr.tasks.reasoning_gym_tasks as rg
from rlvr.harness.errors import UserError

from rlvr import tasks

DATA_DIR = Path(os.environ.get("RLVR_DATA_DIR", "/work/shared/data"))
HAVE_RG = importlib.util.find_spec("reasoning_gym") is not None
needs_rg = pytest.mark.skipif(not HAVE_RG, reason="optional package reasoning-gym==0.1.25 not installed")
needs_data = pytest.mark.skipif(not (DATA_DIR / "reasoning_gym_logic" / "test.jsonl").is_file(),
                                reason="no local reasoning_gym_logic data")
COUNTS = {"rg_knights_knaves": 300, "rg_zebra": 200, "rg_countdown": 200}


@pytest.fixture(scope="module")
def loaded():
    return {name: tasks.get(name).load(DATA_DIR) for name in COUNTS}


def tagged(answer: str) -> str:
    return f"<think>reasoning</think>\n<answer>{answer}</answer>"


@needs_data
def test_load_splits_the_file_by_generator(loaded):
    assert {name: len(ps) for name, ps in loaded.items()} == COUNTS
    kk = loaded["rg_knights_knaves"]
    assert {p.meta["size"] for p in kk} == {100} and {p.meta["seed"] for p in kk} == {1001, 1002, 1003}
    assert {p.meta["size"] for p in loaded["rg_countdown"]} == {200}
    assert all(tasks.get(name).domain == "logic" for name in COUNTS)
    ids = [p.id for ps in loaded.values() for p in ps]
    assert len(set(ids)) == len(ids)


@needs_rg
@needs_data
@pytest.mark.parametrize("name", sorted(COUNTS))
def test_every_gold_answer_scores_one(loaded, name):
    task = tasks.get(name)
    low = [(p.id, v.score) for p in loaded[name] if not (v := task.verify(p, tagged(p.answer))).correct
           or v.score != 1.0]
    assert low == []


def _wrong_knights(answer: str) -> list[str]:
    # flip the first role named in the sentence
    m = re.search(r"is an? (\w+)", answer)
    roles = re.findall(r"is an? (\w+)", answer)
    other = next((r for r in roles if r != m.group(1)), None)
    flipped = answer[:m.start(1)] + (other or "nobody") + answer[m.end(1):]
    return [flipped, answer.split(",")[0] + "."]


def _wrong_zebra(answer: str, names: list[str]) -> list[str]:
    return [next(n for n in names if n != answer), answer + "x"]


def _wrong_countdown(p) -> list[str]:
    nums = p.meta["metadata"]["numbers"]
    return [" + ".join(map(str, nums)) + " + 1", " * ".join(map(str, nums[:-1])), str(p.meta["metadata"]["target"])]


@needs_rg
@needs_data
def test_wrong_answers_fail(loaded):
    kk, zebra, countdown = (tasks.get(n) for n in ("rg_knights_knaves", "rg_zebra", "rg_countdown"))
    accepted = []
    for p in loaded["rg_knights_knaves"][::10]:
        # reasoning-gym gives partial credit for the people it got right: never correct, never 1.0
        flipped, truncated = _wrong_knights(p.answer)
        v = kk.verify(p, tagged(flipped))
        accepted += [(p.id, flipped)] if v.correct or not 0.0 <= v.score < 1.0 else []
        accepted += [(p.id, truncated)] if kk.verify(p, tagged(truncated)).score != 0.0 else []
    for p in loaded["rg_zebra"][::10]:
        names = re.search(r"unique name: ([^\n]+)", p.text)
        candidates = names.group(1).split(", ") if names else ["nobody"]
        accepted += [(p.id, w) for w in _wrong_zebra(p.answer, candidates) if zebra.verify(p, tagged(w)).score != 0.0]
    for p in loaded["rg_countdown"][::10]:
        # reasoning-gym's format credit: 0.05 for a parsable wrong expression, 0.01 otherwise
        accepted += [(p.id, w) for w in _wrong_countdown(p)
                     if (v := countdown.verify(p, tagged(w))).correct or v.score > 0.05]
    assert accepted == []


@needs_rg
@needs_data
def test_verdict_fields(loaded):
    p = loaded["rg_zebra"][0]
    task = tasks.get("rg_zebra")
    assert task.verify(p, tagged(p.answer)) == tasks.Verdict(True, 1.0, p.answer, "ok")
    assert task.verify(p, "no tags at all") == tasks.Verdict(False, 0.0, None, "no_answer")
    assert task.verify(p, f"so \\boxed{{{p.answer}}}").correct  # the boxed fallback


@pytest.mark.parametrize("completion, expected", [
    ("<answer> a </answer>", "a"),
    ("<answer>first</answer> then <answer>last</answer>", "last"),
    ("<answer>\n1 + 2\n</answer>", "1 + 2"),
    ("\\boxed{x + 1}", "x + 1"),
    ("<answer>tag</answer> \\boxed{box}", "tag"),
    ("nothing", None),
])
def test_extraction(completion, expected):
    assert rg.extract_rg_answer(completion) == expected


@needs_data
def test_without_reasoning_gym_check_names_the_package(loaded, monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # makes `import reasoning_gym` fail
    rg.block_dataset.cache_clear()
    p = loaded["rg_countdown"][0]
    with pytest.raises(UserError, match="reasoning-gym"):
        tasks.get("rg_countdown").check(p, p.answer)
    with pytest.raises(UserError, match="reasoning-gym"):
        tasks.get("rg_countdown").prompt(p)
    rg.block_dataset.cache_clear()


@needs_rg
@needs_data
def test_prompts(loaded):
    p = loaded["rg_countdown"][0]
    task = tasks.get("rg_countdown")
    assert task.prompt(p, "question") == p.text
    assert "<answer>answer here</answer>" in task.prompt(p)
    assert task.prompt(p).endswith(p.text + "<|im_end|>\n<|im_start|>assistant\n")
