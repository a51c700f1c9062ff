"""The verl backend against the installed verl 0.9.1 (tox -e verl; skipped when verl is absent).

Checks that the functions registered in verl's registries compute exactly our advantages and losses,
that verl's data-parallel loss normalisation maps onto ours, that the patch's targets exist and the
patch refuses other releases, that the patched forward and loss reproduce our trainer's loss and
gradients on a tiny model, and that verl's own config loader accepts the translated launch.
"""

import json
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch

verl = pytest.importorskip("verl")
core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")

from rlvr.harness.backends.verl import VERL_VERSION, launch, patch, plugin, verl_name  # noqa: E402
from rlvr.harness.config import from_dict  # noqa: E402
from rlvr.harness.train.token_stats import token_stats  # noqa: E402
from rlvr.harness.train.trainer import TrainConfig  # noqa: E402
from rlvr.methods.aggregation import AGG_MODES, AggScale  # noqa: E402
from rlvr.methods.base import TokenBatch  # noqa: E402

from rlvr import methods  # noqa: E402


def random_batch(method, B=6, T=7, seed=0, dtype=torch.float64):
    """Random per-token tensors for `method`, with every field it requires."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    mask = (torch.arange(T)[None] < lengths[:, None]).to(dtype)
    logp = (-torch.rand(B, T, generator=g, dtype=dtype) * 3).requires_grad_()
    rewards = torch.tensor([1.0, 0.0] * (B // 2), dtype=dtype)
    group_ids = torch.arange(B) // 3
    aux = {"tokens": torch.randint(0, 50, (B, T), generator=g),
           "entropy": torch.rand(B, T, generator=g, dtype=dtype).requires_grad_(),
           "ref_logp": -torch.rand(B, T, generator=g, dtype=dtype) * 3,
           "proxy_logp": -torch.rand(B, T, generator=g, dtype=dtype) * 2}
    n = method.stat_params().get("top_n", 3)
    top = -torch.rand(B, T, n, generator=g, dtype=dtype).sort(-1, descending=True).values
    aux["topk_logp"] = top.requires_grad_()
    aux["topk_ids"] = torch.randint(0, 50, (B, T, n), generator=g)
    aux["tokens"][:, ::2] = aux["topk_ids"][:, ::2, 0]     # some sampled tokens are the argmax
    aux = {k: v for k, v in aux.items() if k in method.requires}
    adv = method.advantages(rewards, group_ids, mask)
    old = (logp + 0.3 * torch.randn(B, T, generator=g, dtype=dtype)).detach()
    return dict(logp=logp, old_logp=old, mask=mask, advantages=adv, rewards=rewards, group_ids=group_ids, **aux)


# methods with non-default settings that change their loss or requirements
# (pass@k training's k must not exceed random_batch's groups of 3)
VARIANTS = [(name, {"k": 2} if name == "passk" else {}) for name in methods.available()] + [
    ("grpo", {"kl_coef": 0.0, "entropy_coef": 0.01, "loss_agg_mode": "seq-mean-token-sum-norm"}),
    ("casp", {"top1_penalty": "ratio", "positive_rows": "advantage"}),
    ("lp_reg", {"percentile_scope": "batch", "clip_form": "paper", "rho": 0.3}),
    ("nsr", {"row_selection": "mask", "microbatch_weighted": True}),
    ("grpo", {"kl_coef": 0.0, "loss_agg_mode": "seq-mean-token-sum-norm", "sum_norm_divisor": "t_pad"}),
    ("lp_reg", {"proxy_logits": "scaled", "microbatch_weighted": False}),
]


@pytest.fixture
def method_env(monkeypatch):
    def set_method(name, overrides):
        monkeypatch.setenv("RLVR_VERL_METHOD", json.dumps({"name": name, **overrides}))
        return methods.build(name, overrides)
    return set_method


def test_every_method_is_registered_under_its_rlvr_name():
    names = plugin.register_all()
    assert names == [verl_name(n) for n in methods.available()]
    for name in methods.available():
        assert core_algos.get_adv_estimator_fn(verl_name(name)).rlvr_method == name
        assert core_algos.get_policy_loss_fn(verl_name(name)).rlvr_method == name
    # verl's own GRPO is untouched
    assert core_algos.get_adv_estimator_fn("grpo") is core_algos.compute_grpo_outcome_advantage


@pytest.mark.parametrize("name, overrides", VARIANTS)
def test_registered_advantage_is_ours(name, overrides, method_env):
    method = method_env(name, overrides)
    B, T = 12, 5
    g = torch.Generator().manual_seed(1)
    rewards = (torch.rand(B, generator=g) > 0.5).float()
    mask = (torch.arange(T)[None] < torch.randint(1, T + 1, (B,), generator=g)[:, None]).float()
    uids = np.array([f"uid-{i // 4}" for i in range(B)], dtype=object)
    token_rewards = torch.zeros(B, T)
    token_rewards[torch.arange(B), mask.sum(-1).long() - 1] = rewards     # verl puts the score on the last token
    fn = core_algos.get_adv_estimator_fn(verl_name(name))
    adv, returns = fn(token_level_rewards=token_rewards, response_mask=mask, index=uids, config=None,
                      some_future_keyword=1)
    want = method.advantages(rewards, torch.arange(B) // 4, mask)
    torch.testing.assert_close(adv, want, rtol=0, atol=0)
    torch.testing.assert_close(returns, want, rtol=0, atol=0)


@pytest.mark.parametrize("name, overrides", VARIANTS)
def test_registered_loss_is_ours(name, overrides, method_env):
    method = method_env(name, overrides)
    b = random_batch(method)
    fn = core_algos.get_policy_loss_fn(verl_name(name))
    aux = {k: v for k, v in b.items() if k in method.requires}
    torch.manual_seed(0)                 # Clip-Cov draws tokens from torch's global generator
    loss, stats = fn(old_log_prob=b["old_logp"], log_prob=b["logp"], advantages=b["advantages"],
                     response_mask=b["mask"].bool(), loss_agg_mode=method.loss_agg_mode, config=None,
                     rollout_is_weights=None, rewards=b["rewards"], group_ids=b["group_ids"],
                     some_future_keyword=1, **aux)
    (g_verl,) = torch.autograd.grad(loss, b["logp"])
    torch.manual_seed(0)
    want, want_stats = method.loss(TokenBatch(**b))
    (g_ours,) = torch.autograd.grad(want, b["logp"])
    torch.testing.assert_close(loss, want, rtol=0, atol=0)
    torch.testing.assert_close(g_verl, g_ours, rtol=0, atol=0)
    assert stats == want_stats


def test_loss_names_the_fields_a_stock_verl_loss_cannot_pass(method_env):
    method = method_env("lp_reg", {})
    b = random_batch(method)
    fn = core_algos.get_policy_loss_fn("rlvr_lp_reg")
    with pytest.raises(ValueError, match="rlvr_lp_reg needs proxy_logp"):
        fn(old_log_prob=b["old_logp"], log_prob=b["logp"], advantages=b["advantages"], response_mask=b["mask"])
    with pytest.raises(ValueError, match="loss_agg_mode"):
        fn(old_log_prob=b["old_logp"], log_prob=b["logp"], advantages=b["advantages"], response_mask=b["mask"],
           loss_agg_mode="seq-mean-token-mean", proxy_logp=b["proxy_logp"])


def actor_config(loss_mode, agg_mode="token-mean", loss_scale_factor=None):
    from verl.workers.config import FSDPActorConfig, PolicyLossConfig

    return FSDPActorConfig(strategy="fsdp", ppo_mini_batch_size=4, ppo_micro_batch_size_per_gpu=2, rollout_n=1,
                           loss_agg_mode=agg_mode, loss_scale_factor=loss_scale_factor,
                           policy_loss=PolicyLossConfig(loss_mode=loss_mode))


@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize("empty_row", [False, True])
def test_every_aggregation_mode_equals_verls_own(mode, empty_row):
    """Our agg_loss is verl's agg_loss of the same name (one rank, the whole mini-batch), also when a row
    holds no response token: verl leaves it out of the sequence count, and so do we."""
    from rlvr.methods.aggregation import agg_loss

    g = torch.Generator().manual_seed(5)
    loss = torch.randn(8, 7, generator=g, dtype=torch.float64)
    mask = (torch.rand(8, 7, generator=g) < 0.7).to(torch.float64)
    mask[:, 0] = 1
    if empty_row:
        mask[3] = 0
    want = core_algos.agg_loss(loss, mask, mode, loss_scale_factor=7)
    tol = 1e-7 if mode == "seq-mean-token-mean" else 1e-12    # verl divides by (row count + 1e-8)
    torch.testing.assert_close(agg_loss(loss, mask, mode, AggScale.of(mask, t_pad=7)), want, rtol=tol, atol=tol)
    torch.testing.assert_close(agg_loss(loss, mask, mode), core_algos.agg_loss(loss, mask, mode), rtol=tol, atol=tol)


def test_sum_norm_divisor_t_pad_is_verl_main_and_seqs_t_pad_is_verl_091():
    """verl 0.9.1 divides seq-mean-token-sum-norm by the sequence count and loss_scale_factor; verl's main
    branch of January 2026 divides the masked total by loss_scale_factor alone (verl 0.3.1's form)."""
    from rlvr.methods.aggregation import agg_loss

    g = torch.Generator().manual_seed(6)
    loss = torch.randn(5, 6, generator=g, dtype=torch.float64)
    mask = (torch.rand(5, 6, generator=g) < 0.6).to(torch.float64)
    mask[:, 0] = 1
    scale = AggScale.of(mask, t_pad=9)
    v091 = core_algos.agg_loss(loss, mask, "seq-mean-token-sum-norm", loss_scale_factor=9)
    torch.testing.assert_close(agg_loss(loss, mask, "seq-mean-token-sum-norm", scale), v091, rtol=1e-12, atol=1e-12)
    main = agg_loss(loss, mask, "seq-mean-token-sum-norm", scale, sum_norm_divisor="t_pad")
    torch.testing.assert_close(main, (loss * mask).sum() / 9, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(main, v091 * 5, rtol=1e-12, atol=1e-12)   # the 0.9.1 form times the 5 sequences


def test_clip_fractions_are_verls_pg_clipfrac_and_pg_clipfrac_lower(method_env):
    """verl 0.9.1's vanilla PPO loss logs the clipped-branch fraction and the dual-clip fraction apart."""
    method = method_env("grpo", {"kl_coef": 0.0, "loss_agg_mode": "token-mean", "eps_high": 0.28,
                                 "dual_clip_c": 3.0})
    b = random_batch(method, B=12, T=9, seed=4)
    g = torch.Generator().manual_seed(8)
    b["old_logp"] = (b["logp"] - 1.5 * torch.randn(b["logp"].shape, generator=g, dtype=b["logp"].dtype)).detach()
    from verl.workers.config import FSDPActorConfig, PolicyLossConfig

    cfg = FSDPActorConfig(strategy="fsdp", ppo_mini_batch_size=4, ppo_micro_batch_size_per_gpu=2, rollout_n=1,
                          clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0,
                          policy_loss=PolicyLossConfig(loss_mode="vanilla"))
    loss, metrics = core_algos.compute_policy_loss_vanilla(b["old_logp"], b["logp"], b["advantages"], b["mask"],
                                                           loss_agg_mode="token-mean", config=cfg)
    ours, stats = method.loss(TokenBatch(**b))
    torch.testing.assert_close(ours, loss, rtol=1e-12, atol=1e-12)
    assert 0 < stats["pg_clipfrac_lower"] and 0 < stats["pg_clipfrac"]
    # verl's masked_mean divides by (count + 1e-8)
    assert stats["pg_clipfrac"] == pytest.approx(metrics["actor/pg_clipfrac"], rel=1e-9)
    assert stats["pg_clipfrac_lower"] == pytest.approx(metrics["actor/pg_clipfrac_lower"], rel=1e-9)
    assert stats["pg_clipfrac"] != pytest.approx(stats["pg_clipfrac"] + stats["pg_clipfrac_lower"], rel=1e-6)


@pytest.mark.parametrize("mode, divisor", [(m, "seqs_t_pad") for m in AGG_MODES] + [("seq-mean-token-sum-norm", "t_pad")])
@pytest.mark.parametrize("name", ["grpo", "nsr"])
def test_data_parallel_micro_batches_sum_to_the_mini_batch_loss(mode, divisor, name, method_env):
    """verl splits a mini-batch over dp ranks and micro-batches, sums each rank's micro-batch losses
    and FSDP averages the ranks' gradients; with verl's global batch info that must equal our loss of
    the whole mini-batch (seq-mean-token-sum-norm with verl's loss_scale_factor as t_pad)."""
    overrides = {"loss_agg_mode": mode, "sum_norm_divisor": divisor,
                 **({"kl_coef": 0.0} if name == "grpo" else {"row_selection": "mask"})}
    method = method_env(name, overrides)
    b = random_batch(method, B=8, T=6, seed=3)
    fn = core_algos.get_policy_loss_fn(verl_name(name))
    dp, factor = 2, 9
    cfg = actor_config(verl_name(name), mode, factor)
    cfg.global_batch_info.update(dp_size=dp, batch_num_tokens=int(b["mask"].sum()), global_batch_size=8,
                                 loss_scale_factor=factor)
    ranks = []
    for rank in range(dp):
        total = 0.0
        for micro in (slice(4 * rank, 4 * rank + 2), slice(4 * rank + 2, 4 * rank + 4)):
            sub = {k: v[micro] for k, v in b.items()}
            # a micro-batch is padded to its own longest response
            width = int(sub["mask"].sum(-1).max())
            sub = {k: v[:, :width] if v.dim() > 1 else v for k, v in sub.items()}
            loss, _ = fn(old_log_prob=sub["old_logp"], log_prob=sub["logp"], advantages=sub["advantages"],
                         response_mask=sub["mask"].bool(), loss_agg_mode=mode, config=cfg,
                         **{k: v for k, v in sub.items() if k in method.requires})
            total = total + loss
        ranks.append(total)
    averaged = sum(ranks) / dp
    whole = TokenBatch(**b, agg_scale=AggScale.of(b["mask"], t_pad=factor))
    want, _ = method.loss(whole)
    torch.testing.assert_close(averaged, want, rtol=1e-12, atol=1e-12)
    g1 = torch.autograd.grad(averaged, b["logp"], retain_graph=True)[0]
    g2 = torch.autograd.grad(want, b["logp"])[0]
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)


def test_stock_verl_ppo_loss_runs_a_method_that_needs_no_patch(method_env):
    """verl's own ppo_loss (not patched) with loss_mode rlvr_grpo and no KL: our loss, verl's plumbing."""
    from verl.workers.utils.losses import ppo_loss as stock_ppo_loss

    method = method_env("grpo", {"kl_coef": 0.0, "loss_agg_mode": "token-mean"})
    td, lp_full, b = nested_batch(method)
    cfg = actor_config("rlvr_grpo")
    loss, metrics = stock_ppo_loss(cfg, {"log_probs": lp_full}, td)
    want, _ = method.loss(TokenBatch(**b))
    torch.testing.assert_close(loss, want, rtol=0, atol=0)
    assert metrics["actor/pg_loss"].aggregate() == pytest.approx(float(want))


def nested_batch(method, plen=(3, 5, 2, 4), rlen=(4, 2, 5, 3), seed=0):
    """A micro-batch in verl 0.9.1's no-padding layout (jagged prompt+response rows) and the padded
    TokenBatch fields it stands for."""
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu

    g = torch.Generator().manual_seed(seed)
    B, T = len(rlen), max(rlen)
    nest = partial(torch.nested.as_nested_tensor, layout=torch.jagged)
    full = [-torch.rand(p + r, generator=g, dtype=torch.float64) for p, r in zip(plen, rlen, strict=True)]
    lp_leaf = torch.cat(full).requires_grad_()
    lp_full = torch.nested.nested_tensor_from_jagged(lp_leaf, torch.tensor([0, *np.cumsum([p + r for p, r in
                                                                                          zip(plen, rlen, strict=True)])]))
    resp_logp = [lp_leaf[sum(plen[:i]) + sum(rlen[:i]) + plen[i] - 1:][:rlen[i]] for i in range(B)]
    old = [(x.detach() + 0.2 * torch.randn(len(x), generator=g, dtype=torch.float64)) for x in resp_logp]
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    mask = (torch.arange(T)[None] < torch.tensor(rlen)[:, None]).double()
    adv = method.advantages(rewards, torch.tensor([0, 0, 1, 1]), mask)
    td = TensorDict({"prompts": nest([torch.randint(3, 50, (p,), generator=g) for p in plen]),
                     "responses": nest([torch.randint(3, 50, (r,), generator=g) for r in rlen]),
                     "response_mask": nest([torch.ones(r, dtype=torch.float64) for r in rlen]),
                     "old_log_probs": nest(old),
                     "advantages": nest([adv[i, :r] for i, r in enumerate(rlen)])}, batch_size=[B])
    tu.assign_non_tensor(td, dp_size=1, batch_num_tokens=None, global_batch_size=None)

    def pad(xs):
        return torch.stack([torch.nn.functional.pad(x, (0, T - len(x))) for x in xs])

    b = dict(logp=pad(resp_logp), old_logp=pad(old), mask=mask, advantages=adv, rewards=rewards,
             group_ids=torch.arange(B))
    return td, lp_full, b


# ---- the patch -----------------------------------------------------------------------------------

def test_patch_targets_exist_in_the_pinned_release():
    assert verl.__version__ == VERL_VERSION
    patch.check_targets()
    for module, path, _ in patch.TARGETS:
        assert callable(patch._resolve(module, path))


def test_patch_refuses_another_release_in_one_line(monkeypatch):
    monkeypatch.setattr(verl, "__version__", "0.9.2")
    with pytest.raises(patch.VerlPatchError) as e:
        patch.install(methods.build("lp_reg"))
    assert "pinned to verl==0.9.1, found verl==0.9.2" in str(e.value) and "\n" not in str(e.value)


def test_patch_refuses_a_missing_target(monkeypatch):
    from verl.workers.engine.fsdp import transformer_impl

    monkeypatch.delattr(transformer_impl.FSDPEngineWithLMHead, "prepare_model_outputs")
    with pytest.raises(patch.VerlPatchError, match="FSDPEngineWithLMHead.prepare_model_outputs is missing"):
        patch.check_targets()


def test_patch_refuses_fields_it_cannot_compute():
    with pytest.raises(patch.VerlPatchError, match="candidates: current"):
        patch.install(methods.build("casp", {"candidates": "old"}))


@pytest.fixture(scope="module")
def tiny_engine(tiny_model):
    """verl's FSDP engine class around a plain tiny HF model (no FSDP, no GPU): only the methods
    prepare_model_inputs / prepare_model_outputs run, as in forward_step."""
    import verl.utils.torch_functional as verl_F
    from transformers import AutoModelForCausalLM
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    engine = object.__new__(FSDPEngineWithLMHead)
    engine.module = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    engine.pad_to_length = False
    engine.use_ulysses_sp = False
    engine.ulysses_sequence_parallel_size = 1
    engine.engine_config = SimpleNamespace(entropy_checkpointing=False, entropy_from_logits_with_chunking=False,
                                           entropy_from_logits_chunk_size=2048)
    engine.compute_entropy_from_logits = verl_F.entropy_from_logits
    return engine


def engine_batch(plen=(4, 6, 5), rlen=(5, 3, 7), temperature=0.7, seed=0):
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu
    from verl.utils.dataset.dataset_utils import DatasetPadMode

    g = torch.Generator().manual_seed(seed)
    nest = partial(torch.nested.as_nested_tensor, layout=torch.jagged)
    prompts = [torch.randint(3, 500, (p,), generator=g) for p in plen]
    resps = [torch.randint(3, 500, (r,), generator=g) for r in rlen]
    scores = [1.0, 0.0, 0.0][:len(rlen)]
    advantages = [0.9, -1.1, -0.4][:len(rlen)]
    td = TensorDict({
        "input_ids": nest([torch.cat([p, r]) for p, r in zip(prompts, resps, strict=True)]),
        "position_ids": nest([torch.arange(p + r) for p, r in zip(plen, rlen, strict=True)]),
        "prompts": nest(prompts), "responses": nest(resps),
        "response_mask": nest([torch.ones(r) for r in rlen]),
        "old_log_probs": nest([-torch.rand(r, generator=g) * 6 for r in rlen]),
        "advantages": nest([torch.full((r,), a) for r, a in zip(rlen, advantages, strict=True)]),
        "rm_scores": nest([torch.cat([torch.zeros(r - 1), torch.tensor([s])]) for r, s in zip(rlen, scores,
                                                                                               strict=True)]),
    }, batch_size=[len(plen)])
    tu.assign_non_tensor(td, temperature=temperature, use_remove_padding=False, pad_mode=DatasetPadMode.NO_PADDING,
                         use_fused_kernels=False, dp_size=1, batch_num_tokens=sum(rlen), global_batch_size=len(plen))
    return td, prompts, resps, torch.tensor(scores)


def engine_forward(engine, td, calculate_entropy):
    """forward_step's forward half (forward_step itself moves the batch to a CUDA device)."""
    from verl.utils import tensordict_utils as tu

    tu.assign_non_tensor(td, calculate_entropy=calculate_entropy)
    inputs, args = engine.prepare_model_inputs(micro_batch=td)
    out = engine.module(**inputs, use_cache=False)
    return engine.prepare_model_outputs(output=out, output_args=args, micro_batch=td, logits_processor_func=None)


def reference_fields(engine, prompts, resps, method, temperature):
    """What `rlvr train` computes for the same rows: hidden states -> rlvr.harness.train.token_stats."""
    model = engine.module
    B, T = len(resps), max(len(r) for r in resps)
    width = max(len(p) + len(r) for p, r in zip(prompts, resps, strict=True))
    ids, attn = torch.zeros(B, width, dtype=torch.long), torch.zeros(B, width, dtype=torch.long)
    tokens, mask, pos = torch.zeros(B, T, dtype=torch.long), torch.zeros(B, T), torch.zeros(B, T, dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, resps, strict=True)):
        ids[i, :len(p) + len(r)], attn[i, :len(p) + len(r)] = torch.cat([p, r]), 1
        tokens[i, :len(r)], mask[i, :len(r)] = r, 1
        pos[i] = torch.arange(T).clamp(max=len(r) - 1) + len(p) - 1
    h = model.model(input_ids=ids, attention_mask=attn).last_hidden_state
    h = torch.gather(h, 1, pos[..., None].expand(-1, -1, h.shape[-1]))
    w = model.get_output_embeddings().weight
    p = method.stat_params()
    return token_stats(h, w, tokens, temperature=temperature, mask=mask, entropy=True,
                       top_n=p.get("top_n", 0), minp_kappa=p.get("minp_kappa"),
                       minp_raw=bool(p.get("minp_raw", False))), tokens, mask


