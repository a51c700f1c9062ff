"""Running untrusted programs: one subprocess per program, under bubblewrap where it works.

Model-written code never runs inside the harness process. `run_program` starts a fresh Python
interpreter for every program and returns a `RunResult`; `run_many` runs many in parallel (a thread
pool of launches: the isolation is the subprocess, not the thread). `sandbox_info()` says which
isolation is active.

Layers, outermost first:

1. **bubblewrap** (`/usr/bin/bwrap`, Debian package `bubblewrap`): read-only root, fresh `/dev` and
   `/proc`, a private size-capped tmpfs on `/tmp` that is the working directory and the only place
   the program can write, `/run` and the invoking user's home masked, new network namespace (loopback
   only, so no connection reaches the host), new pid/ipc/uts namespaces, `--die-with-parent`,
   `--new-session`. Killing the outer bwrap kills the pid namespace's init and the kernel then kills
   every process in it, including ones that called `setsid()` to leave our process group.
2. **a fresh uid per program** (when the harness runs as root). RLIMIT_NPROC counts the tasks of the
   process's *real* uid in the initial user namespace and is never enforced for uid 0, so a fork bomb
   run as root (even root inside a user namespace, which maps back to uid 0) is not stopped by it. As
   root we therefore run bwrap privileged (no user namespace) and the boot code below switches to a
   random uid in [1.5e9, 1.6e9) before any program code runs; the program then has no capabilities,
   cannot write root-owned files, and NPROC counts exactly its own processes. Directories on the path
   to the interpreter that such a uid cannot enter (a pyenv under `/root`) are masked with a tmpfs and
   the interpreter directories bound back read-only. Not root: bwrap makes a user namespace with our
   own uid, and NPROC is set to (our uid's current task count + the budget), which is shared with
   whatever else that uid runs; documented, not exact.
3. **resource limits set in the child** by a small trusted boot script that runs first in the
   sandboxed interpreter: RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NPROC, RLIMIT_CORE=0,
   RLIMIT_NOFILE; soft = hard, so the program cannot raise them.
4. **in the parent**: a wall-clock deadline that SIGKILLs the whole process group, stdout and stderr
   read incrementally with a byte cap (past it: kill, status `output_limit`), and an environment built
   from scratch (nothing of the parent's leaks; `PYTHONHASHSEED=0` so set/dict-order output does not
   vary between runs).

**Fallback** (bwrap missing or not working, or forced with `RLVR_SANDBOX=fallback`): the same boot
script, limits, deadline, output cap, stripped environment, a temporary working directory and a new
session, but NO namespaces: the program can see the network, the whole file system with its uid's
rights, and other processes. As root it still switches to a fresh uid when every directory on the
interpreter's path is enterable by others (then cleanup also kills every process of that uid, which
catches `setsid()` escapees); otherwise it REFUSES (`UserError`), because model code run as root
without namespaces can end every process on the machine (`os.kill(-1, 9)`); point
`$RLVR_SANDBOX_PYTHON` at a Python every user can run. Not root: programs run under our own uid and
a `setsid()` escapee can outlive the deadline. It logs a loud warning once per process. `RLVR_SANDBOX=bwrap` (or
`isolation="bwrap"`) refuses the fallback with a `UserError`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError

log = logging.getLogger(__name__)

SANDBOX_ENV = "RLVR_SANDBOX"          # auto (default) | bwrap (refuse the fallback) | fallback (force it)
BWRAP_ENV = "RLVR_BWRAP"              # path to the bwrap binary (default: `bwrap` on PATH)
PYTHON_ENV = "RLVR_SANDBOX_PYTHON"    # interpreter for sandboxed programs (default: sys.executable)
MODES = ("auto", "bwrap", "fallback")
STATUSES = ("ok", "error", "timeout", "memory", "output_limit", "sandbox_error")

_UID_RANGE = (1_500_000_000, 1_600_000_000)
_WORKDIR_IN_BWRAP = "/tmp"


@dataclass(frozen=True)
class RunResult:
    """What happened to one program.

    status:     "ok" (exit 0) | "error" (non-zero exit or a signal) | "timeout" (wall clock or CPU
                limit) | "memory" (died with MemoryError) | "output_limit" (stdout or stderr past the
                cap; killed) | "sandbox_error" (bwrap itself failed to set up).
    returncode: the program's exit status (negative: killed by that signal); None when we killed it.
    """

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    isolation: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class SandboxInfo:
    """Which isolation `run_program` uses. `weaker` is True for the fallback."""

    isolation: str          # "bwrap" | "fallback"
    bwrap: str | None       # the binary, when found
    per_run_uid: bool       # each program runs under its own fresh uid (exact NPROC, no root rights)
    reason: str             # why this isolation (the probe's error when bwrap does not work)

    @property
    def weaker(self) -> bool:
        return self.isolation != "bwrap"


# ----------------------------------------------------------------------------------------------
# The boot script: the first code the sandboxed interpreter runs. Trusted; it reads its job from an
# inherited memfd, sets the limits, drops to the per-run uid, writes the program's files into the
# working directory and runs the main file as __main__.
_BOOT = r"""
import json, os, resource, sys
_fd = int(sys.argv[1])
with os.fdopen(_fd, "rb") as _f:
    _cfg = json.loads(_f.read())
