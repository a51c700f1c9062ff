"""Running untrusted programs: one subprocess per program, inside kernel namespaces.

Model-written code never runs inside the harness process. `run_program` starts a fresh Python
interpreter for every program and returns a `RunResult`; `run_many` runs many in parallel (a thread
pool of launches: the isolation is the subprocess, not the thread). `sandbox_info()` says which
isolation is active and which guarantees hold (`SandboxInfo.as_dict()` for provenance).

Isolation modes (`RLVR_SANDBOX`: auto (default) | bwrap | namespaces | unisolated):

1. **bwrap** (`/usr/bin/bwrap`, Debian package `bubblewrap`), chosen first when it works: read-only
   root, fresh `/dev` and `/proc`, a private size-capped tmpfs on `/tmp` that is the working directory
   and the only place the program can write, `/run` and the invoking user's home masked, new network
   namespace (loopback only, so no connection reaches the host), new pid/ipc/uts namespaces,
   `--die-with-parent`, `--new-session`. Killing the outer bwrap kills the pid namespace's init and
   the kernel then kills every process in it, including ones that called `setsid()`.
2. **namespaces** (as root, bwrap missing or not working): util-linux `unshare` makes new net, pid,
   mount, ipc and uts namespaces; the trusted boot code below is their init (pid 1) and, as root in
   the new mount namespace, remounts every mount read-only, mounts tmpfs over `/tmp` (size-capped,
   the working directory), `/var/tmp`, `/run`, `/dev` (only null, zero, full, random, urandom and
   tty bound back), the home directory and any directory on the way to the interpreter that other
   uids cannot enter (the interpreter's directories are bound back read-only), mounts a `/proc` of
   the new pid namespace and brings up the namespace's own loopback. It then forks the program, which
   drops to a fresh uid with `no_new_privs`. Init exits when the program does, and at once if the
   harness dies (a lifeline pipe); the kernel then kills everything left in the namespace.
3. **userns** (not root, or root inside a user namespace such as a rootless container; same
   selection): the same with `unshare --user --map-root-user`, an unprivileged user namespace in
   which we are root over the new mount namespace only. The program cannot get a uid of its own
   there; instead it and init drop every capability (bounding set included), so it cannot undo the
   read-only remounts or the masks, and sees our uid's files only read-only (home masked).
4. **unisolated** (only when asked for with `RLVR_SANDBOX=unisolated`): the boot script, limits,
   deadline, output cap, stripped environment, a temporary working directory and a new session, but
   NO namespaces: the program sees the network, the whole file system with its uid's rights, and
   other processes. As root it switches to a fresh uid when every directory on the interpreter's path
   is enterable by others (cleanup then kills every process of that uid, which catches `setsid()`
   escapees), otherwise it refuses; not root, it runs under our own uid and a `setsid()` escapee can
   outlive the deadline. It logs a loud warning once per process.

With `auto` and neither bwrap nor namespaces working, `sandbox_info` REFUSES (`UserError`, one line
saying what to install or set): model code never runs unisolated unless asked for.

In every mode:

* **a fresh uid per program** when the harness runs as root (bwrap, namespaces). RLIMIT_NPROC
  counts the tasks of the process's *real* uid in the initial user namespace and is never enforced
  for uid 0, so a fork bomb run as root (even root inside a user namespace that maps back to uid 0)
  is not stopped by it. The program then has no capabilities, cannot write root-owned files, and
  NPROC counts exactly its own processes. Directories on the path to the interpreter that such a uid
  cannot enter (a pyenv under `/root`) are masked with a tmpfs and the interpreter directories bound
  back read-only. Not root: bwrap makes a user namespace with our own uid, and NPROC is set to (our
  uid's current task count + the budget), shared with whatever else that uid runs (documented, not
  exact); in userns mode the kernel (5.14 and later) counts NPROC per user namespace, so it is exact.
* **resource limits set in the child** by a small trusted boot script that runs first in the
  sandboxed interpreter: RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NPROC, RLIMIT_CORE=0,
  RLIMIT_NOFILE; soft = hard, so the program cannot raise them.
* **in the parent**: a wall-clock deadline that SIGKILLs the whole process group, stdout and stderr
  read incrementally with a byte cap (past it: kill, status `output_limit`), and an environment built
  from scratch (nothing of the parent's leaks; `PYTHONHASHSEED=0` so set/dict-order output does not
  vary between runs).
* **the sandbox's failure is told apart from the program's**: the boot script writes a ready byte on
  a private status pipe just before the program's first line runs, and closes its end; in the
  namespace modes init also writes the program's wait status there when it ends. The program can
  reach neither end. A run without the ready byte (the sandbox tool failed, a mount failed, the
  set-up did not finish before the deadline) has status `sandbox_error`, which verifiers turn into an
  error verdict (`rlvr.tasks.base.VerifierError`), never into a wrong answer.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
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

from rlvr.tasks.errors import UserError

log = logging.getLogger(__name__)

SANDBOX_ENV = "RLVR_SANDBOX"          # auto (default) | bwrap | namespaces | unisolated
BWRAP_ENV = "RLVR_BWRAP"              # path to the bwrap binary (default: `bwrap` on PATH)
UNSHARE_ENV = "RLVR_UNSHARE"          # path to util-linux unshare (default: `unshare` on PATH)
PYTHON_ENV = "RLVR_SANDBOX_PYTHON"    # interpreter for sandboxed programs (default: sys.executable)
MODES = ("auto", "bwrap", "namespaces", "unisolated")
ISOLATIONS = ("bwrap", "namespaces", "userns", "unisolated")
STATUSES = ("ok", "error", "timeout", "memory", "output_limit", "sandbox_error")
INSTALL_HINT = ("install bubblewrap (apt-get install bubblewrap), or let util-linux unshare create namespaces "
                "(run as root, or allow unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1, "
                "kernel.apparmor_restrict_unprivileged_userns=0)")

_UID_RANGE = (1_500_000_000, 1_600_000_000)
_WORKDIR_IN_BWRAP = "/tmp"
_WORKDIR_IN_NS = "/tmp"
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


@dataclass(frozen=True)
class RunResult:
    """What happened to one program.

    status:     "ok" (exit 0) | "error" (non-zero exit or a signal) | "timeout" (wall clock or CPU
                limit) | "memory" (died with MemoryError) | "output_limit" (stdout or stderr past the
                cap; killed) | "sandbox_error" (the sandbox did not get the program started: the tool
                or the set-up failed, or the set-up did not finish before the deadline).
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
    """Which isolation `run_program` uses and what it guarantees (`as_dict` for run.json)."""

    isolation: str          # "bwrap" | "namespaces" | "userns" | "unisolated"
    bwrap: str | None       # the bwrap binary, when found
    per_run_uid: bool       # each program runs under its own fresh uid (exact NPROC, no root rights)
    reason: str             # why this isolation (the probes' errors when the better ones do not work)
    unshare: str | None = None   # the unshare binary, when found
    python: str | None = None    # the interpreter the programs run on
    exact_nproc: bool = False    # RLIMIT_NPROC counts this program's processes only

    @property
    def weaker(self) -> bool:
        """True for the unisolated mode (no namespaces)."""
        return self.isolation == "unisolated"

    @property
    def guarantees(self) -> dict[str, bool]:
        """Which promises hold in this mode (README's sandbox table)."""
        ns = self.isolation in ("bwrap", "namespaces", "userns")
        return {
            "no_network": ns,             # new network namespace: no host address, not even 127.0.0.1
            "private_processes": ns,      # own pid namespace: other processes invisible and unkillable
            "read_only_filesystem": ns,   # writable: only the private size-capped scratch tmpfs
            "kill_all_at_end": ns or self.per_run_uid,   # every process of the program dies with it
            "per_run_uid": self.per_run_uid,
            "exact_nproc": self.exact_nproc,
            "rlimits_deadline_output_cap": True,
        }

    def as_dict(self) -> dict[str, Any]:
        return {"isolation": self.isolation, "reason": self.reason,
                "tool": self.bwrap if self.isolation == "bwrap" else self.unshare if self.isolation in (
                    "namespaces", "userns") else None,
                "python": self.python, "guarantees": self.guarantees}


