"""docs/add-a-method.md: its example method and its test run as written; docs/methods/: a page for every
method, cited by its help, and no citation of notes outside the repository."""

import re
import sys
import types
from pathlib import Path

import pytest

from rlvr import methods

DOC = Path(__file__).resolve().parents[1] / "docs" / "add-a-method.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def example_method():
    method_src, _ = python_blocks()
    assert len(method_src.splitlines()) <= 65, "the worked example should stay about 60 lines"
    module = types.ModuleType("methods.opo")
    sys.modules["methods.opo"] = module
    exec(compile(method_src, f"{DOC}:methods/opo.py", "exec"), module.__dict__)
    yield module
    methods._REGISTRY.pop("opo", None)
    sys.modules.pop("methods.opo", None)


def test_doc_has_the_method_and_its_test():
    assert len(python_blocks()) == 2


def test_example_registers_and_builds(example_method):
    assert "opo" in methods.available()
    m = methods.build("opo", {"eps_high": 0.28})
    assert m.eps_high == 0.28 and m.requires == frozenset()
    with pytest.raises(ValueError, match="unknown field 'eps_hi'"):
        methods.build("opo", {"eps_hi": 0.3})
    desc = methods.describe("opo")
    assert desc["summary"].startswith("OPO") and [f["name"] for f in desc["fields"]][-2:] == ["eps_low", "eps_high"]


def test_examples_tests_pass(example_method):
    _, test_src = python_blocks()
    ns: dict = {}
    exec(compile(test_src, f"{DOC}:tests/test_methods_opo.py", "exec"), ns)
    tests = [f for name, f in ns.items() if name.startswith("test_")]
    assert len(tests) == 2
    for t in tests:
        t()


def test_yaml_block_is_a_valid_method_config(example_method):
    yaml = pytest.importorskip("yaml")
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S).group(1)
    cfg = dict(yaml.safe_load(block)["method"])
    m = methods.build(cfg.pop("name"), cfg)
    assert m.loss_agg_mode == "seq-mean-token-mean" and m.eps_high == 0.28


# ---- method pages (docs/methods/) and no citation of files outside the repository -------------------

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "methods"
# what a user cannot open: notes kept outside the repository, cited by section or file name
OUTSIDE = re.compile(r"spec [0-9]|\.\./shared|anchors\.md|\[NF\]|methods-spec|field-2026")
SCANNED = ["harness", "tasks", "methods", "docs", "README.md", "reproduce", "benchmarks", "tests", "rlvr"]
TEXT = {".py", ".md", ".yaml", ".yml", ".json", ".toml", ".txt", ".ini", ".cfg"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _scanned_files():
    for top in SCANNED:
        path = ROOT / top
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            if f.suffix in TEXT and f != Path(__file__).resolve() and "__pycache__" not in f.parts:
                yield f


def test_nothing_cites_notes_a_user_cannot_open():
    hits = [f"{f.relative_to(ROOT)}:{n}: {line.strip()}"
            for f in _scanned_files()
            for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1) if OUTSIDE.search(line)]
    assert not hits, "\n".join(hits[:20])


def _shipped() -> list[str]:
    """The registered methods of the package (not the doc example this module registers for its tests)."""
    return [n for n in methods.available() if methods.get(n).__module__.startswith("rlvr.methods.")]


def _links(md: Path) -> list[str]:
    return [t.split("#")[0] for t in LINK.findall(md.read_text())
            if not t.startswith(("http://", "https://", "mailto:", "#"))]


def test_readme_links_only_to_files_inside_the_repository():
    for target in _links(ROOT / "README.md"):
        path = (ROOT / target).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), target


def test_every_method_page_link_resolves():
    """Links between method pages resolve; a link to the page of a method this checkout does not register
    (a page another branch adds with its method) is the only exception."""
    registered = set(_shipped())
    for md in sorted(PAGES.glob("*.md")):
        for target in _links(md):
            path = (md.parent / target).resolve()
            assert path.is_relative_to(ROOT), (md.name, target)
            if not path.exists():
                assert path.parent == PAGES and path.stem not in registered, (md.name, target)


def test_every_method_has_a_page_an_index_row_and_help_that_cites_them():
    index = (PAGES / "README.md").read_text()
    for name in _shipped():
        doc = methods.describe(name)["doc"]
        cited = re.findall(r"docs/methods/(\w+)\.md", doc)
        assert cited, f"rlvr methods {name}: cite docs/methods/<page>.md"
        assert all((PAGES / f"{page}.md").exists() for page in cited), (name, cited)
        assert re.search(rf"^\| `{name}` \| \[\w+\.md\]\((\w+)\.md\)", index, flags=re.M), f"{name}: no index row"
        assert "arxiv" in doc.lower(), f"rlvr methods {name}: cite the paper"
        assert "github.com" in doc or "no official code" in doc.lower(), f"rlvr methods {name}: cite the code"


def test_each_page_states_paper_code_differences_and_hyperparameters():
    for name in {re.findall(r"docs/methods/(\w+)\.md", methods.describe(n)["doc"])[0] for n in _shipped()}:
        text = (PAGES / f"{name}.md").read_text()
        assert re.search(r"Paper:", text) and re.search(r"(?i)code:", text), name
        assert re.search(r"^## .*(Paper vs code|Choices and the field|Differences)", text, flags=re.M), name
        assert re.search(r"^## Hyper-?parameters", text, flags=re.M), name
