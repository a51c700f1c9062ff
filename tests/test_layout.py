"""The package layout: one import namespace (`rlvr`), and folders that import only what lies below them.

docs/architecture.md describes the layers; this file checks them. A user's own `tasks.py`, `methods.py` or
`harness.py` must not shadow anything of ours, installed editable or from a built wheel.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"harness": "rlvr.harness", "tasks": "rlvr.tasks", "methods": "rlvr.methods", "rlvr": "rlvr"}

# The pipeline from the bottom up: a module may import modules of its own layer or of lower ones only.
LAYERS = [
    ("rlvr.tasks", "rlvr.methods"),                                  # data + verifiers; the methods (pure)
    ("=rlvr.harness", "rlvr.harness.errors", "rlvr.harness.config", "rlvr.harness.provenance", "rlvr.harness.cpu_isa",
     "rlvr.harness.progress"),
    ("rlvr.harness.sample",),
    ("rlvr.harness.verify",),
    ("rlvr.harness.runs",),
    ("rlvr.harness.report",),
    ("rlvr.harness.eval",),
    ("rlvr.harness.train",),
    ("rlvr.harness.backends",),
    ("rlvr.harness.reproduce",),
    ("rlvr.harness.cli", "=rlvr"),
]
# "=name": that module alone (the package rlvr.harness holds only its version), not the modules under it


def layer(module: str) -> int:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            hit = module == p[1:] if p.startswith("=") else module == p or module.startswith(p + ".")
            if hit and (best is None or len(p) > len(best[1])):
                best = (i, p)
    assert best is not None, f"{module} is in no layer of tests/test_layout.py"
    return best[0]


def package_modules() -> dict[str, Path]:
    out = {}
    for folder, pkg in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = path
    return out


def imports_of(path: Path, module: str) -> set[str]:
    """Every module `path` imports, at top level or inside functions, resolved to absolute names."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    base = module if is_pkg else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                anchor = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{anchor}.{node.module}" if node.module else anchor
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)   # `from pkg import module`
    return out


def test_no_bare_top_level_imports():
    """The issue's check, over every tracked text file (code, docs, README, configs)."""
    bare = re.compile(r"^(from harness|import harness|from tasks|import tasks|from methods|import methods)\b")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    hits = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in (".json", ".jsonl", ".png", ".safetensors", ".csv") or not path.is_file():
            continue
        try:
            lines = path.read_text().splitlines()
        except UnicodeDecodeError:
            continue
        hits += [f"{name}:{i}: {line.strip()}" for i, line in enumerate(lines, 1) if bare.match(line)]
    assert not hits, "\n".join(hits)


def test_folders_import_only_their_own_layer_or_lower_ones():
    mods = package_modules()
    wrong = []
    for module, path in mods.items():
        mine = layer(module)
        for target in imports_of(path, module):
            if not target.startswith("rlvr") or target not in mods and target.rpartition(".")[0] not in mods:
                continue
            target_mod = target if target in mods else target.rpartition(".")[0]
            if module == "rlvr" or target_mod == "rlvr":   # the API package imports lazily, nothing at import
                continue
            if layer(target_mod) > mine:
                wrong.append(f"{module} imports {target_mod}")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_pyproject_lists_every_package_folder():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"rlvr": "rlvr", "rlvr.harness": "harness", "rlvr.tasks": "tasks",
                                     "rlvr.methods": "methods", "rlvr.recipes": "reproduce"}
    found = {FOLDERS[init.relative_to(ROOT).parts[0]] + "".join("." + p for p in init.relative_to(ROOT).parts[1:-1])
             for folder in FOLDERS for init in (ROOT / folder).rglob("__init__.py")}
    assert set(config["packages"]) == found | {"rlvr.recipes"}      # recipes: data only, no __init__.py


SHADOWS = {"tasks.py": "raise SystemExit('the user\\'s tasks.py was imported')\n",
           "methods.py": "raise SystemExit('the user\\'s methods.py was imported')\n",
           "harness.py": "raise SystemExit('the user\\'s harness.py was imported')\n"}

CHECK = """
import sys
import rlvr
from rlvr.harness.cli import main
assert rlvr.pass_at_k(4, 2, 2) == 1 - 1 / 6
from rlvr import tasks, methods
assert "grpo" in methods.available() and "aime24" in tasks.available()
print(rlvr.__file__)
sys.exit(main(sys.argv[1:]))
"""


def run_in(folder: Path, env: dict, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHECK, *argv], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def shadowed(tmp_path) -> Path:
    folder = tmp_path / "user-project"
    folder.mkdir()
    for name, text in SHADOWS.items():
        (folder / name).write_text(text)
    return folder


def test_a_users_own_tasks_methods_and_harness_modules_shadow_nothing(shadowed, data_dir):
    """From a folder holding its own tasks.py, methods.py and harness.py: the Python API, the CLI, and the
    lm-eval helper module that `rlvr export-lm-eval` writes (imported as lm-eval imports it)."""
    env = {**os.environ, "RLVR_DATA_DIR": str(data_dir), "PYTHONPATH": ""}
    res = run_in(shadowed, env, "tasks")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "micro_arith" in res.stdout
    res = run_in(shadowed, env, "export-lm-eval", "--tasks", "micro_arith", "--n", "2", "--out", "exported")
    assert res.returncode == 0, res.stderr[-2000:]
    helper = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'exported'); import rlvr_lmeval; "
                             "print(len(rlvr_lmeval.load_docs(rlvr_task='micro_arith')['test']))"],
                            cwd=shadowed, env=env, capture_output=True, text=True, timeout=300)
    assert helper.returncode == 0, helper.stderr[-2000:]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_built_wheel_installs_under_rlvr_and_ships_nothing_bare(shadowed, tmp_path, data_dir):
    """The wheel holds rlvr/ only (harness, tasks and methods inside it) and works from the shadowing folder."""
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    if build.returncode != 0 and "No module named" in build.stderr:
        pytest.skip(f"cannot build a wheel here: {build.stderr.strip().splitlines()[-1]}")
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("rlvr_harness-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("rlvr_harness-")}
    assert tops == {"rlvr"}, tops
    assert "rlvr/harness/report/passk.py" in names and "rlvr/tasks/base.py" in names
    assert "rlvr/harness/reproduce/assets/micro-base/model.safetensors" in names   # the shipped micro base
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "RLVR_DATA_DIR": str(data_dir), "PYTHONPATH": str(site)}
    res = run_in(shadowed, env, "methods")
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines()[0].startswith(str(site)) and "grpo" in res.stdout
    assert "rlvr/recipes/nsr/recipe.yaml" in names                 # the paper recipes travel with the wheel
    res = run_in(shadowed, env, "reproduce", "nsr", "--dry-run")
    assert res.returncode == 0, res.stderr[-2000:]
