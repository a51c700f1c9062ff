"""The sandbox: statuses, limits, isolation, the pool, and the fallback."""

from __future__ import annotations

import logging
import os
import socket
import stat
import sys
import time
from pathlib import Path

import pytest

from harness.errors import UserError
from tasks import sandbox
from tasks.sandbox import run_many, run_program, sandbox_info


def _bwrap_works() -> bool:
    try:
        return sandbox_info("auto").isolation == "bwrap"
    except UserError:
        return False


needs_bwrap = pytest.mark.skipif(not _bwrap_works(), reason="bubblewrap is not installed or does not work here")


def _open_python() -> str | None:
    """A Python every uid can run (the fallback as root needs one to switch to a fresh uid)."""
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(cand) and sandbox._python_open_to_others(cand):
            return cand
    return None


# -- statuses -----------------------------------------------------------------------------------

STATUS_CASES = [
    # (name, source, kwargs, status, stdout contains)
    ("ok", "print('hello')", {}, "ok", "hello"),
    ("stdin echo", "import sys; d = sys.stdin.read(); print(len(d), d[:3])", {"stdin": "abc" * 1_000_000}, "ok", "3000000 abc"),
    ("exit code", "import sys; sys.exit(3)", {}, "error", ""),
    ("exception", "raise ValueError('boom')", {}, "error", ""),
    ("wall clock", "import time; time.sleep(60)", {"timeout_s": 1.0}, "timeout", ""),
    ("cpu limit", "while True: pass", {"timeout_s": 20.0, "cpu_s": 1.0}, "timeout", ""),
    ("memory", "x = bytearray(8 << 30)", {"memory_mb": 256}, "memory", ""),
    ("stdout cap", "import os\nwhile True: os.write(1, b'x' * 65536)", {"max_output_bytes": 1 << 16}, "output_limit", ""),
    ("stderr cap", "import os\nwhile True: os.write(2, b'x' * 65536)", {"max_output_bytes": 1 << 16}, "output_limit", ""),
    ("file size", "open('big', 'wb').write(b'x' * (2 << 20))", {"fsize_mb": 1}, "error", ""),
]


@pytest.mark.parametrize("name,source,kwargs,status,contains", STATUS_CASES, ids=[c[0] for c in STATUS_CASES])
def test_status(name, source, kwargs, status, contains):
    res = run_program(source, **kwargs)
    assert res.status == status, (res.status, res.stderr[-500:])
    assert contains in res.stdout
    assert res.duration_s < kwargs.get("timeout_s", 10.0) + 2.0


def test_output_is_capped_not_accumulated():
    res = run_program("import os\nwhile True: os.write(1, b'y' * 65536)", max_output_bytes=100_000)
    assert res.status == "output_limit"
    assert len(res.stdout) == 100_000


def test_environment_is_stripped(monkeypatch):
    monkeypatch.setenv("RLVR_TEST_SECRET", "do-not-leak")
    res = run_program("import os, json; print(json.dumps(dict(os.environ)))")
    assert res.ok
    assert "do-not-leak" not in res.stdout
    assert '"PYTHONHASHSEED": "0"' in res.stdout


def test_hash_seed_is_fixed_so_set_order_is_reproducible():
    src = "print(list({'apple', 'pear', 'fig', 'kiwi', 'plum'}))"
    assert len({run_program(src).stdout for _ in range(3)}) == 1


def test_working_directory_is_writable_and_files_are_placed():
    res = run_program("import helper, os; open('out.txt', 'w').write('x'); print(helper.VALUE, os.listdir('.'))",
                      files={"helper.py": "VALUE = 41 + 1\n"})
    assert res.ok, res.stderr
    assert res.stdout.startswith("42")


def test_args_reach_the_program():
    res = run_program("import sys; print(sys.argv[1:])", args=("a", "b c"))
    assert res.stdout.strip() == "['a', 'b c']"


def test_cancel_kills_the_program():
    import threading
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    t0 = time.monotonic()
    res = run_program("import time; time.sleep(30)", timeout_s=20.0, cancel=cancel)
    assert res.status == "timeout" and time.monotonic() - t0 < 5


def test_pass_fds_are_handed_over_and_closed_here():
    r, w = os.pipe()
    res = run_program(f"import os; os.write({w}, b'through the pipe')", pass_fds=(w,))
    assert res.ok, res.stderr
    with pytest.raises(OSError):
        os.fstat(w)            # the parent's copy is closed: the reader sees EOF after the program
    assert os.read(r, 100) == b"through the pipe"
    assert os.read(r, 100) == b""
    os.close(r)


def test_run_many_keeps_order():
    jobs = [{"source": f"print({i} * {i})"} for i in range(8)]
    results = run_many(jobs, workers=2)
    assert [r.stdout.strip() for r in results] == [str(i * i) for i in range(8)]


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        run_program("pass", timeout_s=0)


# -- isolation (bwrap) --------------------------------------------------------------------------

@needs_bwrap
def test_info_reports_bwrap():
    info = sandbox_info()
    assert info.isolation == "bwrap" and not info.weaker
    assert run_program("pass").isolation == "bwrap"


