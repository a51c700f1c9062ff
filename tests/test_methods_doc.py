"""docs/add-a-method.md: its example method and its test run as written."""

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
