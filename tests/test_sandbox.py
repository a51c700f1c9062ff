"""The sandbox: statuses, limits, isolation in every mode that works here, the sandbox's own failures,
refusals, and the unisolated opt-in."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from rlvr.harness.errors import UserError
from rlvr.tasks import sandbox
from rlvr.tasks.base import VerifierError
from rlvr.tasks.sandbox import run_many, run_program, sandbox_info

REPO = Path(__file__).resolve().parents[1]


def _bwrap_works() -> bool:
    try:
        return sandbox_info("auto").isolation == "bwrap"
    except UserError:
        return False


def _namespaces_work() -> bool:
    try:
        return sandbox_info("namespaces").isolation in ("namespaces", "userns")
    except UserError:
        return False


ISOLATING_MODES = ("bwrap", "namespaces")


@pytest.fixture(params=ISOLATING_MODES, name="mode")
def mode_fixture(request, monkeypatch):
    """Each isolating mode that works here, selected through $RLVR_SANDBOX ("namespaces" is the
    namespaces mode as root and the user-namespace mode otherwise)."""
    if request.param == "bwrap" and not _bwrap_works():
        pytest.skip("bubblewrap is not installed or does not work here")
    if request.param == "namespaces" and not _namespaces_work():
        pytest.skip("unshare cannot create namespaces here")
    monkeypatch.setenv(sandbox.SANDBOX_ENV, request.param)
    return request.param


def _open_python() -> str | None:
    """A Python every uid can run (the unisolated mode as root needs one to switch to a fresh uid)."""
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(cand) and sandbox._python_open_to_others(cand):
            return cand
    return None


def _alive_with_name(name: str) -> int:
    """How many processes on this machine have the name `name` (the programs below rename themselves)."""
    n = 0
    for p in Path("/proc").iterdir():
        try:
            n += p.name.isdigit() and (p / "comm").read_text().strip() == name
        except OSError:
            pass
    return n


def _rename(name: str) -> str:
    """Program lines that give the process (and its later children) the name `name`."""
    return f"import ctypes\nctypes.CDLL(None).prctl(15, {name.encode()!r}, 0, 0, 0)\n"


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
def test_status(mode, name, source, kwargs, status, contains):
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


# -- isolation (every isolating mode) -------------------------------------------------------------

def test_info_reports_the_mode_and_its_guarantees(mode):
    info = sandbox_info()
    assert info.isolation == ("bwrap" if mode == "bwrap" else "namespaces" if sandbox._fresh_uids_possible() else "userns")
    assert not info.weaker and run_program("pass").isolation == info.isolation
    record = json.loads(json.dumps(info.as_dict()))        # what run.json can hold
    assert sandbox.sandbox_provenance() == record
    assert record["isolation"] == info.isolation and record["tool"]
    g = record["guarantees"]
    assert g["no_network"] and g["private_processes"] and g["read_only_filesystem"] and g["kill_all_at_end"]
    assert g["per_run_uid"] is (os.geteuid() == 0 and info.isolation != "userns")


def test_root_is_read_only_and_tmp_is_private(mode, tmp_path):
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


def test_no_write_reaches_the_host(mode, tmp_path):
    """Every place a program might write: the root, system and home directories, the other temporary
    directories, the harness's checkout, and a directory and file of ours open to everybody. Nothing
    changes on the host; in the namespace modes the writes fail inside too (bwrap without root gives
    its masks private, writable tmpfs mounts)."""
    shared = tmp_path / "open"
    shared.mkdir()
    (shared / "f.txt").write_text("original")
    os.chmod(shared, 0o777)
    os.chmod(shared / "f.txt", 0o666)
    targets = ["/rlvr_probe", "/usr/rlvr_probe", "/etc/rlvr_probe", "/var/tmp/rlvr_probe", "/run/rlvr_probe",
               "/dev/rlvr_probe", f"{Path.home()}/rlvr_probe", f"{REPO}/rlvr_probe", str(shared / "new.txt"),
               str(shared / "f.txt"), "/sys/rlvr_probe"]
    src = (f"import os\nfor p in {targets!r}:\n    try:\n        open(p, 'a').write('x'); print('WROTE', p)\n"
           f"    except OSError:\n        pass\nopen('/tmp/ok.txt', 'w').write('x')\nopen('here.txt', 'w').write('x')\n"
           f"print('scratch ok')\n")
    res = run_program(src)
    assert res.ok, res.stderr
    assert "scratch ok" in res.stdout
    if mode != "bwrap":
        assert "WROTE" not in res.stdout
    assert sorted(p.name for p in shared.iterdir()) == ["f.txt"] and (shared / "f.txt").read_text() == "original"
    assert not any(Path(t).exists() for t in targets if t.endswith("rlvr_probe"))


def test_every_mount_but_the_scratch_dir_is_read_only(mode):
    """The namespaces mode remounts what it inherits read-only, so not even a file open to everybody
    (or, in a user namespace, our own files) can be written; only /tmp (and its own /proc) stay writable."""
    if mode == "bwrap":
        pytest.skip("bwrap builds its own mount tree (--ro-bind / /)")
    res = run_program(_WRITABLE_MOUNTS)
    assert res.ok, res.stderr
    writable = set(json.loads(res.stdout))
    assert writable <= {"/tmp", "/proc"}, writable


# the mount points where the program reaches a read-write mount (statvfs sees the mount a path reaches;
# a symlink such as /dev/shm -> /tmp leads elsewhere)
_WRITABLE_MOUNTS = """
import json, os, re
points = {re.sub(r"\\\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
          for line in open("/proc/self/mountinfo")}
writable = []
for p in sorted(points):
    try:
        if not os.path.islink(p) and not os.statvfs(p).f_flag & os.ST_RDONLY:
            writable.append(p)
    except OSError:
        pass
print(json.dumps(writable))
"""


def test_no_network(mode):
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


def test_own_loopback_works(mode):
    """Inside the network namespace the loopback is up (bwrap does that, and so does the namespaces
    mode): a program may talk to itself over 127.0.0.1, and only to itself."""
    res = run_program("import socket\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
                      "c = socket.create_connection(s.getsockname(), timeout=2); print('self ok')")
    assert res.ok and "self ok" in res.stdout, res.stderr


def test_fork_bomb_is_contained(mode):
    t0 = time.monotonic()
    res = run_program("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", timeout_s=3.0, nproc=16)
    assert res.status == "timeout"
    assert time.monotonic() - t0 < 8
    assert run_program("print('still fine')").stdout.strip() == "still fine"


def test_nproc_counts_the_programs_own_processes(mode):
    """With a uid of its own (root) or a user namespace of its own (kernel 5.14 and later) the process
    budget is exactly the program's: nproc=16 is the program and 15 children."""
    if not sandbox_info().exact_nproc:
        pytest.skip("NPROC is shared with the harness's uid here (bwrap without root)")
    src = ("import os, time\nn = 0\nfor _ in range(100):\n    try:\n        if os.fork() == 0:\n"
           "            time.sleep(5); os._exit(0)\n        n += 1\n    except OSError:\n        break\nprint(n)")
    res = run_program(src, nproc=16, timeout_s=10.0)
    assert res.ok and res.stdout.strip() == "15", (res.stdout, res.stderr[-300:])


def test_cannot_see_or_signal_outside(mode):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        res = run_program(f"import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
                          f"for t in ({bystander.pid}, os.getppid(), 1, -1):\n"
                          f"    try: os.kill(t, 9)\n    except OSError: pass\nprint('done')")
        assert res.status == "ok", res.stderr
        visible = json.loads(res.stdout.splitlines()[0])
        assert len(visible) <= 3, visible        # its own pid namespace: init (bwrap's or ours) and itself
        assert bystander.poll() is None          # still running
    finally:
        bystander.kill()
        bystander.wait()


def test_setsid_child_dies_with_the_sandbox(mode):
    name = f"rlvr-esc-{os.getpid() % 100000}"
    src = (_rename(name) + "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
           "    os._exit(0)\nprint('parent exits')")
    res = run_program(src, timeout_s=5.0)
    assert res.ok, res.stderr
    time.sleep(0.3)
    assert _alive_with_name(name) == 0


def test_the_deadline_kills_every_process_of_the_program(mode):
    name = f"rlvr-dl-{os.getpid() % 100000}"
    src = _rename(name) + "import os, time\nif os.fork() == 0:\n    os.setsid()\ntime.sleep(60)\n"
    res = run_program(src, timeout_s=1.5)
    assert res.status == "timeout"
    time.sleep(0.3)
    assert _alive_with_name(name) == 0


def test_the_sandbox_dies_with_the_harness(mode):
    """A harness killed with SIGKILL (a verifier worker past its deadline) leaves nothing running:
    bwrap's --die-with-parent, the namespaces' init's lifeline pipe."""
    name = f"rlvr-orph-{os.getpid() % 100000}"
    program = _rename(name) + "import time\ntime.sleep(60)\n"
    driver = (f"import sys\nsys.path.insert(0, {str(REPO)!r})\nfrom rlvr.tasks.sandbox import run_program\n"
              f"print(run_program({program!r}, timeout_s=60).status)\n")
    harness = subprocess.Popen([sys.executable, "-c", driver])
    try:
        deadline = time.monotonic() + 20
        while _alive_with_name(name) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _alive_with_name(name) == 1
    finally:
        harness.kill()
        harness.wait()
    deadline = time.monotonic() + 5
    while _alive_with_name(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive_with_name(name) == 0


def test_a_program_cannot_pass_for_a_sandbox_failure(mode):
    """Only the sandbox's own set-up makes `sandbox_error`: a program that prints what bwrap or unshare
    print when they fail, and exits as they or the set-up do, is an ordinary failing program."""
    for src in ("import sys; sys.stderr.write('bwrap: Creating new namespace failed\\n'); sys.exit(1)",
                "import sys; sys.stderr.write('unshare: unshare failed: Operation not permitted\\n'); sys.exit(1)",
                "import sys; sys.stderr.write('rlvr-sandbox: set-up failed: x\\n'); import os; os._exit(125)"):
        res = sandbox.run_checked(src)          # no VerifierError: the program ran
        assert res.status == "error", (src, res.status)


# -- the sandbox's own failures, refusals, settings ----------------------------------------------

def test_a_tool_that_fails_is_a_sandbox_error_and_a_verifier_error(tmp_path, monkeypatch):
    fake = tmp_path / "unshare"
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    info = sandbox._make_info("namespaces" if os.geteuid() == 0 else "userns", None, str(fake), sys.executable, "")
    res = sandbox._run(info, sys.executable, "", sandbox._default_limits(), files={"main.py": "print(1)"},
                       args=(), pass_fds=(), cancel=None)
    assert res.status == "sandbox_error" and "Operation not permitted" in res.stderr
    monkeypatch.setattr(sandbox, "sandbox_info", lambda isolation=None, python=None: info)
    with pytest.raises(VerifierError, match="did not start the program.*Operation not permitted"):
        sandbox.run_checked("print(1)")


def test_no_isolation_at_all_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv(sandbox.BWRAP_ENV, "/nonexistent/bwrap")
    monkeypatch.setenv(sandbox.UNSHARE_ENV, "/nonexistent/unshare")
    monkeypatch.delenv(sandbox.SANDBOX_ENV, raising=False)
    for call in (sandbox_info, lambda: run_program("print(1)")):
        with pytest.raises(UserError) as err:
            call()
        assert "\n" not in str(err.value)
        assert "apt-get install bubblewrap" in str(err.value) and "RLVR_SANDBOX=unisolated" in str(err.value)
    with pytest.raises(VerifierError, match="no isolation"):
        sandbox.run_checked("print(1)")
    record = sandbox.sandbox_provenance()
    assert record["isolation"] is None and "no isolation" in record["error"]


def test_bwrap_missing_means_namespaces(monkeypatch):
    if not _namespaces_work():
        pytest.skip("unshare cannot create namespaces here")
    monkeypatch.setenv(sandbox.BWRAP_ENV, "/nonexistent/bwrap")
    monkeypatch.delenv(sandbox.SANDBOX_ENV, raising=False)
    info = sandbox_info()
    assert info.isolation in ("namespaces", "userns") and "/nonexistent/bwrap" not in (info.bwrap or "")
    assert run_program("print('hi')").stdout.strip() == "hi"


def test_bad_mode_is_a_user_error(monkeypatch):
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "chroot")
    with pytest.raises(UserError, match="RLVR_SANDBOX"):
        sandbox_info()
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "fallback")         # the old name of the unisolated mode
    with pytest.raises(UserError, match="unisolated"):
        sandbox_info()