for _name, _soft, _hard in _cfg["rlimits"]:
    resource.setrlimit(getattr(resource, _name), (_soft, _hard))
_wd = _cfg["workdir"]
_uid = _cfg["uid"]
if _uid is not None:
    os.chown(_wd, _uid, _uid)
    os.setgroups([])
    os.setresgid(_uid, _uid, _uid)
    os.setresuid(_uid, _uid, _uid)
if _cfg["nondumpable"]:
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: same-uid processes cannot ptrace us
os.chdir(_wd)
for _path, _text in _cfg["files"].items():
    with open(_path, "w", encoding="utf-8") as _f:
        _f.write(_text)
sys.argv = [_cfg["main"], *_cfg["args"]]
sys.path.insert(0, _wd)  # as `python main.py` would
_main = _cfg["main"]
del _fd, _f, _cfg, _name, _soft, _hard, _wd, _uid
import runpy
runpy.run_path(_main, run_name="__main__")
"""


@dataclass(frozen=True)
class _Limits:
    timeout_s: float
    memory_mb: int
    cpu_s: float
    fsize_mb: int
    nproc: int
    nofile: int
    max_output_bytes: int
    tmpfs_mb: int


_info_cache: dict[str, SandboxInfo] = {}
_info_lock = threading.Lock()
_warned = False


def _mode(isolation: str | None) -> str:
    mode = (isolation or os.environ.get(SANDBOX_ENV) or "auto").strip().lower()
    if mode not in MODES:
        raise UserError(f"${SANDBOX_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def _default_python() -> str:
    return os.environ.get(PYTHON_ENV) or sys.executable


def _is_root() -> bool:
    return os.geteuid() == 0


@functools.cache
def _interpreter_dirs(python: str) -> tuple[Path, ...]:
    """The directories a program run by `python` reads (prefixes, stdlib, site-packages)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        out = subprocess.run([python, "-c", "import sys; print(sys.prefix, sys.base_prefix, sys.exec_prefix, "
                              "sys.base_exec_prefix)"], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise UserError(f"sandbox: cannot run the interpreter {python} ({out.stderr.strip()[-200:]})")
        prefixes = out.stdout.split()
    dirs = {Path(p) for p in prefixes} | {Path(os.path.realpath(python)).parent, Path(python).parent}
    return tuple(sorted(d for d in dirs if d.exists()))


def _blocked_ancestors(path: Path) -> list[Path]:
    """Directories on the way to `path` that a stranger (other users) cannot enter."""
    out = []
    for anc in [*reversed(path.parents), path]:
        try:
            if not anc.stat().st_mode & 0o001:
                out.append(anc)
        except OSError:
            out.append(anc)
    return out


def _python_open_to_others(python: str) -> bool:
    return not any(_blocked_ancestors(d) for d in _interpreter_dirs(python))


def _bwrap_binary() -> str | None:
    cand = os.environ.get(BWRAP_ENV) or shutil.which("bwrap")
    return cand if cand and os.access(cand, os.X_OK) else None


def _mask_args(python: str) -> list[str]:
    """tmpfs over directories the program must not see (or that the per-run uid could not enter on
    the way to the interpreter), then the interpreter directories bound back read-only."""
    masks: set[Path] = set()
    if Path("/run").is_dir():
        masks.add(Path("/run"))       # host unix sockets (a way around --unshare-net)
    home = Path.home()
    if home.is_dir() and home != Path("/"):
        masks.add(home)
    if _is_root():
        for d in _interpreter_dirs(python):
            blocked = _blocked_ancestors(d)
            if blocked:
                masks.add(blocked[0])
    masks = {m for m in masks if not any(o != m and o in m.parents for o in masks)}
    args: list[str] = []
    for m in sorted(masks):
        args += ["--tmpfs", str(m)]
    made: set[Path] = set()
    for d in _interpreter_dirs(python):
        mask = next((m for m in masks if m == d or m in d.parents), None)
        if mask is None:
            continue
        # bwrap would create the directories between the mask and `d` with mode 0700, closed to the
        # per-run uid; make them explicitly, open for traversal.
        for between in reversed(d.parents):
            if mask in between.parents and between not in made:
                made.add(between)
                args += ["--perms", "0755", "--dir", str(between)]
        args += ["--ro-bind", str(d), str(d)]
    return args


def _bwrap_argv(bwrap: str, python: str, limits: _Limits) -> list[str]:
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--size", str(limits.tmpfs_mb << 20), "--tmpfs", _WORKDIR_IN_BWRAP,
            *_mask_args(python),
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--chdir", _WORKDIR_IN_BWRAP]
    if not _is_root():
        argv.append("--unshare-user")
    return argv


def _probe_bwrap(bwrap: str | None, python: str) -> tuple[bool, str]:
    if bwrap is None:
        return False, "bwrap not found (install the Debian package `bubblewrap`, or set $RLVR_BWRAP)"
    res = _run(("print('sandbox-ok')",), "", _default_limits(timeout_s=30.0), "bwrap", bwrap, python,
               files={}, args=(), pass_fds=(), cancel=None)
    if res.status == "ok" and res.stdout.strip() == "sandbox-ok":
        return True, f"{bwrap} works"
    detail = (res.stderr.strip().splitlines() or [res.status])[-1][:200]
    return False, f"{bwrap} does not work here ({res.status}: {detail})"


def sandbox_info(isolation: str | None = None, python: str | None = None) -> SandboxInfo:
    """Which isolation `run_program` will use (probes bwrap once per process and caches it).

    isolation: "auto" | "bwrap" | "fallback"; default `$RLVR_SANDBOX` or "auto". "bwrap" raises a
    `UserError` when bwrap does not work instead of falling back.
    """
    mode = _mode(isolation)
    python = python or _default_python()
    key = f"{mode}|{python}"
    with _info_lock:
        info = _info_cache.get(key)
        if info is None:
            bwrap = _bwrap_binary()
            if mode == "fallback":
                info = _fallback_info(bwrap, python, f"forced by {SANDBOX_ENV}=fallback / isolation='fallback'")
            else:
                works, why = _probe_bwrap(bwrap, python)
                if works:
                    info = SandboxInfo("bwrap", bwrap, _is_root(), why)
                elif mode == "bwrap":
                    raise UserError(f"sandbox: {why}; unset ${SANDBOX_ENV}=bwrap to allow the weaker fallback")
                else:
                    info = _fallback_info(bwrap, python, why)
            _info_cache[key] = info
    if info.weaker:
        _warn_fallback(info)
    return info


def _fallback_info(bwrap: str | None, python: str, why: str) -> SandboxInfo:
    if _is_root() and not _python_open_to_others(python):
        # Running model code as root without namespaces is not "weaker", it is unsafe: one
        # os.kill(-1, 9) ends every process on the machine. Refuse instead.
        raise UserError(f"sandbox: no bwrap ({why}) and the fallback would run programs as root, because "
                        f"other uids cannot enter the directories of {python}; install bubblewrap, or set "
                        f"${PYTHON_ENV} to a Python that every user can run (e.g. /usr/bin/python3)")
    return SandboxInfo("fallback", bwrap, _is_root(), why)


def _warn_fallback(info: SandboxInfo) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    who = "a fresh uid per program" if info.per_run_uid else "the harness's own uid"
    log.warning("SANDBOX FALLBACK: untrusted programs run WITHOUT namespaces (network, file system and "
                "other processes visible) under %s, with rlimits, a deadline and an output cap only. "
                "Reason: %s. Set %s=bwrap to refuse this.", who, info.reason, SANDBOX_ENV)


# ----------------------------------------------------------------------------------------------

def _default_limits(timeout_s: float = 10.0, memory_mb: int = 2048, cpu_s: float | None = None,
                    fsize_mb: int = 16, nproc: int = 32, nofile: int = 256,
                    max_output_bytes: int = 1 << 20, tmpfs_mb: int = 64) -> _Limits:
    if timeout_s <= 0 or memory_mb <= 0 or nproc <= 0 or max_output_bytes <= 0:
        raise ValueError("sandbox limits must be positive")
    return _Limits(float(timeout_s), int(memory_mb), float(cpu_s if cpu_s is not None else timeout_s),
                   int(fsize_mb), int(nproc), int(nofile), int(max_output_bytes), int(tmpfs_mb))


def _count_tasks_of_uid(uid: int) -> int:
    n = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            n += int(fields.get("Threads", "1"))
    return n


def _rlimits(limits: _Limits, per_run_uid: bool) -> list[tuple[str, int, int]]:
    """(name, soft, hard). Soft = hard except for CPU, whose hard limit is one second later so that
    the program gets SIGXCPU (reported as a timeout) rather than an anonymous SIGKILL."""
    nproc = limits.nproc if per_run_uid else _count_tasks_of_uid(os.getuid()) + limits.nproc
    cpu = max(1, int(limits.cpu_s + 0.999))
    fixed = [("RLIMIT_AS", limits.memory_mb << 20), ("RLIMIT_FSIZE", limits.fsize_mb << 20),
             ("RLIMIT_NPROC", nproc), ("RLIMIT_CORE", 0), ("RLIMIT_NOFILE", limits.nofile)]
    return [("RLIMIT_CPU", cpu, cpu + 1)] + [(name, v, v) for name, v in fixed]


def _env(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_uid(uid: int) -> None:
    """kill(-1) as `uid`: every process of that uid (the program's `setsid()` escapees included)."""
    kill = shutil.which("kill") or "/bin/kill"
    subprocess.run([kill, "-KILL", "-1"], user=uid, group=uid, extra_groups=[],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def run_program(source: str, stdin: str | bytes = "", *, timeout_s: float = 10.0, memory_mb: int = 2048,
                cpu_s: float | None = None, fsize_mb: int = 16, nproc: int = 32, nofile: int = 256,
                max_output_bytes: int = 1 << 20, tmpfs_mb: int = 64, files: Mapping[str, str] | None = None,
                args: Sequence[str] = (), pass_fds: Sequence[int] = (), isolation: str | None = None,
                python: str | None = None, cancel: threading.Event | None = None) -> RunResult:
    """Run the Python program `source` (as `main.py`, `__name__ == "__main__"`) in a sandbox.

    stdin:            fed to the program (written incrementally, so it may be large).
    timeout_s:        wall clock, from launch to exit, whole process group killed past it.
    memory_mb:        RLIMIT_AS; cpu_s: RLIMIT_CPU (default = timeout_s); fsize_mb: largest file;
    nproc:            processes + threads the program may have; max_output_bytes: cap per stream.
    tmpfs_mb:         size of the writable working directory (bwrap only).
    files:            extra files written next to main.py (name -> text), e.g. a module it imports.
    pass_fds:         file descriptors handed over to the program (same numbers inside); they are
                      CLOSED in this process once the program has started, so that the program
                      holds the only copies (a reader then sees EOF when the program dies).
    cancel:           when set by another thread, the program is killed (status "timeout").
    """
    limits = _default_limits(timeout_s, memory_mb, cpu_s, fsize_mb, nproc, nofile, max_output_bytes, tmpfs_mb)
    python = python or _default_python()
    info = sandbox_info(isolation, python)
    all_files = dict(files or {})
    all_files["main.py"] = source
    return _run(None, stdin, limits, info.isolation, info.bwrap, python, files=all_files, args=args,
                pass_fds=pass_fds, cancel=cancel, per_run_uid=info.per_run_uid)


def run_many(jobs: Iterable[Mapping[str, Any]], workers: int | None = None) -> list[RunResult]:
    """Run many programs in parallel; each job is the keyword arguments of `run_program` (with
    `source`). Results come back in job order."""
    jobs = list(jobs)
    workers = workers or min(len(jobs), os.cpu_count() or 1) or 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda job: run_program(**job), jobs))


def _run(inline: tuple[str] | None, stdin: str | bytes, limits: _Limits, isolation: str, bwrap: str | None,
         python: str, *, files: dict[str, str], args: Sequence[str], pass_fds: Sequence[int],
         cancel: threading.Event | None, per_run_uid: bool | None = None) -> RunResult:
    if inline is not None:            # the probe: one-liner, no files
        files = {"main.py": inline[0]}
    if per_run_uid is None:
        per_run_uid = _is_root()
    uid = _UID_RANGE[0] + secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0]) if per_run_uid else None
    host_dir = None if isolation == "bwrap" else tempfile.mkdtemp(prefix="rlvr-sandbox-")
    workdir = _WORKDIR_IN_BWRAP if isolation == "bwrap" else host_dir
    cfg = {"rlimits": _rlimits(limits, per_run_uid), "workdir": workdir, "uid": uid,
           "nondumpable": isolation != "bwrap", "files": files, "main": "main.py", "args": list(args)}
    cfg_fd = os.memfd_create("rlvr-sandbox-job")
    try:
        os.write(cfg_fd, json.dumps(cfg).encode())
        os.lseek(cfg_fd, 0, os.SEEK_SET)
        interp = [python, "-s", "-P", "-c", _BOOT, str(cfg_fd)]
        argv = (_bwrap_argv(bwrap, python, limits) + ["--"] + interp) if isolation == "bwrap" else interp
        start = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=_env(workdir), cwd=host_dir or "/", pass_fds=(cfg_fd, *pass_fds),
                                    start_new_session=True)
        finally:
            os.close(cfg_fd)
            cfg_fd = -1
            for fd in pass_fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        data = stdin.encode() if isinstance(stdin, str) else bytes(stdin)
        out, err, why = _communicate(proc, data, start + limits.timeout_s, limits.max_output_bytes, cancel)
        duration = time.monotonic() - start
        if uid is not None and isolation != "bwrap":
            _kill_uid(uid)
        return _result(proc.returncode if why is None else None, out, err, why, duration, isolation, bwrap is not None)
    finally:
        if cfg_fd >= 0:
            os.close(cfg_fd)
        if host_dir is not None:
            shutil.rmtree(host_dir, ignore_errors=True)