@pytest.mark.parametrize("name, overrides", [("lp_reg", {"rho": 0.5, "kappa": 0.3}),
                                             ("lp_reg", {"rho": 0.5, "kappa": 0.3, "proxy_logits": "scaled"}),
                                             ("casp", {"alpha": 0.2}),
                                             ("grpo", {"kl_coef": 0.0, "entropy_coef": 0.05})])
def test_patched_forward_and_loss_reproduce_our_trainer(name, overrides, tiny_engine, method_env):
    """The old-log-prob pass stores the proxy, the update pass computes top-N, the patched ppo_loss
    hands everything to our loss: same loss and same parameter gradients as `rlvr train`'s path."""
    from verl.workers import engine_workers

    method = method_env(name, overrides)
    patch.install(method)
    assert engine_workers.ppo_loss is patch.ppo_loss
    temperature = 0.7
    td, prompts, resps, scores = engine_batch(temperature=temperature)
    with torch.no_grad():
        old = engine_forward(tiny_engine, td, calculate_entropy=True)
    for key in old.keys():
        if key.startswith(patch.FIELD_PREFIX):       # what verl's TransferQueue hands the update
            td[key] = old[key]
    cfg = actor_config(verl_name(name), method.loss_agg_mode)
    tiny_engine.module.zero_grad()
    out = engine_forward(tiny_engine, td, calculate_entropy="entropy" in method.requires)
    loss, metrics = engine_workers.ppo_loss(config=cfg, model_output=out, data=td)
    loss.backward()
    got_grads = [p.grad.clone() for p in tiny_engine.module.parameters()]

    tiny_engine.module.zero_grad()
    ref, tokens, mask = reference_fields(tiny_engine, prompts, resps, method, temperature)
    T = mask.shape[1]
    pad = partial(torch.nn.utils.rnn.pad_sequence, batch_first=True)
    batch = TokenBatch(logp=ref["logp"], old_logp=pad(list(td["old_log_probs"].unbind()))[:, :T], mask=mask,
                       advantages=pad(list(td["advantages"].unbind()))[:, :T], rewards=scores,
                       group_ids=torch.arange(3),
                       **{k: (tokens if k == "tokens" else ref[k]) for k in method.requires})
    want, want_stats = method.loss(batch)
    want.backward()
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    for g_got, p in zip(got_grads, tiny_engine.module.parameters(), strict=True):
        torch.testing.assert_close(g_got, p.grad, rtol=1e-4, atol=1e-6)
    assert metrics["rlvr/loss"].aggregate() == pytest.approx(want_stats["loss"], rel=1e-5)
    if name == "lp_reg":      # the regulariser is active on this batch, so the proxy was compared
        assert want_stats["lp_reg/reg_frac"] > 0
    if name == "casp":
        assert want_stats["casp/fork_frac"] > 0