# ----------------------------------------------------------------------------------------------
# The boot script: the first code the sandboxed interpreter runs. Trusted; it reads its job from an
# inherited memfd. In the namespace modes it is first the namespaces' init: it sets up the mounts and
# the loopback as (namespace) root, forks the program and waits for it. The program's side sets the
# limits, drops to the per-run uid (or drops every capability), writes the program's files into the
# working directory, says "ready" on the status pipe, closes it and runs the main file as __main__.
_BOOT = r"""
import json, os, resource, runpy, sys


def _libc():
    import ctypes
    return ctypes, ctypes.CDLL(None, use_errno=True)


def _prctl(option, arg):
    ctypes, libc = _libc()
    ul = ctypes.c_ulong
    if libc.prctl(option, ul(arg), ul(0), ul(0), ul(0)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "prctl(%d, %d): %s" % (option, arg, os.strerror(e)))


def _drop_capabilities():
    ctypes, libc = _libc()
    ul = ctypes.c_ulong
    for cap in range(64):                      # PR_CAPBSET_DROP; EINVAL past the last capability
        if libc.prctl(24, ul(cap), ul(0), ul(0), ul(0)) != 0:
            if ctypes.get_errno() == 22 and cap > 30:
                break
            raise OSError(ctypes.get_errno(), "cannot drop capability %d from the bounding set" % cap)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    data = (ctypes.c_uint32 * 6)()              # effective, permitted, inheritable: all empty
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _ns_setup(ns):
    import fcntl, re, socket, stat, struct
    ctypes, libc = _libc()

    def mount(src, dst, fstype, flags, data=None):
        enc = lambda s: None if s is None else s.encode()
        if libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "mount %s: %s" % (dst, os.strerror(e)))

    def read_only(path, kept=None):
        if kept is None:
            kept = os.statvfs(path).f_flag & 14     # nosuid, nodev, noexec (locked in a user namespace)
        mount(None, path, None, 0x1000 | 0x20 | 1 | kept)     # MS_BIND | MS_REMOUNT | MS_RDONLY

    back = [(os.open(src, os.O_PATH | os.O_CLOEXEC), dst) for src, dst in ns["binds"]]
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            options = fields[5].split(",")
            kept = sum(bit for name, bit in (("nosuid", 2), ("nodev", 4), ("noexec", 8)) if name in options)
            points.append((re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]), kept))
    for point, kept in points:
        try:
            read_only(point, kept)
        except OSError as e:
            # /proc and /dev are replaced below; a mount point we cannot reach (or that a mount hidden
            # here held), the program cannot reach either; one that cannot be made read-only is hidden
            if point.split("/")[1] in ("proc", "dev") or e.errno in (2, 13, 20):
                continue
            try:
                mount("tmpfs", point, "tmpfs", 1 | 2 | 4 | 8, "size=4k,mode=555")
            except OSError as e:
                if e.errno not in (2, 13, 20):
                    raise
    for path, mode, size in ns["masks"]:
        mount("tmpfs", path, "tmpfs", 2 | 4, "mode=%o" % mode + (",size=%d" % size if size else ""))
    os.umask(0o022)
    for fd, dst in back:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        os.makedirs(dst if is_dir else os.path.dirname(dst), 0o755, exist_ok=True)
        if not is_dir and not os.path.exists(dst):
            os.close(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o644))
        mount("/proc/self/fd/%d" % fd, dst, None, 0x1000 | 0x4000)     # MS_BIND | MS_REC
        if is_dir:
            read_only(dst)
        os.close(fd)
    for link, target in ns["links"]:
        os.symlink(target, link)
    for path in ns["read_only"]:
        read_only(path)
    try:
        mount("proc", "/proc", "proc", 2 | 4 | 8)
    except OSError:      # a container's partly masked /proc forbids a new one: then no /proc at all
        mount("tmpfs", "/proc", "tmpfs", 1 | 2 | 4 | 8, "size=4k,mode=555")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:    # the namespace's own loopback up
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", 0x1 | 0x8 | 0x40))   # SIOCSIFFLAGS


def _init(child, ns, status):
    import select, signal
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        _drop_capabilities()
        _prctl(4, 0)                           # PR_SET_DUMPABLE 0: nobody ptraces init or reads its fds
    except BaseException as e:                 # the program may have started: say the sandbox failed
        os.write(status, b"F")
        sys.stderr.write("rlvr-sandbox: init failed: %s: %s\n" % (type(e).__name__, e))
        sys.stderr.flush()
        os._exit(125)
    lifeline = ns["lifeline_fd"]
    try:
        pidfd = os.pidfd_open(child)
    except (AttributeError, OSError):
        pidfd = None
    watch = [lifeline] + ([pidfd] if pidfd is not None else [])
    while True:
        if lifeline in select.select(watch, [], [], 0.1 if pidfd is not None else 0.02)[0]:
            os._exit(125)                      # the harness is gone: end the namespace
        while True:                            # reap the program and every orphan reparented to init
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                os._exit(125)
            if pid == 0:
                break
            if pid == child:
                os.write(status, b"X%d\n" % st)
                os._exit(os.WEXITSTATUS(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st))


_fd = int(sys.argv[1])
with os.fdopen(_fd, "rb") as _f:
    _cfg = json.loads(_f.read())
_status = _cfg["status_fd"]
_ns = _cfg["ns"]
if _ns is not None:
    try:
        _ns_setup(_ns)
        _child = os.fork()
    except BaseException as _e:
        sys.stderr.write("rlvr-sandbox: set-up failed: %s: %s\n" % (type(_e).__name__, _e))
        sys.stderr.flush()
        os._exit(125)
    if _child:
        _init(_child, _ns, _status)
    os.close(_ns["lifeline_fd"])
for _name, _soft, _hard in _cfg["rlimits"]:
    resource.setrlimit(getattr(resource, _name), (_soft, _hard))
_wd = _cfg["workdir"]
_uid = _cfg["uid"]
if _uid is not None:
    os.chown(_wd, _uid, _uid)
    os.setgroups([])
    os.setresgid(_uid, _uid, _uid)
    os.setresuid(_uid, _uid, _uid)
if _cfg["drop_capabilities"]:
    _drop_capabilities()
if _cfg["no_new_privs"]:
    _prctl(38, 1)                              # PR_SET_NO_NEW_PRIVS: no setuid binary gives rights back
if _cfg["nondumpable"]:
    _prctl(4, 0)                               # PR_SET_DUMPABLE 0: same-uid processes cannot ptrace us
os.chdir(_wd)
for _path, _text in _cfg["files"].items():
    with open(_path, "w", encoding="utf-8") as _f:
        _f.write(_text)
sys.argv = [_cfg["main"], *_cfg["args"]]
sys.path.insert(0, _wd)  # as `python main.py` would
_main = _cfg["main"]
os.write(_status, b"R")
os.close(_status)
del _fd, _f, _cfg, _name, _soft, _hard, _wd, _uid, _ns, _status
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


_info_cache: dict[tuple, SandboxInfo | str] = {}
_info_lock = threading.Lock()
_warned = False
_announced = False


def _mode(isolation: str | None) -> str:
    mode = (isolation or os.environ.get(SANDBOX_ENV) or "auto").strip().lower()
    if mode == "fallback":
        raise UserError(f"${SANDBOX_ENV}=fallback is gone: without bubblewrap the sandbox now uses namespaces "
                        f"(unset it), and ${SANDBOX_ENV}=unisolated runs model code with no namespaces at all")
    if mode not in MODES:
        raise UserError(f"${SANDBOX_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def _default_python() -> str:
    return os.environ.get(PYTHON_ENV) or sys.executable


def _is_root() -> bool:
    return os.geteuid() == 0


def _fresh_uids_possible() -> bool:
    """Root in the initial user namespace (every uid mapped): the namespaces mode can give each program
    a uid of its own. Root inside a user namespace (a rootless container) cannot: it gets the userns mode."""
    try:
        maps = Path("/proc/self/uid_map").read_text().split()
    except OSError:
        return False
    return _is_root() and maps[:3] == ["0", "0", "4294967295"]


@functools.cache
def _interpreter_dirs(python: str) -> tuple[Path, ...]:
    """The directories a program run by `python` reads (prefixes, stdlib, site-packages)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        try:
            out = subprocess.run([python, "-c", "import sys; print(sys.prefix, sys.base_prefix, sys.exec_prefix, "
                                  "sys.base_exec_prefix)"], capture_output=True, text=True, timeout=30)
        except OSError as e:
            raise UserError(f"sandbox: cannot run the interpreter {python} ({e.strerror})") from None
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


