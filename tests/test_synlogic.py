"""SynLogic-Easy: every stored gold verifies, and per task type the perturbations the README's rule
must reject are rejected."""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import pytest
import rlvr.tasks.synlogic as synlogic
from rlvr.harness.errors import UserError
from rlvr.tasks.base import Problem
from rlvr.tasks.synlogic_verifiers import VERIFIERS, SynLogicRecord, eval_arithmetic, game_of_24

from rlvr import tasks

DATA_DIR = Path(os.environ.get("RLVR_DATA_DIR", "/work/shared/data"))
needs_data = pytest.mark.skipif(not (DATA_DIR / "synlogic_easy" / "test.jsonl").is_file(),
                                reason="no local synlogic_easy data")
PER_TYPE = 4  # items per task type that get perturbed


@pytest.fixture(scope="module")
def task():
    return tasks.get("synlogic_easy")


@pytest.fixture(scope="module")
def rows():
    with open(DATA_DIR / "synlogic_easy" / "test.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def problems(task):
    return {p.id: p for p in task.load(DATA_DIR)}


def respond(answer: str) -> str:
    return f"<think>\nworking it out\n</think>\n<answer>{answer}</answer>"


@needs_data
def test_every_formatted_answer_verifies(task, rows, problems):
    assert len(rows) == 976 and len(problems) == 976
    wrong = [r["id"] for r in rows if not task.verify(problems[r["id"]], respond(r["formatted_answer"])).correct]
    assert wrong == []


@needs_data
def test_all_32_types_have_a_verifier(rows):
    assert len({r["task"] for r in rows}) == 32
    assert {r["verifier_key"] for r in rows} <= set(VERIFIERS)


# ---------------------------------------------------------------- perturbations per task type
# Each function maps (row, formatted_answer) to a list of answers that must all be rejected.

def _grid_block(fa: str) -> list:
    return ast.literal_eval(re.search(r"```python\n(.*)\n```", fa, flags=re.DOTALL).group(1))


def _py(obj) -> str:
    return "```python\n" + repr(obj) + "\n```"


def _bump_first_int(s: str, delta: int = 1) -> str:
    m = re.search(r"-?\d+", s)
    return s[:m.start()] + str(int(m.group(0)) + delta) + s[m.end():]


def _arrow_maze(row, fa):
    grid = _grid_block(fa)
    maze = row["metadata"]["maze"]
    i, j = next((i, j) for i, r in enumerate(maze) for j, c in enumerate(r) if c == "X")
    as_x = [r[:] for r in grid]
    as_x[i][j] = "X"
    di, dj = next((i, j) for i, r in enumerate(maze) for j, c in enumerate(r) if c.isdigit())
    bumped = [r[:] for r in grid]
    bumped[di][dj] = str(int(grid[di][dj]) + 1)
    return [_py(as_x), _py(bumped), _py(grid[:-1])]


def _boolean_expressions(row, fa):
    letters = row["answer"].split(",")
    toggled = [x for x in letters if x != "A"] if "A" in letters else letters + ["A"]
    return ["\\boxed{" + ",".join(toggled) + "}", row["answer"], "\\boxed{" + row["answer"] + ",Z}"]


def _buggy_tables(row, fa):
    gold = float(row["answer"])
    return [fa.replace(row["answer"], f"{gold + 1:.2f}"), fa.replace(row["answer"], f"{gold:.1f}")]


def _calcudoko(row, fa):
    rows = fa[2:-2].split(",")
    first = rows[0].split()
    first[0], first[1] = first[1], first[0]
    return ["[[" + ",".join([" ".join(first)] + rows[1:]) + "]]", "[[" + ",".join(rows[:-1]) + "]]"]


def _campsite(row, fa):
    grid = ast.literal_eval(fa)
    i, j = next((i, j) for i, r in enumerate(grid) for j, c in enumerate(r) if c == "C")
    grid[i][j] = "X"
    return [repr(grid)]


def _cryptarithm(row, fa):
    return [fa[:-1] + str((int(fa[-1]) + 1) % 10), fa.split("=")[0]]


def _dyck_language(row, fa):
    return [fa[:-1], fa[len(row["metadata"]["question_sequence"]):], fa + " done"]


def _dyck_language_errors(row, fa):
    return ["1" if fa == "-1" else str(int(fa) + 1), "-1" if fa != "-1" else "3", "position " + fa]


def _dyck_language_reasoning_errors(row, fa):
    return [str(int(fa) + 1), "", "no errors", fa + "," + str(int(fa) + 2)]


def _futoshiki(row, fa):
    rows = [r.split() for r in fa[2:-2].split(",")]
    rows[0][0] = rows[0][1]
    return ["[[" + ",".join(" ".join(r) for r in rows) + "]]", "[[" + ",".join(" ".join(r) for r in rows[:-1]) + "]]"]


def _game_of_24(row, fa):
    nums = row["metadata"]["numbers"]
    total = " + ".join(map(str, nums))
    return ["```python\n" + " * ".join(map(str, nums[:3])) + "\n```",  # drops a number
            "```python\n" + total + "\n```" if sum(nums) != 24 else "```python\n(" + total + ") * 2\n```",
            "```python\n24\n```"]


def _goods_exchange(row, fa):
    pairs = ast.literal_eval(_grid_block(fa).__repr__())
    a, b = next((x, y) for x in range(len(pairs)) for y in range(len(pairs)) if pairs[x][1] != pairs[y][1])
    swapped = list(pairs)
    swapped[a], swapped[b] = (pairs[a][0], pairs[b][1]), (pairs[b][0], pairs[a][1])
    return [_py(tuple(swapped)), _py(tuple(pairs[:-1]))]


def _kukurasu(row, fa):
    grid = json.loads(fa)
    i, j = next((i, j) for i, r in enumerate(grid) for j, c in enumerate(r) if c == "1")
    grid[i][j] = "X"
    return [json.dumps(grid), fa.replace('"', "'")]


def _math_path(row, fa):
    expr = fa[2:-2]
    left, right = expr.split("=")
    wrong = []
    for pos, ch in enumerate(left):
        if ch.isdigit():
            for d in "0123456789":
                cand = left[:pos] + d + left[pos + 1:]
                try:
                    if eval_arithmetic(cand) != eval_arithmetic(right):
                        wrong.append("[[" + cand + "=" + right + "]]")
                        break
                except ZeroDivisionError:
                    continue
            if wrong:
                break
    return wrong + ["[[(" + left + ")=" + right + "]]", "[[" + left + "+0=" + right + "]]"]


def _minesweeper(row, fa):
    mines = [tuple(m) for m in row["metadata"]["current_mines"]]
    n = len(row["metadata"]["revealed_grid"])
    extra = next((i, j) for i in range(n) for j in range(n) if (i, j) not in mines)
    return [repr(mines[:-1]), repr(mines + [extra])]


def _norinori(row, fa):
    dominoes = ast.literal_eval(fa)
    return [repr(dominoes[1:]), repr(dominoes[:-1])]


def _number_wall(row, fa):
    grid = _grid_block(fa)
    i, j = next((i, j) for i, r in enumerate(grid) for j, c in enumerate(r) if c == "A")
    opened = [r[:] for r in grid]
    opened[i][j] = "X"
    return [_py(opened), _py(grid[:-1])]


def _numbrix(row, fa):
    grid = _grid_block(fa)
    dup = [r[:] for r in grid]
    dup[0][0] = dup[0][1]
    return [_py(dup), _py([r[::-1] for r in grid[::-1]]) if grid[0][0] != grid[-1][-1] else _py(dup)]


def _counting(row, fa):
    return [f"\\boxed{{{int(row['answer']) + 1}}}", row["answer"], "\\boxed{unknown}"]


def _operation(row, fa):
    return [f"\\boxed{{{float(row['answer']) + 1}}}", f"\\boxed{{{-float(row['answer']) - 0.5}}}"]


def _latin_cell_clash(row, fa):
    grid = _grid_block(fa)
    grid = [list(r) for r in grid]
    grid[0][0] = grid[0][1]
    return [_py(grid)]


def _skyscraper(row, fa):
    grid = _grid_block(fa)
    return _latin_cell_clash(row, fa) + [_py(grid[:-1]), "[[1]]"]


def _space_reasoning(row, fa):
    return ["\\boxed{" + row["answer"] + "x}", "\\boxed{unknown}" if row["answer"] != "unknown" else "\\boxed{a}"]


def _space_reasoning_tree(row, fa):
    names = row["answer"].split(", ")
    return ["\\boxed{" + ", ".join(names[1:] or ["nothing"]) + "}", "\\boxed{" + row["answer"] + ", zzz}"]


def _star_placement(row, fa):
    stars = _grid_block(fa)
    label = sorted(stars)[0]
    (r, c), = stars[label]
    moved = dict(stars)
    moved[label] = [(r, c % 5 + 1)]
    return [_py(moved), _py({k: v for k, v in stars.items() if k != label})]


def _sudoku(row, fa):
    grid = [list(r) for r in _grid_block(fa)]
    grid[0][0], grid[0][1] = grid[0][1], grid[0][0]
    return [_py(tuple(map(tuple, grid))), _py(tuple(map(tuple, grid[:-1])))]


def _survo(row, fa):
    grid = _grid_block(fa)
    bumped = [r[:] for r in grid]
    bumped[-1][-1] += 1
    blanks = [(i, j) for i, r in enumerate(row["metadata"]["original_matrix"]) for j, v in enumerate(r) if v == 0]
    changed = [r[:] for r in grid]
    changed[blanks[0][0]][blanks[0][1]] += 1
    return [_py(bumped), _py(changed)]


def _time_sequence(row, fa):
    length, count = row["answer"]
    return [json.dumps([length + 5, count]), json.dumps([length, count + 1]), json.dumps([count, length])]


def _web_of_lies(row, fa):
    flip = {"yes": "no", "no": "yes", "是": "否", "否": "是"}
    words = [w.strip() for w in re.split(r"[,，]", row["answer"])]
    flipped = [flip[words[0]]] + words[1:]
    return ["The answer is **" + ", ".join(flipped) + "**.", "The answer is **" + ", ".join(words[:-1]) + "**."]


def _word_sorting(row, fa):
    words = row["answer"].split(", ")
    return ["\\boxed{" + ", ".join(words[::-1]) + "}", "\\boxed{" + ", ".join(words[:-1]) + "}"]


def _word_sorting_mistake(row, fa):
    if row["answer"] is None:
        return ["\\boxed{1}", "\\boxed{Yes}"]
    return [f"\\boxed{{{row['answer'] + 1}}}", "\\boxed{No}"]


def _wordscapes(row, fa):
    grid = json.loads(fa)
    i, j = next((i, j) for i, r in enumerate(grid) for j, c in enumerate(r) if c.strip())
    blanked = [r[:] for r in grid]
    blanked[i][j] = " "
    changed = [r[:] for r in grid]
    changed[i][j] = "q" if grid[i][j] != "q" else "z"
    whole = [r[:] for r in grid]
    whole[i][j] = "".join(row["metadata"]["across_words"] + row["metadata"]["down_words"])
    return [json.dumps(blanked), json.dumps(changed), json.dumps(whole)]


PERTURB = {
    "arrow_maze": _arrow_maze, "boolean_expressions": _boolean_expressions, "buggy_tables": _buggy_tables,
    "calcudoko": _calcudoko, "campsite": _campsite, "cryptarithm": _cryptarithm,
    "dyck_language": _dyck_language, "dyck_language_errors": _dyck_language_errors,
    "dyck_language_reasoning_errors": _dyck_language_reasoning_errors, "futoshiki": _futoshiki,
    "game_of_24": _game_of_24, "goods_exchange": _goods_exchange, "kukurasu": _kukurasu,
    "math_path": _math_path, "minesweeper": _minesweeper, "norinori": _norinori,
    "number_wall": _number_wall, "numbrix": _numbrix, "object_counting": _counting,
    "object_properties": _counting, "operation": _operation, "skyscraper_puzzle": _skyscraper,
    "space_reasoning": _space_reasoning, "space_reasoning_tree": _space_reasoning_tree,
    "star_placement_puzzle": _star_placement, "sudoku": _sudoku, "survo": _survo,
    "time_sequence": _time_sequence, "web_of_lies": _web_of_lies, "word_sorting": _word_sorting,
    "word_sorting_mistake": _word_sorting_mistake, "wordscapes": _wordscapes,
}


def test_every_task_type_has_perturbations():
    assert set(PERTURB) == {k if k != "mathador" else "game_of_24" for k in VERIFIERS} - {"cipher"}


@needs_data
@pytest.mark.parametrize("task_type", sorted(PERTURB))
def test_perturbed_answers_fail(task, rows, problems, task_type):
    items = [r for r in rows if r["task"] == task_type][:PER_TYPE]
    accepted = []
    for r in items:
        wrong_answers = PERTURB[task_type](r, r["formatted_answer"])
        assert wrong_answers
        for wrong in wrong_answers:
            assert wrong != r["formatted_answer"]
            if task.verify(problems[r["id"]], respond(wrong)).correct:
                accepted.append((r["id"], wrong))
    assert accepted == []


@needs_data
def test_game_of_24_official_mode_accepts_any_value(rows):
    r = next(r for r in rows if r["task"] == "game_of_24")
    rec = SynLogicRecord(r["question"], r["answer"], r["metadata"])
    expr = "```python\n" + " + ".join(map(str, r["metadata"]["numbers"])) + "\n```"
    assert not game_of_24(rec, expr)
    assert game_of_24(rec, expr, check_value=False)
    assert not game_of_24(rec, "```python\n4 + 5 + 8\n```", check_value=False)  # still needs every number
    official = tasks.get("synlogic_easy").with_options(game_of_24_checks_value=False)
    problem = next(p for p in official.load(DATA_DIR) if p.id == r["id"])
    assert official.verify(problem, respond(expr)).correct
    assert not tasks.get("synlogic_easy").verify(problem, respond(expr)).correct


@needs_data
def test_norinori_rejects_an_empty_region_the_official_rule_misses(rows):
    # remove one domino that covers no shadow cell: the official verifier accepts this
    for r in [r for r in rows if r["task"] == "norinori"]:
        regions = r["metadata"]["region_grid"]
        dominoes = r["metadata"]["solution"]
        for k, dom in enumerate(dominoes):
            if all(regions[a - 1][b - 1] != "X" for a, b in dom):
                fewer = [tuple(map(tuple, d)) for i, d in enumerate(dominoes) if i != k]
                answer = repr([list(d) for d in fewer])
                rec = SynLogicRecord(r["question"], r["answer"], r["metadata"])
                assert not VERIFIERS["norinori"](rec, answer), r["id"]
                break


@pytest.mark.parametrize("completion, expected", [
    ("<think>a <answer>x</answer></think><answer> y </answer>", "y"),
    ("<answer>first</answer> <answer>second</answer>", "first"),
    ("<think>t</think>\n<answer>\nmulti\nline\n</answer>", "multi\nline"),
    ("<think>t</think> no tags", ""),
    ("<think>a</think><answer>b</answer></think><answer>c</answer>", "b"),
    ("plain \\boxed{3}", ""),
])
def test_answer_tag_extraction(completion, expected):
    assert synlogic.extract_answer_tag(completion) == expected


def test_check_reasons(task):
    p = Problem("object_counting-x", "synlogic_easy", "q", "7",
                {"task_type": "object_counting", "verifier_key": "object_counting", "metadata": {}, "difficulty": 1})
    assert task.verify(p, "<answer>\\boxed{7}</answer>").reason == "ok"
    assert task.verify(p, "\\boxed{7}").reason == "no_answer"
    assert task.verify(p, "<answer>\\boxed{8}</answer>").reason == "mismatch"
    broken = Problem("time_sequence-x", "synlogic_easy", "q", [1, 1],
                     {"task_type": "time_sequence", "verifier_key": "time_sequence", "metadata": {}, "difficulty": 1})
    verdict = task.verify(broken, "<answer>[1, 1]</answer>")  # metadata lacks the gold: the verifier raises
    assert not verdict.correct and verdict.reason.startswith("error: KeyError")


@pytest.mark.parametrize("expr, value", [
    ("6 -3 *1 +1 *5 -1 *7 -8 -3 %1 +6", -1), ("7 % 3", 1), ("-7 % 3", 2), ("1/3*3", 1), ("(1+2)*3", 9),
])
def test_exact_arithmetic(expr, value):
    assert eval_arithmetic(expr) == value


@pytest.mark.parametrize("expr", ["2**10", "__import__('os')", "1.5+1", "abs(-1)", "[1]"])
def test_arithmetic_rejects_anything_else(expr):
    with pytest.raises(ValueError):
        eval_arithmetic(expr)


def test_cipher_rule():
    rec = SynLogicRecord("q", "[[HELLO]]", {})
    assert VERIFIERS["cipher"](rec, "```python\n[['HELLO']]\n```")
    assert not VERIFIERS["cipher"](rec, "```python\n[['HELL0']]\n```")


@needs_data
def test_prompts(task, problems):
    p = next(iter(problems.values()))
    assert task.prompt(p, "question") == p.text
    default = task.prompt(p)
    assert default.startswith("<|im_start|>system\n" + synlogic.THINK_ANSWER_SYSTEM)
    assert "<|im_start|>user\n" + p.text + "<|im_end|>" in default
    with pytest.raises(UserError, match="template"):
        task.prompt(p, "boxed")


def test_hub_row_mapping():
    data = {"question": "Q?", "answer": "3", "metadata": {"k": 1}, "difficulty": 1}
    row = {"data_source": "val/game_of_24", "extra_info": {"game_data_str": json.dumps(data)}}
    rec = synlogic.record_from_hub_row(row)
    assert rec["task"] == "game_of_24" and rec["verifier_key"] == "mathador"
    assert rec["question"] == "Q?" and rec["metadata"] == {"k": 1}
    assert rec["id"] == synlogic.record_from_hub_row(dict(row))["id"]  # stable
    with pytest.raises(UserError, match="game_data_str"):
        synlogic.record_from_hub_row({"data_source": "val/x", "extra_info": {}})