def test_patched_forward_remove_padding_layout_matches_token_stats(tiny_engine):
    """The packed (remove-padding) branch: statistics of synthetic logits = h @ W.T per token."""
    from verl.utils import tensordict_utils as tu

    method = methods.build("casp", {"top_n": 2})
    patch.install(method)
    g = torch.Generator().manual_seed(5)
    td, prompts, resps, _ = engine_batch(plen=(2, 3), rlen=(3, 4))
    tu.assign_non_tensor(td, use_remove_padding=True, calculate_entropy=False)
    _, args = tiny_engine.prepare_model_inputs(micro_batch=td)
    nnz, H, V = args["input_ids_rmpad_rolled"].shape[0], 8, 512
    h = torch.randn(1, nnz, H, generator=g)
    w = torch.randn(V, H, generator=g)
    out = tiny_engine.prepare_model_outputs(output=SimpleNamespace(logits=h @ w.T), output_args=args,
                                            micro_batch=td, logits_processor_func=None)
    want = token_stats(h, w, args["input_ids_rmpad_rolled"][None], temperature=0.7, top_n=2)
    torch.testing.assert_close(out["rlvr_topk_logp"].values(), want["topk_logp"][0])
    torch.testing.assert_close(out["rlvr_topk_ids"].values(), want["topk_ids"][0])
    assert out["rlvr_topk_logp"].offsets().tolist() == td["input_ids"].offsets().tolist()