def _binary(env: str, name: str) -> str | None:
    cand = os.environ.get(env) or shutil.which(name)
    return cand if cand and os.access(cand, os.X_OK) else None


def _bwrap_binary() -> str | None:
    return _binary(BWRAP_ENV, "bwrap")


def _unshare_binary() -> str | None:
    return _binary(UNSHARE_ENV, "unshare")


def _masks(python: str, extra: Iterable[Path] = ()) -> tuple[list[Path], list[Path]]:
    """(directories to cover with a tmpfs, interpreter directories under them to bind back read-only):
    `extra`, /run (host unix sockets, a way around the network namespace), the invoking user's home,
    and as root the first directory on the way to the interpreter that other uids cannot enter."""
    masks: set[Path] = set(extra)
    if Path("/run").is_dir():
        masks.add(Path("/run"))
    home = Path.home()
    if os.path.isdir(home) and home != Path("/"):      # (False when we cannot even look at it)
        masks.add(home)
    if _is_root():
        for d in _interpreter_dirs(python):
            blocked = _blocked_ancestors(d)
            if blocked:
                masks.add(blocked[0])
    masks = {m for m in masks if not any(o != m and o in m.parents for o in masks)}
    rebinds = [d for d in _interpreter_dirs(python) if any(m == d or m in d.parents for m in masks)]
    return sorted(masks), rebinds