def test_refusing_anything_but_bwrap(monkeypatch):
    monkeypatch.setenv(sandbox.BWRAP_ENV, "/nonexistent/bwrap")
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="bwrap"):
        sandbox_info("bwrap")


# -- the user-namespace mode as a non-root user (as root, the tests above run the namespaces mode) --

_USERNS_PROBE = """
import ctypes, json, os, socket, sys
r = {"caps": [l.split()[1] for l in open("/proc/self/status") if l.startswith(("CapEff", "CapBnd"))]}
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    r["net"] = "connected"
except OSError:
    r["net"] = "refused"
for p in (sys.argv[2], "/rlvr_probe", os.path.dirname(sys.argv[2]) + "/new.txt"):
    try:
        open(p, "a").write("x")
        r.setdefault("wrote", []).append(p)
    except OSError:
        pass
libc = ctypes.CDLL(None, use_errno=True)
r["umount"] = libc.umount2(b"/tmp", 2)
r["remount"] = libc.mount(None, b"/", None, 0x20 | 0x1000, None)
for t in (int(sys.argv[3]), -1):
    try:
        os.kill(t, 9)
    except OSError:
        pass
r["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
r["writable"] = []
for p in sorted({l.split()[4] for l in open("/proc/self/mountinfo")}):
    try:
        if not os.path.islink(p) and not os.statvfs(p).f_flag & os.ST_RDONLY:
            r["writable"].append(p)
    except OSError:
        pass
print(json.dumps(r))
"""