def test_reference_pass_gets_no_old_pass_fields(tiny_engine):
    patch.install(methods.build("lp_reg"))
    td, *_ = engine_batch()
    with torch.no_grad():
        out = engine_forward(tiny_engine, td, calculate_entropy=False)
    assert not [k for k in out if k.startswith(patch.FIELD_PREFIX)]


# ---- the launch against verl's config loader ----------------------------------------------------

LAUNCH_CASES = [
    ({"name": "grpo"}, {}),
    ({"name": "grpo", "dynamic_sampling": True, "kl_coef": 0.0, "eps_high": 0.28}, {"strategy": "fsdp2"}),
    ({"name": "lp_reg"}, {"nnodes": 2, "n_gpus_per_node": 8, "rollout_tp": 2}),
    ({"name": "casp", "top_n": 3}, {"rollout": "sglang"}),
    ({"name": "nsr", "row_selection": "mask"}, {"logger": ["console", "tensorboard"]}),
    ({"name": "bbg", "gate": "off"}, {"overrides": ["actor_rollout_ref.rollout.max_num_seqs=128"]}),
]


@pytest.mark.parametrize("method_block, section", LAUNCH_CASES)
def test_translated_launch_is_accepted_by_verls_config_loader(method_block, section, tmp_path):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    cfg = from_dict(TrainConfig, {
        "model": str(tmp_path / "model"), "out": str(tmp_path / "out"), "tasks": ["micro_arith"],
        "method": method_block, "prompts_per_step": 16, "rollouts_per_prompt": 8, "micro_batch_size": 4,
        "mini_batch_size": 64, "steps": 20, "optimizer": {"lr": 1e-6, "eps": 1e-6},
        "sampling": {"temperature": 0.9, "top_k": 20, "max_new_tokens": 512},
        "eval": {"tasks": ["micro_arith"], "every": 5, "n": 4}})
    vs = from_dict(launch.VerlSection, section, "verl")
    plan = launch.translate(cfg, vs, str(tmp_path / "train.parquet"), str(tmp_path / "val.parquet"),
                            n_train=1000, max_prompt_tokens=300, has_val_tasks=True)
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        conf = compose(config_name="ppo_trainer", overrides=plan.overrides)
    validate_config(conf, use_reference_policy=need_reference_policy(conf), use_critic=need_critic(conf))
    omega_conf_to_dataclass(conf.algorithm)
    a = conf.actor_rollout_ref
    name = method_block["name"]
    method = methods.build(name, {k: v for k, v in method_block.items() if k != "name"})
    assert conf.algorithm.adv_estimator == a.actor.policy_loss.loss_mode == verl_name(name)
    assert a.actor.loss_agg_mode == method.loss_agg_mode
    assert need_reference_policy(conf) == ("ref_logp" in method.requires)
    assert not need_critic(conf)
    assert (conf.data.train_batch_size, a.rollout.n, a.actor.ppo_mini_batch_size) == (16, 8, 8)
    assert (conf.trainer.nnodes, conf.trainer.n_gpus_per_node) == (vs.nnodes, vs.n_gpus_per_node)
    assert a.actor.optim.override_optimizer_config == {"eps": 1e-6}
    assert a.rollout.top_k == 20 and a.rollout.response_length == 512 and a.rollout.prompt_length == 300
    assert a.model.custom_chat_template == launch.RAW_PROMPT_TEMPLATE
    assert conf.data.filter_overlong_prompts is True and conf.data.max_prompt_length == 300
    assert conf.algorithm.filter_groups.enable == bool(method_block.get("dynamic_sampling"))
    env = conf.ray_kwargs.ray_init.runtime_env.env_vars
    assert env.VERL_USE_EXTERNAL_MODULES == "rlvr.harness.backends.verl.plugin"
    assert json.loads(env.RLVR_VERL_METHOD) == method_block
    for raw in vs.overrides:
        key, value = raw.split("=")
        assert str(OmegaConf.select(conf, key)) == value


