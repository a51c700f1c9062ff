"""What a run records about where and with what it ran: code version, package versions, hardware."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from rlvr import harness

# Versions recorded in every run.json (absent packages are recorded as null).
TRACKED_PACKAGES = ("torch", "transformers", "tokenizers", "vllm", "math-verify", "datasets", "numpy",
                    "verl", "lm-eval")

REPO_ROOT = Path(__file__).resolve().parent.parent


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def git_state(root: Path = REPO_ROOT) -> dict:
    """{"sha": ..., "dirty": bool} of the harness checkout, or nulls when not run from a git checkout."""
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return {"sha": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(status) if status is not None else None}


# the packages whose source decides results; `source_digest` hashes their files
SOURCE_PACKAGES = ("rlvr.harness", "rlvr.tasks", "rlvr.methods")


def source_digest(roots: dict[str, list[Path]] | None = None) -> str:
    """sha256 over every file of the harness, tasks and methods packages as they are on disk (names and
    bytes; caches and the shipped model assets left out): the code version for cache keys. It works in a
    git checkout and in an installed wheel alike, and an edited tree never shares it with a clean one.
    `roots`: {package: [folders]} to hash instead of where the packages are imported from."""
    import importlib.util

    if roots is None:
        roots = {}
        for name in SOURCE_PACKAGES:
            spec = importlib.util.find_spec(name)
            roots[name.rpartition(".")[2]] = [Path(r) for r in ((spec.submodule_search_locations or []) if spec
                                                               else [])]
    h = hashlib.sha256()
    for name, folders in sorted(roots.items()):
        for root in folders:
            root = Path(root)
            for f in sorted(p for p in root.rglob("*") if p.is_file()):
                rel = f.relative_to(root)
                if "__pycache__" in rel.parts or rel.suffix in (".pyc", ".pyo") or (name, *rel.parts[:2]) == (
                        "harness", "reproduce", "assets"):
                    continue
                h.update(f"{name}/{rel.as_posix()}\0".encode())
                h.update(f.read_bytes())
                h.update(b"\0")
    return h.hexdigest()


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "rlvr-harness": harness.__version__}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capability() -> str | None:
    """The instruction set PyTorch dispatches its CPU kernels to here (AVX2, AVX512, DEFAULT, ...; fixed
    when torch is imported, see harness/cpu_isa.py); None without torch. Imports torch: every run uses
    it anyway, and the kernels decide the last bits of every CPU result."""
    try:
        import torch
    except ImportError:
        return None
    return torch.backends.cpu.get_cpu_capability()


def hardware() -> dict:
    torch = sys.modules.get("torch")  # GPUs are queried only where torch was already imported
    hw: dict = {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "cpu_capability": cpu_capability(),
                "platform": platform.platform(), "gpus": [], "cuda": None}
    if torch is not None and torch.cuda.is_available():
        hw["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        hw["cuda"] = torch.version.cuda
    return hw


def collect(argv: list[str] | None = None) -> dict:
    """Everything about the environment that a run records."""
    return {
        "harness": {"version": harness.__version__, **git_state()},
        "versions": package_versions(),
        "hardware": hardware(),
        "command": list(sys.argv if argv is None else argv),
    }


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_measurements(path: str | Path, settings: dict, results: dict, provenance: dict) -> None:
    """A benchmark's JSON record: its settings, its results, the provenance `collect()` took before it ran
    (so the sha and dirty flag describe the code that was measured) and the date it finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"date": utc_now(), "settings": settings, "results": results,
                                "provenance": provenance}, indent=2) + "\n")
