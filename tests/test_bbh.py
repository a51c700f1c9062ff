"""BBH: loading, prompts for all 27 subtasks, extraction and normalised exact match."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import rlvr.tasks.bbh as bbh
from hypothesis import given
from hypothesis import strategies as st
from rlvr.harness.errors import UserError
from rlvr.tasks.base import Problem

from rlvr import tasks

DATA_DIR = Path(os.environ.get("RLVR_DATA_DIR", "/work/shared/data"))
needs_data = pytest.mark.skipif(not (DATA_DIR / "bbh" / "test.jsonl").is_file(), reason="no local bbh data")


@pytest.fixture(scope="module")
def task():
    return tasks.get("bbh")


@pytest.fixture(scope="module")
def problems(task):
    return task.load(DATA_DIR)


@needs_data
def test_load_all_subtasks_with_stable_unique_ids(problems):
    assert len(problems) == 6511
    assert {p.meta["subtask"] for p in problems} == set(bbh.SUBTASKS)
    assert len({p.id for p in problems}) == len(problems)
    assert all(p.id == f"{p.meta['subtask']}-{p.meta['index']}" for p in problems)


@needs_data
def test_every_target_written_as_a_3shot_answer_verifies(task, problems):
    wrong = [p.id for p in problems
             if not task.verify(p, f"Let's see.\nStep one.\nSo the answer is {p.answer}.").correct]
    assert wrong == []


@needs_data
def test_every_target_in_a_box_verifies(task, problems):
    def boxed(ans: str) -> str:
        return "\\boxed{" + ans.replace("{", "\\{").replace("}", "\\}") + "}"

    assert [p.id for p in problems if not task.verify(p, f"Thinking... {boxed(p.answer)}").correct] == []


@needs_data
@pytest.mark.parametrize("subtask", bbh.SUBTASKS)
def test_cot_prompt_per_subtask(task, problems, subtask):
    p = next(q for q in problems if q.meta["subtask"] == subtask)
    text = task.prompt(p, "cot_3shot")
    assert text.endswith(f"\n\nQ: {p.text}\nA: Let's think step by step.")
    assert "canary" not in text and not text.startswith("-----")
    exemplars = (DATA_DIR / "bbh" / "cot-prompts" / f"{subtask}.txt").read_text().split("\n")[2]
    assert text.startswith(exemplars)  # the task description line comes first
    assert text.count("Let's think step by step.") == 4  # three exemplars plus the question


@needs_data
def test_default_template_is_cot_and_boxed_template_asks_for_box(task, problems):
    p = problems[0]
    assert task.prompt(p) == task.prompt(p, "cot_3shot")
    boxed = task.prompt(p, "zero_shot_boxed")
    assert boxed.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + p.text)
    assert boxed.endswith("within \\boxed{}.<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(UserError, match="template"):
        task.prompt(p, "five_shot")


def test_missing_exemplar_folder_is_a_user_error(task):
    p = tasks.Problem("navigate-0", "bbh", "Q", "No", {"subtask": "navigate", "index": 0, "cot_prompts": None})
    with pytest.raises(UserError, match="cot-prompts"):
        task.prompt(p, "cot_3shot")


def test_hub_loads_one_config_per_subtask(task):
    kwargs = [task.hub_kwargs_for(s) for s in bbh.SUBTASKS]
    assert len(kwargs) == 27
    assert kwargs[0] == {"path": "lukaemon/bbh", "name": "boolean_expressions", "split": "test"}
    assert {k["name"] for k in kwargs} == set(bbh.SUBTASKS)


@pytest.mark.parametrize("completion, expected", [
    ("So the answer is (A).", "(A)"),
    ("First So the answer is (B).\nthen So the answer is (C).", "(C)"),
    ("so The Answer Is True.", "True"),
    ("So the answer is ] ] >.", "] ] >"),
    ("So the answer is -50.", "-50"),
    ("So the answer is 12\nand more text", "12"),
    ("reasoning \\boxed{(D)}", "(D)"),
    ("reasoning \\boxed{\\text{valid}}", "valid"),
    ("reasoning \\boxed{\\} ]}", "} ]"),
    ("So the answer is (A). Wait, no: \\boxed{B}", "B"),
    ("\\boxed{A} but finally the answer is (C).", "(C)"),
    ("So the answer is \\boxed{(E)}.", "(E)"),
    ("no marker here", None),
    ("So the answer is .", None),
])
def test_extraction(completion, expected):
    assert bbh.extract_bbh_answer(completion) == expected


@pytest.mark.parametrize("completion, expected", [
    ("Let's think. So the answer is (B).\n\nQ: next question\nA: So the answer is (A).", "(B)"),
    ("So the answer is (B).\nWait, the answer is (C).", "(B)"),          # the first, as lm-eval's regex
    ("reasoning\n\nSo the answer is (C).", None),                      # past the first blank line
    ("\nSo the answer is True.\n\n", "True"),
])
def test_fewshot_extraction_stops_at_the_first_blank_line(completion, expected):
    assert bbh.extract_fewshot_answer(completion) == expected


def test_the_template_chooses_the_extraction():
    task = bbh.BBH()
    p = Problem("date_understanding-0", "bbh", "q", "(B)", {"subtask": "date_understanding"})
    text = "So the answer is (B).\n\nQ: another\nA: So the answer is (A)."
    assert task.extract(p, text) == "(B)"                                            # cot_3shot, the default
    assert task.extract(replace(p, meta={**p.meta, "template": "zero_shot_boxed"}), text) == "(A)"


@pytest.mark.parametrize("subtask, gold, extracted, ok", [
    ("date_understanding", "(B)", "(B)", True),
    ("date_understanding", "(B)", "B", True),
    ("date_understanding", "(B)", "B)", True),
    ("date_understanding", "(B)", " ( b ) ".replace(" ", ""), True),
    ("date_understanding", "(B)", "(C)", False),
    ("date_understanding", "(B)", "(B) 01/02/2020", False),
    ("geometric_shapes", "(K)", "K", True),
    ("boolean_expressions", "True", "true", True),
    ("boolean_expressions", "True", "False", False),
    ("formal_fallacies", "invalid", "Invalid", True),
    ("formal_fallacies", "invalid", "valid", False),
    ("sports_understanding", "no", "No", True),
    ("sports_understanding", "yes", "no", False),
    ("navigate", "Yes", "YES", True),
    ("causal_judgement", "No", "Yes", False),
    ("object_counting", "11", "11", True),
    ("object_counting", "11", "12", False),
    ("multistep_arithmetic_two", "-50", "-50", True),
    ("multistep_arithmetic_two", "-50", "50", False),
    ("word_sorting", "apple banana cherry", "apple  banana\ncherry", True),
    ("word_sorting", "apple banana cherry", "apple, banana, cherry", True),
    ("word_sorting", "apple banana cherry", "banana apple cherry", False),
    ("word_sorting", "apple banana cherry", "apple banana", False),
    ("dyck_languages", "] ] >", "]]>", True),
    ("dyck_languages", "] ] >", "] ] > ", True),
    ("dyck_languages", "] ] >", "] >", False),
    ("dyck_languages", "] ] >", "] ] )", False),
])
def test_match_table(subtask, gold, extracted, ok):
    assert bbh.answers_match(subtask, gold, extracted) is ok


@given(st.sampled_from("ABCDEFGHIJKLMNOPQR"), st.sampled_from(["{}", "({})", "{})", " {} "]))
def test_choice_letter_forms_all_normalise_to_parenthesised(letter, form):
    assert bbh.normalize("choice", form.format(letter)) == f"({letter})"
    assert bbh.normalize("choice", form.format(letter.lower())) == f"({letter})"


@given(st.lists(st.sampled_from(list("()[]{}<>")), min_size=1, max_size=12))
def test_dyck_spacing_never_matters(tokens):
    assert bbh.answers_match("dyck_languages", " ".join(tokens), "".join(tokens))


def test_strip_prompt_header():
    text = "BENCHMARK DATA ... canary GUID 26b5c67b\n-----\nDescribe.\n\nQ: x\nA: y\n"
    assert bbh.strip_prompt_header(text) == "Describe.\n\nQ: x\nA: y"