def _mask_args(python: str) -> list[str]:
    """bwrap: tmpfs over directories the program must not see (or that the per-run uid could not
    enter on the way to the interpreter), then the interpreter directories bound back read-only."""
    masks, rebinds = _masks(python)
    args: list[str] = []
    for m in masks:
        args += ["--tmpfs", str(m)]
    made: set[Path] = set()
    for d in rebinds:
        mask = next(m for m in masks if m == d or m in d.parents)
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


def _unshare_argv(unshare: str, userns: bool) -> list[str]:
    argv = [unshare]
    if userns:
        argv += ["--user", "--map-root-user"]
    return argv + ["--net", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private",
                   "--ipc", "--uts"]


def _ns_plan(python: str, limits: _Limits, lifeline_fd: int) -> dict[str, Any]:
    """What the boot script mounts in the namespace modes (see the module docstring)."""
    real = lambda p: Path(os.path.realpath(p))     # noqa: E731
    extra = [real(p) for p in ("/tmp", "/var/tmp", "/dev") if Path(p).is_dir()]
    masks, rebinds = _masks(python, extra)
    masks = sorted({real(m) for m in masks})
    masks = [m for m in masks if not any(o != m and o in m.parents for o in masks)]
    rebinds = [d for d in rebinds if not any(o != d and o in d.parents for o in rebinds)]
    workdir, dev = Path(_WORKDIR_IN_NS), Path("/dev")
    if workdir not in masks:
        raise UserError(f"sandbox: {_WORKDIR_IN_NS} is not a directory here")
    plan_masks = [[str(m), 0o700 if m == workdir else 0o755, (limits.tmpfs_mb << 20) if m == workdir else 1 << 20]
                  for m in masks]
    binds = [[str(d), str(d)] for d in rebinds]
    links: list[list[str]] = []
    if dev in masks:
        binds += [[f"/dev/{name}", f"/dev/{name}"] for name in _DEVICES if os.path.exists(f"/dev/{name}")]
        links = [["/dev/fd", "/proc/self/fd"], ["/dev/stdin", "/proc/self/fd/0"],
                 ["/dev/stdout", "/proc/self/fd/1"], ["/dev/stderr", "/proc/self/fd/2"], ["/dev/shm", "/tmp"]]
    return {"masks": plan_masks, "binds": binds, "links": links, "lifeline_fd": lifeline_fd,
            "read_only": [str(m) for m in masks if m != workdir]}