_USERNS_DRIVER = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from rlvr.tasks.sandbox import run_program, sandbox_info


def _comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return None


out = {"info": sandbox_info().as_dict()}
res = run_program(sys.argv[2], args=sys.argv[3:])
out["probe"] = json.loads(res.stdout) if res.ok else res.status + ": " + res.stderr[-500:]
bomb = "import os\\nwhile True:\\n    try: os.fork()\\n    except OSError: pass"
out["fork_bomb"] = run_program(bomb, timeout_s=3.0, nproc=16).status
count = ("import os, time\\nn = 0\\nfor _ in range(100):\\n    try:\\n        if os.fork() == 0:\\n"
         "            time.sleep(5); os._exit(0)\\n        n += 1\\n    except OSError:\\n        break\\nprint(n)")
out["children"] = run_program(count, nproc=16, timeout_s=10.0).stdout.strip()
escape = ("import ctypes, os, time\\nctypes.CDLL(None).prctl(15, b'rlvr-userns-esc', 0, 0, 0)\\n"
          "if os.fork() == 0:\\n    os.setsid()\\ntime.sleep(60)\\n")
out["escape"] = run_program(escape, timeout_s=1.5).status
time.sleep(0.3)
out["left"] = sum(1 for p in os.listdir("/proc") if p.isdigit() and _comm(p) == "rlvr-userns-esc")
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start the driver as another user")
def test_userns_mode_as_an_unprivileged_user():
    """The user-namespace mode, run by uid 65534 on a Python every user can run: no network, nothing
    writable outside the scratch dir (not even that user's own files), no capability left (masks and
    read-only mounts cannot be undone), that user's other processes invisible and unkillable, a fork
    bomb contained, an exact process budget (Linux 5.14 and later), setsid escapees killed at the
    deadline."""
    python, unshare, nobody = _open_python(), sandbox._unshare_binary(), 65534
    if python is None or unshare is None:
        pytest.skip("needs a Python every uid can run and util-linux unshare")
    if subprocess.run([unshare, "--user", "--map-root-user", "--mount", "true"], user=nobody, group=nobody,
                      extra_groups=[], capture_output=True).returncode != 0:
        pytest.skip("unprivileged user namespaces are not allowed here")
    top = Path(tempfile.mkdtemp(prefix="rlvr-userns-test-"))      # pytest's tmp_path is closed to other uids
    os.chmod(top, 0o755)
    own = top / "nobody"
    own.mkdir()
    sentinel = own / "sentinel.txt"
    sentinel.write_text("original")
    for p in (own, sentinel):
        os.chown(p, nobody, nobody)
    bystander = subprocess.Popen(["sleep", "30"], user=nobody, group=nobody, extra_groups=[])
    try:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            server.setblocking(False)
            res = subprocess.run([python, "-c", _USERNS_DRIVER, str(REPO), _USERNS_PROBE, str(server.getsockname()[1]),
                                  str(sentinel), str(bystander.pid)], user=nobody, group=nobody, extra_groups=[],
                                 cwd="/", env={"PATH": "/usr/bin:/bin", "HOME": str(own), "RLVR_SANDBOX": "namespaces"},
                                 capture_output=True,
                                 text=True, timeout=120)
            with pytest.raises(BlockingIOError):
                server.accept()
        assert res.returncode == 0, res.stderr[-2000:]
        out = json.loads(res.stdout.splitlines()[-1])
        assert out["info"]["isolation"] == "userns", out
        probe = out["probe"]
        assert isinstance(probe, dict), probe
        assert probe["net"] == "refused" and "wrote" not in probe, probe
        assert probe["caps"] == ["0000000000000000", "0000000000000000"], probe
        assert probe["umount"] != 0 and probe["remount"] != 0, probe
        assert len(probe["pids"]) <= 3, probe
        assert set(probe["writable"]) <= {"/tmp", "/proc"}, probe
        assert out["fork_bomb"] == "timeout"
        assert out["escape"] == "timeout" and out["left"] == 0, out
        if out["info"]["guarantees"]["exact_nproc"]:
            assert out["children"] == "15", out
        assert sentinel.read_text() == "original" and sorted(p.name for p in own.iterdir()) == ["sentinel.txt"]
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        shutil.rmtree(top, ignore_errors=True)


