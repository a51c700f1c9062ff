"""Verifying completions in worker processes, under a hard per-item deadline, with a verdict cache.

The parent calls `task.extract` (cheap string work) itself: completions with no answer never reach a
worker, and the extracted string is the cache key together with the task name and problem id. With
K = 1024 samples per problem most answers repeat, so most samples are answered from the cache, and
concurrent duplicates wait for the one check already in flight.

Each worker runs `task.check` in its main thread (math-verify's signal-based timeouts only work there).
A worker that passes the deadline on an item is killed and replaced. A verification has three
outcomes (`Verdict.outcome`): correct, incorrect, and error, when the verifier could not judge: the
check passed the pool's deadline, raised (the worker lives on), or its worker died. An error is never a
wrong answer: pass@k leaves it out and `rlvr eval` verifies it again when re-run.
Workers start with "forkserver" (or "spawn"), never plain fork, so the pool is safe to create in a
process that has loaded torch or started threads. Workers find a task by name through `tasks.get`,
after importing the module that defines it (sent along with each item), so any importable module can
define tasks, including test modules.

    with VerifierPool(workers=8, deadline_s=10) as pool:
        verdicts = pool.verify_many((task_name, problem, completion) for ...)
        futures = [pool.submit(task_name, problem, completion) for ...]   # streaming, while sampling
        print(pool.stats)

Errors are never cached: the next submission of the same input is checked again (a sandbox that
could not start may start now). Concurrent duplicates of an errored check share its error.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from rlvr.tasks.base import Problem, Task, Verdict

from rlvr import tasks as task_registry

DEFAULT_DEADLINE_S = 10.0
# added to a task's own check budget: the sandbox's start and the judge's replies around the tests
CHECK_BUDGET_MARGIN_S = 5.0


@dataclass(frozen=True)
class VerifyResult:
    """One sample's outcome.

    verify_time: seconds this sample cost: its extraction plus the check it triggered (the deadline for
                 a timeout; nothing for a cache hit). The run store keeps it per sample.
    cache_hit:   the verdict came from the cache or from an identical check already in flight.
    """

    verdict: Verdict
    verify_time: float
    cache_hit: bool


@dataclass(frozen=True)
class PoolStats:
    submitted: int = 0        # samples given to the pool
    no_answer: int = 0        # extract found nothing; never sent to a worker
    cache_hits: int = 0       # answered by the cache or by a duplicate in flight
    checks: int = 0           # checks run by workers (finished, timed out or crashed)
    timeouts: int = 0         # checks killed at the deadline (error verdicts)
    errors: int = 0           # checks that raised or whose worker died, and failed extractions (error verdicts)
    worker_restarts: int = 0  # workers replaced after a timeout or a crash
    check_seconds: float = 0.0

    @property
    def hit_rate(self) -> float:
        answered = self.submitted - self.no_answer
        return self.cache_hits / answered if answered else 0.0


def preflight(task_names: Iterable[str]) -> None:
    """Before any model is loaded or sampled from: every task's verifier can judge here. A task's
    `preflight()` (code tasks: the sandbox starts and judges a known-good and a known-bad program
    correctly) raises a one-line `UserError` saying what to install or set; any other failure is turned
    into one. Tasks cache their own result (per process and sandbox setting)."""
    from rlvr.harness.errors import UserError

    for name in task_registry.expand(list(task_names)):
        check = getattr(task_registry.get(name), "preflight", None)
        if callable(check):
            try:
                check()
            except UserError:
                raise
            except Exception as e:
                raise UserError(f"task {name}: its verifier cannot run here ({type(e).__name__}: {e})") from None


def retry_errors(pool: VerifierPool, items: Sequence[tuple[str | Task, Problem, str]],
                 verdicts: Sequence[Verdict]) -> list[Verdict]:
    """`verdicts` of `items`, with each error checked once more (errors are never cached, so the check
    runs again). For callers that need a judgement now (a training reward, lm-eval's metric) and must
    not turn an error into a score: an error that remains is theirs to raise."""
    out = list(verdicts)
    again = [i for i, v in enumerate(out) if v.error]
    if again:
        for i, v in zip(again, pool.verify_many([items[i] for i in again]), strict=True):
            out[i] = v
    return out


def verifier_versions(task_names: Iterable[str]) -> dict:
    """What a verdict depends on besides the harness's own code: the verifier libraries' versions and,
    for tasks that run programs, the sandbox's isolation. Recorded in run.json (`verifiers`)."""
    from importlib import metadata

    names = task_registry.expand(list(task_names))
    out: dict = {}
    for dist in ("math-verify", "sympy", "latex2sympy2_extended", "reasoning-gym"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if any(task_registry.get(n).domain in ("code", "micro") for n in names):
        from rlvr.tasks.sandbox import sandbox_provenance

        out["sandbox"] = sandbox_provenance()
    return out


# ---------------------------------------------------------------------------------------------------
# worker process


def _worker_main(conn: Connection, preload: Sequence[str]) -> None:
    # Ctrl-C belongs to the parent, which shuts the pool down; math-verify logs every internal timeout.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    try:
        task_registry.available()   # imports the registered task modules now, not inside a deadline
    except Exception:
        pass
    for module in preload:
        try:
            warm_up = getattr(importlib.import_module(module), "warm_up", None)
            if callable(warm_up):
                warm_up()
        except Exception:
            pass    # reported per item ("error: ... unknown task"), not by a crash loop at start
    conn.send(("ready",))
    imported = set(preload)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        seq, module, task_name, problem, extracted = msg
        if module and module not in imported:
            try:
                importlib.import_module(module)
            except Exception:
                pass    # reported below when the task is not found
            imported.add(module)
            conn.send(("imported", seq))   # the parent restarts this item's clock: imports are not checks
        start = time.perf_counter()
        try:
            verdict = task_registry.get(task_name).check(problem, extracted)
            if not isinstance(verdict, Verdict):
                raise TypeError(f"check returned {type(verdict).__name__}, not Verdict")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as e:   # math-verify's TimeoutException is a BaseException
            verdict = Verdict.failed(extracted, f"{type(e).__name__}: {e}")
        elapsed = time.perf_counter() - start
        try:
            conn.send(("done", seq, verdict, elapsed))
        except Exception as e:   # an unpicklable verdict (a task bug)
            conn.send(("done", seq, Verdict.failed(extracted, f"result not sendable: {e}"), elapsed))


# ---------------------------------------------------------------------------------------------------
# parent side

Deliver = Callable[[VerifyResult], None]


class _Job:
    __slots__ = ("key", "module", "problem", "extracted", "waiters", "seq", "started", "deadline_s")

    def __init__(self, key: tuple[str, str, str], module: str, problem: Problem, extracted: str,
                 deadline_s: float):
        self.key = key
        self.module = module
        self.problem = problem
        self.extracted = extracted
        self.deadline_s = deadline_s
        self.waiters: list[tuple[Deliver, float, bool]] = []   # (deliver, extract seconds, cache hit)
        self.seq = 0
        self.started = 0.0


class _Worker:
    __slots__ = ("proc", "conn", "ready", "job")

    def __init__(self, proc, conn: Connection):
        self.proc = proc
        self.conn = conn
        self.ready = False
        self.job: _Job | None = None


class VerifierPool:
    """A pool of verifier processes with a hard per-item deadline and a verdict cache.

    workers:      number of processes (default: the CPUs this process may use).
    deadline_s:   wall-clock seconds one check may take before its worker is killed; a task whose check
                  has its own time budget (`Task.check_budget_s`: code tests run under per-test limits)
                  gets that budget plus CHECK_BUDGET_MARGIN_S when it is longer.
    preload:      modules the workers import at start (the task modules you will verify), so that the
                  first items do not wait for imports; a module's `warm_up()`, if it has one, runs
                  then too, outside any item's deadline.
    start_method: "forkserver" (default where available) or "spawn".
    """

    def __init__(self, workers: int | None = None, deadline_s: float = DEFAULT_DEADLINE_S,
                 preload: Sequence[str] = (), start_method: str | None = None):
        if workers is None:
            workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0, got {deadline_s}")
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        if start_method not in ("forkserver", "spawn"):
            raise ValueError(f"start_method {start_method!r}: use 'forkserver' or 'spawn' (fork is unsafe "
                             f"once torch or threads are loaded)")
        self.n_workers = workers
        self.deadline_s = float(deadline_s)
        self._ctx = mp.get_context(start_method)
        self._preload = list(dict.fromkeys(preload))
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(self._preload)   # ignored when a forkserver already runs
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, str], Verdict] = {}
        self._inflight: dict[tuple[str, str, str], _Job] = {}
        self._pending: deque[_Job] = deque()
        self._stats = {f: 0 for f in PoolStats.__dataclass_fields__}
        self._stats["check_seconds"] = 0.0
        self._seq = 0
        self._closing = False
        self._broken: BaseException | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._workers = [self._start_worker() for _ in range(workers)]
        self._thread = threading.Thread(target=self._run, name="verifier-pool", daemon=True)
        self._thread.start()

    # -- public API ----------------------------------------------------------------------------------
    def submit(self, task: str | Task, problem: Problem, completion: str) -> Future[VerifyResult]:
        """Verify one completion; the future resolves to a VerifyResult. Safe to call from any thread.

        `task` is a registered name or a task instance; an instance (a configured copy, say
        `MathTask.with_options(answer_mode="any_boxed")`) is used for `extract` here, while the worker
        runs `check` on the registered task of the same name, so options must act through `extract`.
        Futures are resolved on the pool's dispatcher thread."""
        fut: Future[VerifyResult] = Future()
        self._submit(task, problem, completion, fut.set_result)
        return fut

    def map(self, items: Iterable[tuple[str | Task, Problem, str]]) -> list[VerifyResult]:
        """Verify (task, problem, completion) items; results in the order of the items."""
        results: list[VerifyResult | None] = []
        remaining = [1]             # one extra count, released after the last submit
        done = threading.Event()
        count_lock = threading.Lock()

        def slot(i: int) -> Deliver:
            def deliver(r: VerifyResult) -> None:
                results[i] = r
                with count_lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()
            return deliver

        for i, (task, problem, completion) in enumerate(items):
            results.append(None)
            with count_lock:
                remaining[0] += 1
            self._submit(task, problem, completion, slot(i))
        with count_lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()
        while not done.wait(0.5):
            if self._broken is not None:
                raise RuntimeError("verifier pool failed") from self._broken
        return results   # type: ignore[return-value]

    def verify_many(self, items: Iterable[tuple[str | Task, Problem, str]]) -> list[Verdict]:
        """The verdicts of `map`, in order."""
        return [r.verdict for r in self.map(items)]

    @property
    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(**self._stats)

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.proc.pid for w in self._workers]

    def close(self) -> None:
        """Finish the submitted work, then stop the workers."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._wake()
        self._thread.join()
        for w in self._workers:
            try:
                w.conn.send(None)
            except OSError:
                pass
        for w in self._workers:
            w.proc.join(timeout=2)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
            w.conn.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- submission (caller threads) -----------------------------------------------------------------
    def _submit(self, task: str | Task, problem: Problem, completion: str, deliver: Deliver) -> None:
        if self._broken is not None:
            raise RuntimeError("verifier pool failed") from self._broken
        if self._closing:
            raise RuntimeError("verifier pool is closed")
        t0 = time.perf_counter()
        task_obj = task_registry.get(task) if isinstance(task, str) else task
        try:
            extracted = task_obj.extract(problem, completion)
        except Exception as e:
            with self._lock:
                self._stats["submitted"] += 1
                self._stats["errors"] += 1
            deliver(VerifyResult(Verdict.failed(None, f"extract: {type(e).__name__}: {e}"),
                                 time.perf_counter() - t0, False))
            return
        t_extract = time.perf_counter() - t0
        if extracted is None:
            with self._lock:
                self._stats["submitted"] += 1
                self._stats["no_answer"] += 1
            deliver(VerifyResult(Verdict(False, 0.0, None, "no_answer"), t_extract, False))
            return
        key = (task_obj.name, problem.id, extracted)
        deadline_s = self._deadline_for(task_obj, problem)   # outside the lock: a task may read its tests
        with self._lock:
            if self._closing:
                raise RuntimeError("verifier pool is closed")
            self._stats["submitted"] += 1
            cached = self._cache.get(key)
            if cached is None:
                job = self._inflight.get(key)
                if job is not None:
                    self._stats["cache_hits"] += 1
                    job.waiters.append((deliver, t_extract, True))
                    return
                job = _Job(key, type(task_obj).__module__, problem, extracted, deadline_s)
                job.waiters.append((deliver, t_extract, False))
                self._inflight[key] = job
                self._pending.append(job)
            else:
                self._stats["cache_hits"] += 1
        if cached is not None:
            deliver(VerifyResult(cached, t_extract, True))
        else:
            self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass    # the pipe is full: the dispatcher is awake anyway

    # -- dispatcher thread ---------------------------------------------------------------------------
    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        with self._lock:
            preload = list(self._preload)
        proc = self._ctx.Process(target=_worker_main, args=(child_conn, preload), daemon=True,
                                 name="rlvr-verifier")
        proc.start()
        child_conn.close()
        return _Worker(proc, parent_conn)

    def _replace(self, w: _Worker) -> None:
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join()
        w.conn.close()
        new = self._start_worker()
        with self._lock:
            self._stats["worker_restarts"] += 1
            self._workers[self._workers.index(w)] = new

    def _finish(self, job: _Job, verdict: Verdict, seconds: float, counter: str | None = None) -> None:
        with self._lock:
            if not verdict.error:
                self._cache[job.key] = verdict
            del self._inflight[job.key]
            self._stats["checks"] += 1
            self._stats["check_seconds"] += seconds
            if counter:
                self._stats[counter] += 1
            waiters = job.waiters
            job.waiters = []
        for deliver, t_extract, hit in waiters:
            deliver(VerifyResult(verdict, t_extract + (0.0 if hit else seconds), hit))

    def _dispatch(self) -> None:
        for w in self._workers:
            if not (w.ready and w.job is None):
                continue
            with self._lock:
                if not self._pending:
                    return
                job = self._pending.popleft()
                self._seq += 1
                job.seq = self._seq
                if job.module not in self._preload:
                    self._preload.append(job.module)   # replacements import it before they report ready
            job.started = time.monotonic()
            w.job = job
            try:
                w.conn.send((job.seq, job.module, job.key[0], job.problem, job.extracted))
            except (OSError, ValueError):
                pass    # the worker died; its EOF is handled by the wait loop

    def _on_message(self, w: _Worker) -> None:
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            w.proc.join(timeout=1.0)    # the pipe closes before the exit status is known
            job, code = w.job, w.proc.exitcode
            w.job = None
            self._replace(w)
            if job is not None:
                self._finish(job, Verdict.failed(job.extracted, f"worker died (exit code {code})"),
                             time.monotonic() - job.started, "errors")
            return
        if msg[0] == "ready":
            w.ready = True
        elif msg[0] == "imported" and w.job is not None and w.job.seq == msg[1]:
            w.job.started = time.monotonic()
        elif msg[0] == "done" and w.job is not None and w.job.seq == msg[1]:
            job, w.job = w.job, None
            verdict, seconds = msg[2], msg[3]
            self._finish(job, verdict, seconds, "errors" if verdict.error else None)

    def _deadline_for(self, task: Task, problem: Problem) -> float:
        budget = task.check_budget_s(problem)
        return self.deadline_s if budget is None else max(self.deadline_s, budget + CHECK_BUDGET_MARGIN_S)

    def _run(self) -> None:
        try:
            while True:
                self._dispatch()
                with self._lock:
                    idle = not self._pending and not self._inflight
                    if self._closing and idle:
                        return
                now = time.monotonic()
                busy = [w for w in self._workers if w.job is not None]
                timeout = min((w.job.started + w.job.deadline_s - now for w in busy), default=1.0)
                conns = {w.conn: w for w in self._workers}
                for ready in wait([*conns, self._wake_r], timeout=max(0.0, min(timeout, 1.0))):
                    if ready == self._wake_r:
                        os.read(self._wake_r, 65536)
                    else:
                        self._on_message(conns[ready])
                now = time.monotonic()
                for w in list(self._workers):
                    if w.job is not None and now - w.job.started > w.job.deadline_s:
                        job, w.job = w.job, None
                        self._replace(w)
                        self._finish(job, Verdict.failed(job.extracted, f"verifier timeout: the check passed "
                                                         f"the pool's {job.deadline_s:g} s deadline"),
                                     now - job.started, "timeouts")
        except BaseException as e:   # a bug here must not leave callers waiting forever
            self._broken = e
            with self._lock:
                jobs = list(self._inflight.values())
                self._inflight.clear()
                self._pending.clear()
            for job in jobs:
                for deliver, t_extract, hit in job.waiters:
                    deliver(VerifyResult(Verdict.failed(job.extracted, f"pool: {e}"), t_extract, hit))
            raise