def _userns_nproc_is_exact() -> bool:
    """Linux 5.14 counts RLIMIT_NPROC per user namespace (ucounts), so in the userns mode it counts the
    program's processes only; never enforced, though, when our uid is the host's root."""
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    if m is None or (int(m.group(1)), int(m.group(2))) < (5, 14):
        return False
    try:
        rows = [[int(x) for x in line.split()] for line in Path("/proc/self/uid_map").read_text().splitlines()]
    except (OSError, ValueError):
        return False
    uid = os.geteuid()
    return not any(inside <= uid < inside + count and outside + uid - inside == 0 for inside, outside, count in rows)


def _make_info(isolation: str, bwrap: str | None, unshare: str | None, python: str, reason: str) -> SandboxInfo:
    if isolation == "userns":
        per_run_uid, exact = False, _userns_nproc_is_exact()
    else:
        per_run_uid = exact = _is_root()
    return SandboxInfo(isolation, bwrap, per_run_uid, reason, unshare, python, exact)


def _probe(info: SandboxInfo, python: str) -> tuple[bool, str]:
    res = _run(info, python, "", _default_limits(timeout_s=30.0), files={"main.py": "print('sandbox-ok')"},
               args=(), pass_fds=(), cancel=None)
    tool = info.bwrap if info.isolation == "bwrap" else info.unshare
    if res.status == "ok" and res.stdout.strip() == "sandbox-ok":
        return True, f"{tool} works"
    detail = (res.stderr.strip().splitlines() or [res.status])[-1][:200]
    return False, f"{tool} does not work here ({res.status}: {detail})"


