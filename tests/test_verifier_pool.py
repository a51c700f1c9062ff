"""The verifier pool: hard deadlines, worker replacement, order, cache, errors.

The test-only task below lives in this module; workers import it by module name (sent with each item),
which is how any task module reaches a spawned or forkserver worker.
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
import sympy
from rlvr.harness.verify.pool import PoolStats, VerifierPool, VerifyResult
from rlvr.tasks.base import Problem, Task, Verdict

from rlvr import tasks


class _BaseTimeout(BaseException):
    pass


@tasks.register
class PoolProbeTask(Task):
    """extract: the stripped completion (None when empty). check: correct iff it equals the gold, with
    behaviours on demand: `hang`, `spin` (busy loop), `tower` (sympy evaluating 5^5^5^5^5, stuck in C
    where no signal reaches it: math-verify's own timeouts cannot stop it), `raise`, `timeout-exc`
    (a BaseException, as math-verify's TimeoutException is), `die` (the process exits), `sleep:S`."""

    name = "pool_probe"
    domain = "micro"

    def extract(self, problem: Problem, completion: str) -> str | None:
        return completion.strip() or None

    def check(self, problem: Problem, extracted: str) -> Verdict:
        if extracted == "hang":
            time.sleep(3600)
        if extracted == "spin":
            while True:
                pass
        if extracted == "tower":
            sympy.N(sympy.Pow(5, sympy.Pow(5, sympy.Pow(5, sympy.Pow(5, 5, evaluate=False), evaluate=False),
                                           evaluate=False), evaluate=False))
        if extracted == "raise":
            raise ValueError("boom")
        if extracted == "timeout-exc":
            raise _BaseTimeout("alarm")
        if extracted == "die":
            os._exit(3)
        if extracted.startswith("sleep:"):
            time.sleep(float(extracted.split(":")[1]))
        ok = extracted == problem.answer
        return Verdict(ok, float(ok), extracted, "ok" if ok else "mismatch")

    def check_budget_s(self, problem: Problem) -> float | None:
        return problem.meta.get("budget")


def P(pid: str, answer: str = "42") -> Problem:
    return Problem(id=pid, task="pool_probe", text="q", answer=answer)


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(workers=2, deadline_s=1.5, preload=[__name__]) as p:
        yield p


def delta(before: PoolStats, after: PoolStats) -> dict:
    return {f: getattr(after, f) - getattr(before, f) for f in PoolStats.__dataclass_fields__}


def test_verdicts_and_order_preserved(pool):
    rng = random.Random(0)
    items, expected = [], []
    for i in range(60):
        answer = str(rng.randint(0, 5))
        completion = rng.choice([answer, "7", f"sleep:0.0{rng.randint(0, 3)}", ""])
        items.append(("pool_probe", P(f"q{i % 7}", answer), completion))
        expected.append(completion == answer)
    verdicts = pool.verify_many(items)
    assert [v.correct for v in verdicts] == expected
    assert [v.reason for v, (_, _, c) in zip(verdicts, items) if not c] == ["no_answer"] * sum(1 for *_, c in items if not c)


def test_hung_check_is_killed_replaced_and_counted(pool):
    before, pids = pool.stats, pool.worker_pids()
    t0 = time.monotonic()
    results = pool.map([("pool_probe", P("h1"), "hang"), ("pool_probe", P("h1"), "42"),
                        ("pool_probe", P("h2"), "spin"), ("pool_probe", P("h2"), "tower")])
    elapsed = time.monotonic() - t0
    assert [r.verdict.outcome for r in results] == ["error", "correct", "error", "error"]
    assert all(r.verdict.reason.startswith("error: verifier timeout") for r in results if r.verdict.error)
    assert [r.verdict.correct for r in results] == [False, True, False, False]
    assert results[0].verify_time >= 1.5
    d = delta(before, pool.stats)
    assert d["timeouts"] == 3 and d["worker_restarts"] == 3
    assert elapsed < 15          # deadlines ran in parallel; nobody waited for the sleep
    assert set(pool.worker_pids()) != set(pids)
    # The replacements work.
    assert [v.correct for v in pool.verify_many([("pool_probe", P("h3"), "42")] * 3)] == [True] * 3


def test_a_tasks_own_check_budget_extends_the_deadline(pool):
    """A code task's tests have their own time limits; the pool's shorter deadline does not cut them."""
    slow = Problem(id="budget", task="pool_probe", text="q", answer="sleep:2.5", meta={"budget": 3.0})
    plain = Problem(id="no-budget", task="pool_probe", text="q", answer="sleep:2.5")
    done = pool.map([("pool_probe", slow, "sleep:2.5"), ("pool_probe", plain, "sleep:2.5")])
    assert [r.verdict.outcome for r in done] == ["correct", "error"]


def test_errors_are_never_cached(pool):
    """A verifier that could not judge (timeout, exception, dead worker) is asked again next time: the
    cause may be gone (a sandbox that could not start), and an error must not stand in for a verdict."""
    pool.verify_many([("pool_probe", P("c1"), "hang"), ("pool_probe", P("c1"), "raise")])
    before = pool.stats
    (hung, raised) = pool.map([("pool_probe", P("c1"), "hang"), ("pool_probe", P("c1"), "raise")])
    assert not hung.cache_hit and hung.verdict.error and hung.verify_time >= 1.5
    assert not raised.cache_hit and raised.verdict.error
    d = delta(before, pool.stats)
    assert d["timeouts"] == 1 and d["errors"] == 1 and d["cache_hits"] == 0
    # a judged verdict is still cached
    pool.verify_many([("pool_probe", P("c1"), "42")])
    (again,) = pool.map([("pool_probe", P("c1"), "42")])
    assert again.cache_hit and again.verdict.outcome == "correct"


def test_exception_in_check_is_an_error_verdict_and_the_worker_survives(pool):
    before, pids = pool.stats, pool.worker_pids()
    verdicts = pool.verify_many([("pool_probe", P("e1"), "raise"), ("pool_probe", P("e1"), "timeout-exc"),
                                 ("pool_probe", P("e1"), "42")])
    assert [v.outcome for v in verdicts] == ["error", "error", "correct"]
    assert verdicts[0].reason == "error: ValueError: boom"
    assert verdicts[1].reason == "error: _BaseTimeout: alarm"
    d = delta(before, pool.stats)
    assert d["errors"] == 2 and d["worker_restarts"] == 0
    assert pool.worker_pids() == pids


def test_dead_worker_is_an_error_verdict_and_is_replaced(pool):
    before = pool.stats
    verdicts = pool.verify_many([("pool_probe", P("d1"), "die"), ("pool_probe", P("d1"), "42")])
    assert verdicts[0].reason == "error: worker died (exit code 3)" and verdicts[0].error
    assert verdicts[1].correct
    d = delta(before, pool.stats)
    assert d["errors"] == 1 and d["worker_restarts"] == 1


def test_cache_hits_by_task_problem_and_answer(pool):
    before = pool.stats
    items = [("pool_probe", P("k1"), "42")] * 50 + [("pool_probe", P("k2"), "42")] * 50 + \
            [("pool_probe", P("k1"), " 42 ")] * 10 + [("pool_probe", P("k1"), "41")] * 10
    results = pool.map(items)
    d = delta(before, pool.stats)
    # Three distinct keys: (k1, "42"), (k2, "42"), (k1, "41"); " 42 " extracts to "42".
    assert d["checks"] == 3
    assert d["cache_hits"] == len(items) - 3
    assert d["submitted"] == len(items)
    assert sum(not r.cache_hit for r in results) == 3
    assert [r.verdict.correct for r in results] == [True] * 110 + [False] * 10
    again = pool.map(items[:5])
    assert all(r.cache_hit for r in again)
    assert pool.stats.hit_rate > 0


def test_no_answer_never_reaches_a_worker(pool):
    before = pool.stats
    (r,) = pool.map([("pool_probe", P("n1"), "   ")])
    assert r.verdict == Verdict(False, 0.0, None, "no_answer")
    d = delta(before, pool.stats)
    assert d["no_answer"] == 1 and d["checks"] == 0


def test_verify_time_is_recorded(pool):
    (r,) = pool.map([("pool_probe", P("t1"), "sleep:0.2")])
    assert isinstance(r, VerifyResult)
    assert 0.2 <= r.verify_time < 1.5
    (hit,) = pool.map([("pool_probe", P("t1"), "sleep:0.2")])
    assert hit.cache_hit and hit.verify_time < 0.05


def test_submit_streams_while_items_are_still_produced(pool):
    futures = []

    def producer():
        for i in range(20):
            futures.append(pool.submit("pool_probe", P(f"s{i}", str(i)), str(i if i % 3 else -1)))
            time.sleep(0.005)

    t = threading.Thread(target=producer)
    t.start()
    t.join()
    got = [f.result(timeout=10).verdict.correct for f in futures]
    assert got == [bool(i % 3) for i in range(20)]


def test_task_instance_and_concurrent_duplicates(pool):
    task = tasks.get("pool_probe")
    futures = [pool.submit(task, P("u1"), "sleep:0.3") for _ in range(8)]
    results = [f.result(timeout=10) for f in futures]
    assert sum(not r.cache_hit for r in results) == 1   # the seven duplicates waited for the one check
    assert all(r.verdict.extracted == "sleep:0.3" for r in results)


def test_spawn_start_method_and_bad_arguments():
    with VerifierPool(workers=1, deadline_s=5, start_method="spawn") as p:
        assert p.verify_many([("pool_probe", P("x"), "42")])[0].correct
    with pytest.raises(ValueError, match="workers"):
        VerifierPool(workers=0)
    with pytest.raises(ValueError, match="fork"):
        VerifierPool(workers=1, start_method="fork")
    with pytest.raises(ValueError, match="deadline"):
        VerifierPool(workers=1, deadline_s=0)


def test_closed_pool_refuses_work():
    p = VerifierPool(workers=1, deadline_s=5)
    p.close()
    with pytest.raises(RuntimeError, match="closed"):
        p.submit("pool_probe", P("z"), "42")