def test_micro_batch_tokens_translates_to_verls_dynamic_batch_size(tmp_path):
    from hydra import compose, initialize_config_module
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    cfg = from_dict(TrainConfig, {
        "model": str(tmp_path / "model"), "out": str(tmp_path / "out"), "tasks": ["micro_arith"],
        "method": {"name": "lp_reg"}, "prompts_per_step": 16, "rollouts_per_prompt": 8, "micro_batch_size": 4,
        "micro_batch_tokens": 30720, "steps": 20, "sampling": {"max_new_tokens": 512}})
    plan = launch.translate(cfg, launch.VerlSection(), str(tmp_path / "train.parquet"), str(tmp_path / "val.parquet"),
                            n_train=1000, max_prompt_tokens=300, has_val_tasks=False)
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        conf = compose(config_name="ppo_trainer", overrides=plan.overrides)
    validate_config(conf, use_reference_policy=need_reference_policy(conf), use_critic=need_critic(conf))
    actor = conf.actor_rollout_ref.actor
    assert actor.use_dynamic_bsz is True and actor.ppo_max_token_len_per_gpu == 30720


def test_reward_function_loads_through_verls_loader():
    from omegaconf import OmegaConf
    from rlvr.harness.backends.verl import reward
    from verl.trainer.ppo.reward import get_custom_reward_fn

    conf = OmegaConf.create({"reward": {"custom_reward_function": {"path": launch.REWARD_PATH,
                                                                   "name": "compute_score"}}})
    fn = get_custom_reward_fn(conf)
    assert fn.args[0] is reward.compute_score     # verl wraps it as partial(_call_with_kwargs, fn, kwargs)