def _probe_bwrap(bwrap: str | None, python: str) -> tuple[bool, str]:
    if bwrap is None:
        return False, "bwrap not found"
    return _probe(_make_info("bwrap", bwrap, None, python, ""), python)


def _probe_namespaces(unshare: str | None, python: str) -> tuple[bool, str, str]:
    isolation = "namespaces" if _fresh_uids_possible() else "userns"
    if unshare is None:
        return False, "unshare not found (util-linux)", isolation
    return (*_probe(_make_info(isolation, None, unshare, python, ""), python), isolation)


def sandbox_info(isolation: str | None = None, python: str | None = None) -> SandboxInfo:
    """Which isolation `run_program` will use (probes once per process and setting, and caches it).

    isolation: "auto" | "bwrap" | "namespaces" | "unisolated"; default `$RLVR_SANDBOX` or "auto".
    "auto" takes bwrap when it works, else namespaces through unshare, else raises a one-line
    `UserError` saying what to install. "bwrap" and "namespaces" raise it when that mode does not work.
    """
    mode = _mode(isolation)
    python = python or _default_python()
    bwrap, unshare = _bwrap_binary(), _unshare_binary()
    key = (mode, python, bwrap, unshare, os.geteuid())
    with _info_lock:
        info = _info_cache.get(key)
        if info is None:
            try:
                info = _choose(mode, python, bwrap, unshare)
            except UserError as e:
                info = str(e)
            _info_cache[key] = info
    if isinstance(info, str):
        raise UserError(info)
    _announce(info)
    return info


def _choose(mode: str, python: str, bwrap: str | None, unshare: str | None) -> SandboxInfo:
    if mode == "unisolated":
        return _unisolated_info(bwrap, unshare, python, f"asked for with {SANDBOX_ENV}=unisolated")
    why_bwrap = why_ns = ""
    if mode in ("auto", "bwrap"):
        works, why_bwrap = _probe_bwrap(bwrap, python)
        if works:
            return _make_info("bwrap", bwrap, unshare, python, why_bwrap)
        if mode == "bwrap":
            raise UserError(f"sandbox: {why_bwrap}; install bubblewrap (apt-get install bubblewrap), or unset "
                            f"{SANDBOX_ENV}=bwrap to allow the namespace sandbox (util-linux unshare)")
    works, why_ns, isolation = _probe_namespaces(unshare, python)
    if works:
        reason = f"{why_bwrap}; {why_ns}" if why_bwrap else why_ns
        return _make_info(isolation, bwrap, unshare, python, reason)
    if mode == "namespaces":
        raise UserError(f"sandbox: {why_ns}; {INSTALL_HINT}")
    raise UserError(f"sandbox: no isolation for model code here ({why_bwrap}; {why_ns}): {INSTALL_HINT}; "
                    f"or set {SANDBOX_ENV}=unisolated to run it without namespaces (unsafe)")


def _unisolated_info(bwrap: str | None, unshare: str | None, python: str, why: str) -> SandboxInfo:
    if _is_root() and not _python_open_to_others(python):
        # Running model code as root without namespaces is not "weaker", it is unsafe: one
        # os.kill(-1, 9) ends every process on the machine. Refuse instead.
        raise UserError(f"sandbox: {SANDBOX_ENV}=unisolated would run programs as root, because other uids "
                        f"cannot enter the directories of {python}; set ${PYTHON_ENV} to a Python that every "
                        f"user can run (e.g. /usr/bin/python3), or unset {SANDBOX_ENV}")
    return _make_info("unisolated", bwrap, unshare, python, why)