# -- the unisolated opt-in ----------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="the root-only refusal")
def test_unisolated_as_root_refuses_a_python_other_uids_cannot_run(monkeypatch):
    monkeypatch.setattr(sandbox, "_info_cache", {})
    monkeypatch.setattr(sandbox, "_python_open_to_others", lambda python: False)
    with pytest.raises(UserError, match="root"):
        sandbox_info("unisolated")


@pytest.fixture
def unisolated_python(monkeypatch):
    python = _open_python()
    if python is None:
        pytest.skip("no Python that every uid can run, needed by the unisolated mode as root")
    if os.geteuid() != 0:
        pytest.skip("the unisolated mode as non-root runs programs under our own uid; not exercised here")
    monkeypatch.setattr(sandbox, "_warned", False)
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "unisolated")
    monkeypatch.setenv(sandbox.PYTHON_ENV, python)
    return python


def test_unisolated_is_marked_weaker_and_warns_once(unisolated_python, caplog):
    with caplog.at_level(logging.WARNING, logger="rlvr.tasks.sandbox"):
        info = sandbox_info()
        sandbox_info()
        res = run_program("print('hi')")
    assert info.isolation == "unisolated" and info.weaker and info.per_run_uid
    assert not info.guarantees["no_network"] and not info.guarantees["read_only_filesystem"]
    assert res.ok and res.isolation == "unisolated"
    warnings = [r for r in caplog.records if "SANDBOX UNISOLATED" in r.getMessage()]
    assert len(warnings) == 1