def _communicate(proc: subprocess.Popen, data: bytes, deadline: float, cap: int,
                 cancel: threading.Event | None) -> tuple[bytes, bytes, str | None]:
    """Feed stdin, read both pipes until EOF, kill the group at the deadline or past the cap.
    Returns (stdout, stderr, why-killed or None)."""
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    bufs = {out_fd: bytearray(), err_fd: bytearray()}
    sel = selectors.DefaultSelector()
    for fd in bufs:
        sel.register(fd, selectors.EVENT_READ)
    stdin_fd = proc.stdin.fileno()
    offset = 0
    if data:
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    why = None
    exited_at = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                why = "timeout"
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
                _kill_group(proc.pid)        # stray children still holding the pipes (fallback)
            if exited_at is not None and now - exited_at > 1.0:
                break
            if exited_at is None and cancel is not None and cancel.is_set():
                why = "timeout"
                break
            for key, _ in sel.select(timeout=min(0.05, deadline - now)):
                fd = key.fd
                if fd == stdin_fd:
                    try:
                        offset += os.write(fd, data[offset:offset + (1 << 16)])
                    except (BrokenPipeError, OSError):
                        offset = len(data)
                    if offset >= len(data):
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    sel.unregister(fd)
                    continue
                buf = bufs[fd]
                buf += chunk
                if len(buf) > cap:
                    del buf[cap:]
                    why = "output_limit"
            if why is not None:
                break
    finally:
        sel.close()
        if why is not None:
            _kill_group(proc.pid)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.kill()
            proc.wait()
        _kill_group(proc.pid)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except OSError:
                pass
    return bytes(bufs[out_fd]), bytes(bufs[err_fd]), why


def _result(returncode: int | None, out: bytes, err: bytes, why: str | None, duration: float,
            isolation: str, _has_bwrap: bool) -> RunResult:
    stdout = out.decode("utf-8", errors="replace")
    stderr = err.decode("utf-8", errors="replace")
    if why is not None:
        return RunResult(why, None, stdout, stderr, duration, isolation)
    rc = returncode
    if isolation == "bwrap" and rc is not None and rc > 128:
        rc = -(rc - 128)             # bwrap reports a child killed by signal N as 128 + N
    if rc == 0:
        status = "ok"
    elif rc == -signal.SIGXCPU:
        status = "timeout"           # RLIMIT_CPU
    elif isolation == "bwrap" and rc == 1 and stderr.startswith("bwrap:"):
        status = "sandbox_error"
    else:
        last = (stderr.strip().splitlines() or [""])[-1]
        status = "memory" if last.startswith("MemoryError") else "error"
    return RunResult(status, rc, stdout, stderr, duration, isolation)