def sandbox_provenance(isolation: str | None = None, python: str | None = None) -> dict[str, Any]:
    """What a run records about the code sandbox (run.json): `SandboxInfo.as_dict()` for the mode that
    `run_program` uses, or {"isolation": None, "error": ...} where none works (nothing raises)."""
    try:
        return sandbox_info(isolation, python).as_dict()
    except UserError as e:
        return {"isolation": None, "error": str(e)}


def _announce(info: SandboxInfo) -> None:
    global _warned, _announced
    if info.weaker:
        if _warned:
            return
        _warned = True
        who = "a fresh uid per program" if info.per_run_uid else "the harness's own uid"
        log.warning("SANDBOX UNISOLATED: untrusted programs run WITHOUT namespaces (network, file system and "
                    "other processes visible) under %s, with rlimits, a deadline and an output cap only. "
                    "Reason: %s. Unset %s to refuse this.", who, info.reason, SANDBOX_ENV)
    elif info.isolation != "bwrap" and not _announced:
        _announced = True
        log.info("sandbox: %s (%s)", info.isolation, info.reason)


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


def _rlimits(limits: _Limits, info: SandboxInfo) -> list[tuple[str, int, int]]:
    """(name, soft, hard). Soft = hard except for CPU, whose hard limit is one second later so that
    the program gets SIGXCPU (reported as a timeout) rather than an anonymous SIGKILL."""
    if info.per_run_uid:
        nproc = limits.nproc
    elif info.isolation == "userns" and info.exact_nproc:
        nproc = limits.nproc + 2          # unshare (inside the user namespace) and init count too
    else:
        nproc = _count_tasks_of_uid(os.getuid()) + limits.nproc
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
    tmpfs_mb:         size of the writable working directory (not in the unisolated mode).
    files:            extra files written next to main.py (name -> text), e.g. a module it imports.
    pass_fds:         file descriptors handed over to the program (same numbers inside); they are
                      CLOSED in this process once the program has started, so that the program
                      holds the only copies (a reader then sees EOF when the program dies).
    cancel:           when set by another thread, the program is killed (status "timeout").

    Raises `UserError` when no sandbox can run here (see `sandbox_info`); a sandbox that fails to
    start the program is status "sandbox_error" (`run_checked` raises `VerifierError` for it).
    """
    limits = _default_limits(timeout_s, memory_mb, cpu_s, fsize_mb, nproc, nofile, max_output_bytes, tmpfs_mb)
    python = python or _default_python()
    info = sandbox_info(isolation, python)
    all_files = dict(files or {})
    all_files["main.py"] = source
    return _run(info, python, stdin, limits, files=all_files, args=args, pass_fds=pass_fds, cancel=cancel)


def run_checked(source: str, **kwargs: Any) -> RunResult:
    """`run_program` for verifiers: when the sandbox cannot run the program (no isolation here, or it
    failed to start it) raise `rlvr.tasks.base.VerifierError`, so that the sample gets an error verdict and
    is never scored as a wrong answer. A program that crashes, loops or runs out of memory returns
    normally (its status says so): that is the program's failure."""
    from rlvr.tasks.base import VerifierError

    try:
        res = run_program(source, **kwargs)
    except UserError as e:
        raise VerifierError(str(e)) from None
    if res.status == "sandbox_error":
        raise VerifierError(f"sandbox ({res.isolation}) did not start the program: {sandbox_error_detail(res)}")
    return res


def sandbox_error_detail(res: RunResult) -> str:
    last = (res.stderr.strip().splitlines() or [""])[-1][:300]
    return last or f"exit status {res.returncode}"


def run_many(jobs: Iterable[Mapping[str, Any]], workers: int | None = None) -> list[RunResult]:
    """Run many programs in parallel; each job is the keyword arguments of `run_program` (with
    `source`). Results come back in job order."""
    jobs = list(jobs)
    workers = workers or min(len(jobs), os.cpu_count() or 1) or 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda job: run_program(**job), jobs))


