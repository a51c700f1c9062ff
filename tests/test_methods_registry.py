"""The method registry: names, building from a name + overrides, errors that name the field."""

import dataclasses
import sys

import pytest
from rlvr.methods.grpo import DAPO_OVERRIDES, DR_GRPO_OVERRIDES

from rlvr import methods

ALL = ["bbg", "casp", "grpo", "lp_reg", "nsr", "psr", "w_reinforce", "dapo", "dr_grpo", "gspo", "cispo", "rloo",
       "reinforce_pp", "reinforce_pp_baseline", "clip_cov", "kl_cov", "passk", "gmpo"]


def test_available_lists_every_method():
    assert set(ALL) <= set(methods.available())  # the doc test may add its example


@pytest.mark.parametrize("name", ALL)
def test_every_method_is_frozen_documented_and_self_consistent(name):
    m = methods.build(name)
    assert type(m) is methods.get(name) and m.name == name
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.loss_agg_mode = "token-mean"
    assert m.requires <= methods.AUX_FIELDS
    doc = methods.describe(name)
    module_doc = sys.modules[type(m).__module__].__doc__
    cited = module_doc + doc["doc"]
    assert "arXiv" in cited and ("Code:" in cited or "Code: none" in cited)
    # every flag is documented in the class docstring (or, for shared flags, a base class's)
    docs = " ".join(c.__doc__ or "" for c in type(m).__mro__)
    for f in doc["fields"]:
        assert f"{f['name']}:" in docs or f"{f['name']}," in docs, f["name"]


@pytest.mark.parametrize("name, overrides, message", [
    ("grpo", {"eps_hgih": 0.28}, "unknown field 'eps_hgih'"),
    ("grpo", {"eps_high": "0.28"}, "field 'eps_high' must be float"),
    ("grpo", {"dynamic_sampling": 1}, "field 'dynamic_sampling' must be bool"),
    ("grpo", {"eps_high": True}, "field 'eps_high' must be float"),
    ("grpo", {"loss_agg_mode": "token_mean"}, "field 'loss_agg_mode' must be one of"),
    ("grpo", {"overlong_max_len": 2.5}, "field 'overlong_max_len' must be int or null"),
    ("casp", {"top_n": 0}, "top_n must be >= 1"),
    ("casp", {"candidates": "older"}, "field 'candidates'"),
    ("lp_reg", {"rho": 0.0}, "rho must be in (0, 1]"),
    ("bbg", {"k_ref": 0}, "k_ref must be >= 1"),
    ("nope", {}, "unknown method 'nope'"),
])
def test_bad_configs_are_rejected_naming_the_field(name, overrides, message):
    with pytest.raises(ValueError) as e:
        methods.build(name, overrides)
    assert message in str(e.value)


def test_ints_are_accepted_for_floats_and_null_for_optional():
    m = methods.build("grpo", {"eps_high": 1, "dual_clip_c": 3, "overlong_max_len": None})
    assert m.eps_high == 1.0 and isinstance(m.eps_high, float) and m.dual_clip_c == 3.0


def test_variant_presets_build():
    dapo = methods.build("grpo", DAPO_OVERRIDES)
    assert dapo.refill and dapo.loss_agg_mode == "token-mean" and dapo.eps_high == 0.28 and "ref_logp" not in dapo.requires
    dr = methods.build("grpo", DR_GRPO_OVERRIDES)
    assert not dr.norm_adv_by_std and dr.loss_agg_mode == "seq-mean-token-sum-norm"


def test_register_rejects_non_dataclasses_and_duplicates():
    class NotADataclass(methods.Method):
        pass

    with pytest.raises(TypeError):
        methods.register("not_a_dataclass")(NotADataclass)
    with pytest.raises(ValueError, match="registered twice"):
        @methods.register("grpo")
        @dataclasses.dataclass(frozen=True)
        class Other(methods.Method):
            pass