def test_verls_overlong_filter_drops_exactly_the_prompts_we_drop(tiny_model, tmp_path, monkeypatch):
    """Our row count under verl.max_prompt_length equals what verl's RLHFDataset keeps of the unfiltered
    file with data.filter_overlong_prompts, the tokenizer carrying our pass-through chat template."""
    import datasets
    import pyarrow.parquet as pq
    from rlvr.harness.backends.verl import reward
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    cfg = from_dict(TrainConfig, {"model": str(tiny_model), "out": str(tmp_path / "out"), "tasks": ["micro_arith"],
                                  "train_problems": 40})
    everything = launch.write_data(cfg, from_dict(launch.VerlSection, {"data_dir": str(tmp_path / "all")}, "verl"))
    ours = launch.write_data(cfg, from_dict(launch.VerlSection, {"data_dir": str(tmp_path / "cut"),
                                                                 "max_prompt_length": 21}, "verl"))
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = launch.RAW_PROMPT_TEMPLATE
    kept = RLHFDataset([everything[0]], tok, {"max_prompt_length": 21, "filter_overlong_prompts": True,
                                              "filter_overlong_prompts_workers": 1,
                                              "cache_dir": str(tmp_path / "verl-cache")})
    assert 0 < ours[2] == len(kept) < everything[2] == 40
    assert ([reward.problem_from_extra_info(row["extra_info"]) for row in kept.dataframe]
            == [reward.problem_from_extra_info(row["extra_info"]) for row in pq.read_table(ours[0]).to_pylist()])