def _run(info: SandboxInfo, python: str, stdin: str | bytes, limits: _Limits, *, files: dict[str, str],
         args: Sequence[str], pass_fds: Sequence[int], cancel: threading.Event | None) -> RunResult:
    isolation = info.isolation
    in_ns = isolation in ("namespaces", "userns")
    uid = _UID_RANGE[0] + secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0]) if info.per_run_uid else None
    host_dir = tempfile.mkdtemp(prefix="rlvr-sandbox-") if isolation == "unisolated" else None
    workdir = host_dir or (_WORKDIR_IN_BWRAP if isolation == "bwrap" else _WORKDIR_IN_NS)
    status_r, status_w = os.pipe()
    lifeline_r, lifeline_w = os.pipe() if in_ns else (-1, -1)
    cfg_fd = -1
    try:
        cfg = {"rlimits": _rlimits(limits, info), "workdir": workdir, "uid": uid, "status_fd": status_w,
               "ns": _ns_plan(python, limits, lifeline_r) if in_ns else None,
               "drop_capabilities": isolation == "userns", "no_new_privs": isolation != "bwrap",
               "nondumpable": isolation == "unisolated", "files": files, "main": "main.py", "args": list(args)}
        cfg_fd = os.memfd_create("rlvr-sandbox-job")
        os.write(cfg_fd, json.dumps(cfg).encode())
        os.lseek(cfg_fd, 0, os.SEEK_SET)
        interp = [python, "-s", "-P", "-c", _BOOT, str(cfg_fd)]
        if isolation == "bwrap":
            argv = _bwrap_argv(info.bwrap, python, limits) + ["--"] + interp
        elif in_ns:
            argv = _unshare_argv(info.unshare, isolation == "userns") + ["--"] + interp
        else:
            argv = interp
        ours = (cfg_fd, status_w) + ((lifeline_r,) if in_ns else ())
        start = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=_env(workdir), cwd=host_dir or "/", pass_fds=(*ours, *pass_fds),
                                    start_new_session=True)
        except OSError as e:        # the tool vanished or cannot be executed: the sandbox's failure
            return RunResult("sandbox_error", None, "", f"cannot start {argv[0]}: {e.strerror}", 0.0, isolation)
        finally:
            for fd in (*ours, *pass_fds):
                try:
                    os.close(fd)
                except OSError:
                    pass
            cfg_fd = status_w = lifeline_r = -1
        data = stdin.encode() if isinstance(stdin, str) else bytes(stdin)
        out, err, why = _communicate(proc, data, start + limits.timeout_s, limits.max_output_bytes, cancel)
        duration = time.monotonic() - start
        if uid is not None and isolation == "unisolated":
            _kill_uid(uid)
        return _result(proc.returncode if why is None else None, out, err, why, duration, isolation,
                       _drain(status_r))
    finally:
        for fd in (cfg_fd, status_w, lifeline_r, status_r, lifeline_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if host_dir is not None:
            shutil.rmtree(host_dir, ignore_errors=True)


def _drain(fd: int) -> bytes:
    """Everything written to the status pipe (the writers are gone or past writing: read what is there)."""
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


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
            isolation: str, status: bytes) -> RunResult:
    stdout = out.decode("utf-8", errors="replace")
    stderr = err.decode("utf-8", errors="replace")
    if b"R" not in status or b"F" in status:   # the program never started, or init failed under it:
        # the sandbox's failure, not the program's
        return RunResult("sandbox_error", returncode, stdout, stderr, duration, isolation)
    if why is not None:
        return RunResult(why, None, stdout, stderr, duration, isolation)
    rc = returncode
    exits = re.findall(rb"X(\d+)\n", status)     # the program's wait status, from the namespaces' init
    if exits:
        st = int(exits[-1])
        rc = os.WEXITSTATUS(st) if os.WIFEXITED(st) else -os.WTERMSIG(st)
    elif isolation != "unisolated" and rc is not None and rc > 128:
        rc = -(rc - 128)             # bwrap (and init) report a child killed by signal N as 128 + N
    if rc == 0:
        status_ = "ok"
    elif rc == -signal.SIGXCPU:
        status_ = "timeout"          # RLIMIT_CPU
    else:
        last = (stderr.strip().splitlines() or [""])[-1]
        status_ = "memory" if last.startswith("MemoryError") else "error"
    return RunResult(status_, rc, stdout, stderr, duration, isolation)