@needs_bwrap
def test_root_is_read_only_and_tmp_is_private(tmp_path):
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("original")
    src = (f"import os\n"
           f"for p in ['/usr/rlvr_probe', {str(sentinel)!r}, '/etc/passwd']:\n"
           f"    try:\n        open(p, 'a').write('x'); print('WROTE', p)\n"
           f"    except OSError as e:\n        print('refused', p, e.errno)\n"
           f"print('tmp', sorted(os.listdir('/tmp')))\n")
    res = run_program(src)
    assert res.ok, res.stderr
    assert "WROTE" not in res.stdout
    listing = res.stdout.split("tmp ", 1)[1]
    assert "'main.py'" in listing
    # the host's /tmp is not visible (mount points of paths bound back in, such as an interpreter
    # living under /tmp, may appear, but not the host's files)
    if sentinel.is_relative_to("/tmp"):
        assert f"'{sentinel.relative_to('/tmp').parts[0]}'" not in listing
    assert sentinel.read_text() == "original"


@needs_bwrap
def test_no_network():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        res = run_program(f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                          f"    print('connected')\nexcept OSError as e:\n    print('refused', e)")
        assert "refused" in res.stdout
        with pytest.raises(socket.timeout):
            server.accept()


@needs_bwrap
def test_fork_bomb_is_contained():
    t0 = time.monotonic()
    res = run_program("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", timeout_s=3.0, nproc=16)
    assert res.status == "timeout"
    assert time.monotonic() - t0 < 8
    assert run_program("print('still fine')").stdout.strip() == "still fine"


@needs_bwrap
def test_cannot_signal_outside():
    import subprocess
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        res = run_program(f"import os\nfor t in ({bystander.pid}, os.getppid(), 1, -1):\n"
                          f"    try: os.kill(t, 9)\n    except OSError: pass\nprint('done')")
        assert res.status == "ok"
        assert bystander.poll() is None          # still running
    finally:
        bystander.kill()
        bystander.wait()


@needs_bwrap
def test_setsid_child_dies_with_the_sandbox():
    marker = f"rlvr-escape-{os.getpid()}-{time.monotonic_ns()}"
    src = ("import os, time, sys\n"
           "if os.fork() == 0:\n    os.setsid()\n"
           f"    sys.argv[0] = {marker!r}\n    time.sleep(60)\n    os._exit(0)\n"
           "print('parent exits')")
    res = run_program(src, timeout_s=5.0)
    assert res.ok
    time.sleep(0.3)
    survivors = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, "time.sleep(60)")]
    assert survivors == []


def _cmdline_has(proc_dir: Path, needle: str) -> bool:
    try:
        return needle in (proc_dir / "cmdline").read_bytes().decode(errors="ignore")
    except OSError:
        return False


# -- settings and the fallback -------------------------------------------------------------------

def test_bad_mode_is_a_user_error(monkeypatch):
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "chroot")
    with pytest.raises(UserError, match="RLVR_SANDBOX"):
        sandbox_info()


def test_refusing_the_fallback(monkeypatch):
    monkeypatch.setattr(sandbox, "_info_cache", {})
    monkeypatch.setenv(sandbox.BWRAP_ENV, "/nonexistent/bwrap")
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="bwrap"):
        sandbox_info("bwrap")


@pytest.mark.skipif(os.geteuid() != 0, reason="the root-only refusal")
def test_fallback_as_root_refuses_a_python_other_uids_cannot_run(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "_info_cache", {})
    monkeypatch.setattr(sandbox, "_python_open_to_others", lambda python: False)
    with pytest.raises(UserError, match="root"):
        sandbox_info("fallback")


@pytest.fixture
def fallback_python(monkeypatch):
    python = _open_python()
    if python is None:
        pytest.skip("no Python that every uid can run, needed by the fallback as root")
    if os.geteuid() != 0:
        pytest.skip("the fallback as non-root runs programs under our own uid; not exercised here")
    monkeypatch.setattr(sandbox, "_info_cache", {})
    monkeypatch.setattr(sandbox, "_warned", False)
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "fallback")
    monkeypatch.setenv(sandbox.PYTHON_ENV, python)
    return python


def test_fallback_is_marked_weaker_and_warns_once(fallback_python, caplog):
    with caplog.at_level(logging.WARNING, logger="tasks.sandbox"):
        info = sandbox_info()
        sandbox_info()
        res = run_program("print('hi')")
    assert info.isolation == "fallback" and info.weaker and info.per_run_uid
    assert res.ok and res.isolation == "fallback"
    warnings = [r for r in caplog.records if "SANDBOX FALLBACK" in r.getMessage()]
    assert len(warnings) == 1


FALLBACK_CASES = [
    ("wall clock", "import time; time.sleep(60)", {"timeout_s": 1.0}, "timeout"),
    ("memory", "x = bytearray(8 << 30)", {"memory_mb": 256}, "memory"),
    ("output cap", "import os\nwhile True: os.write(1, b'x' * 65536)", {"max_output_bytes": 1 << 16}, "output_limit"),
    ("fork bomb", "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", {"timeout_s": 3.0, "nproc": 16}, "timeout"),
]


@pytest.mark.parametrize("name,source,kwargs,status", FALLBACK_CASES, ids=[c[0] for c in FALLBACK_CASES])
def test_fallback_limits(fallback_python, name, source, kwargs, status):
    res = run_program(source, **kwargs)
    assert res.status == status, res.stderr[-300:]


def test_fallback_runs_under_a_fresh_uid_that_cannot_touch_our_files(fallback_python, tmp_path):
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("original")
    os.chmod(tmp_path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    res = run_program(f"import os\nprint(os.getuid())\ntry:\n    open({str(sentinel)!r}, 'w').write('x')\n"
                      f"except OSError:\n    print('refused')\nfor t in (os.getppid(), 1, -1):\n"
                      f"    try: os.kill(t, 9)\n    except OSError: pass")
    uid, verdict = res.stdout.split()[:2]
    assert int(uid) != 0 and verdict == "refused"
    assert sentinel.read_text() == "original"
