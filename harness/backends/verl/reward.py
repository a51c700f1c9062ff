"""verl's custom reward function, scoring with our task verifiers.

The launcher points verl at it with `reward.custom_reward_function.path=pkg://rlvr.harness.backends.verl.reward`
and `.name=compute_score`. verl 0.9.1's reward manager calls
`compute_score(data_source=, solution_str=, ground_truth=, extra_info=)` from a thread pool; the
parquet rows the launcher writes carry the whole `Problem` as JSON in `extra_info["rlvr_problem"]`.

Verification runs in our `VerifierPool` (worker processes with a hard deadline; math-verify's timeouts
only work in a main thread and some inputs hang it), one pool per reward-worker process, sized by
RLVR_VERIFY_WORKERS (default 2) with the deadline RLVR_VERIFY_DEADLINE_S (default 10 s). The reward
is 1.0 for a correct completion and 0.0 otherwise, as in `rlvr train`.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from dataclasses import asdict
from typing import Any

from rlvr.harness.backends.verl import VERIFY_DEADLINE_ENV, VERIFY_WORKERS_ENV
from rlvr.tasks.base import Problem

__all__ = ["compute_score", "problem_to_extra_info", "problem_from_extra_info", "close_pool"]

_POOL: dict[str, Any] = {"pool": None}
_LOCK = threading.Lock()


def _tag(x: Any) -> Any:
    # JSON has no tuples; tag them so a problem's answer and meta come back exactly as they were
    if isinstance(x, tuple):
        return {"__tuple__": [_tag(v) for v in x]}
    if isinstance(x, list):
        return [_tag(v) for v in x]
    if isinstance(x, dict):
        return {k: _tag(v) for k, v in x.items()}
    return x


def _untag(d: dict) -> Any:
    return tuple(d["__tuple__"]) if set(d) == {"__tuple__"} else d


def problem_to_extra_info(problem: Problem) -> dict[str, str]:
    """The `extra_info` column of a parquet row: the problem as JSON (one string column, so rows of
    tasks with different `answer`/`meta` shapes share one parquet schema); raises ValueError unless
    it reads back equal to `problem`."""
    try:
        text = json.dumps(_tag(asdict(problem)), sort_keys=True)
    except TypeError as e:
        raise ValueError(f"task {problem.task}, problem {problem.id}: not JSON-serialisable ({e})") from None
    info = {"rlvr_problem": text}
    if problem_from_extra_info(info) != problem:
        raise ValueError(f"task {problem.task}, problem {problem.id}: does not survive a JSON round trip")
    return info


def problem_from_extra_info(extra_info: dict | None) -> Problem:
    if not extra_info or "rlvr_problem" not in extra_info:
        raise ValueError("rlvr reward: extra_info has no 'rlvr_problem'; was the data written by "
                         "`rlvr train --backend verl`?")
    return Problem(**json.loads(extra_info["rlvr_problem"], object_hook=_untag))


def _pool():
    with _LOCK:
        if _POOL["pool"] is None:
            from rlvr.harness.verify.pool import VerifierPool

            _POOL["pool"] = VerifierPool(workers=int(os.environ.get(VERIFY_WORKERS_ENV, "2")),
                                         deadline_s=float(os.environ.get(VERIFY_DEADLINE_ENV, "10")))
        return _POOL["pool"]


def close_pool() -> None:
    """Stop this process's verifier pool (also called at interpreter exit)."""
    with _LOCK:
        pool, _POOL["pool"] = _POOL["pool"], None
    if pool is not None:
        pool.close()


atexit.register(close_pool)


def compute_score(data_source: str, solution_str: str, ground_truth: Any = None, extra_info: dict | None = None,
                  **kwargs: Any) -> dict[str, float]:
    """{"score": 1.0 or 0.0, "acc": same} for one completion; extra keyword arguments are ignored."""
    from rlvr.harness.verify.pool import retry_errors

    problem = problem_from_extra_info(extra_info)
    pool = _pool()
    item = (problem.task, problem, solution_str)
    (verdict,) = retry_errors(pool, [item], [pool.submit(*item).result().verdict])
    if verdict.error:   # never a reward of 0 for a completion nobody judged
        raise RuntimeError(f"rlvr reward: the verifier could not judge a completion of {problem.task} problem "
                           f"{problem.id} ({verdict.reason})")
    score = 1.0 if verdict.correct else 0.0
    return {"score": score, "acc": score}