UNISOLATED_CASES = [
    ("wall clock", "import time; time.sleep(60)", {"timeout_s": 1.0}, "timeout"),
    ("memory", "x = bytearray(8 << 30)", {"memory_mb": 256}, "memory"),
    ("output cap", "import os\nwhile True: os.write(1, b'x' * 65536)", {"max_output_bytes": 1 << 16}, "output_limit"),
    ("fork bomb", "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", {"timeout_s": 3.0, "nproc": 16}, "timeout"),
]


@pytest.mark.parametrize("name,source,kwargs,status", UNISOLATED_CASES, ids=[c[0] for c in UNISOLATED_CASES])
def test_unisolated_limits(unisolated_python, name, source, kwargs, status):
    res = run_program(source, **kwargs)
    assert res.status == status, res.stderr[-300:]


def test_unisolated_runs_under_a_fresh_uid_that_cannot_touch_our_files(unisolated_python, tmp_path):
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("original")
    os.chmod(tmp_path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    res = run_program(f"import os\nprint(os.getuid())\ntry:\n    open({str(sentinel)!r}, 'w').write('x')\n"
                      f"except OSError:\n    print('refused')\nfor t in (os.getppid(), 1, -1):\n"
                      f"    try: os.kill(t, 9)\n    except OSError: pass")
    uid, verdict = res.stdout.split()[:2]
    assert int(uid) != 0 and verdict == "refused"
    assert sentinel.read_text() == "original"
