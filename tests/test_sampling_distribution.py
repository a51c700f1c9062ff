"""The hf engine's next-token distribution at the settings evaluations use: temperature != 1, top-p < 1, top-k > 0.

`token_distribution`, what `choose_tokens` draws from, is checked against two references: the filtered and
renormalised softmax computed here independently (float64, plain Python sorting), and transformers' own logits
warpers, then transformers' `generate` itself. The tokens `choose_tokens` draws with the engine's per-sample
uniforms are checked against the reference by chi-square tests and never leave its support, and
`HFEngine.generate` draws only tokens inside the filtered support of the model's own logits, on both decode paths.

The convention (transformers' and vLLM's): logits / temperature, then top-k (every token tied with the k-th
largest logit stays), then top-p (the smallest set of most likely tokens whose mass reaches top_p, at least one;
of tokens of equal probability straddling the threshold only as many as that needs stay), renormalised.
"""

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from rlvr.harness.sample.engine import (
    HFEngine,
    SamplingParams,
    choose_tokens,
    counter_uniforms,
    sample_seed,
    token_distribution,
)

from tests.test_cascade import _engine

ALPHA = 1e-4     # each chi-square test's false-alarm rate, were the seeds drawn at random (they are fixed: the
                 # outcome is deterministic); over the 2 tests of each of the 13 cases, at most 2.6e-3 (Bonferroni)
SEEDS, STEPS = 400, 50          # 20,000 draws: the engine's table of uniforms for 400 samples of 50 tokens


# ---------------------------------------------------------------------------------------------------------------
# the references


@dataclass
class Reference:
    sure: dict[int, float]     # tokens that stay, whichever way ties are broken -> probability
    tied: list[int]            # tokens of equal probability straddling the top-p threshold ...
    n_tied: int                # ... of which this many stay ...
    tied_p: float              # ... each with this probability
    margin: float              # distance of top_p from the nearest partial sum of the sorted probabilities

    @property
    def support(self) -> set[int]:
        return set(self.sure) | set(self.tied)


def reference(logits, params: SamplingParams) -> Reference:
    """The filtered, renormalised next-token distribution of one row, from first principles (float64, Python
    sorting, each tie group handled as a whole)."""
    x = [float(v) / params.temperature for v in logits]
    ids = list(range(len(x)))
    if params.top_k and params.top_k < len(x):
        kth = sorted(x, reverse=True)[params.top_k - 1]
        ids = [i for i in ids if x[i] >= kth]
    top = max(x[i] for i in ids)
    weight = {i: math.exp(x[i] - top) for i in ids}
    z = math.fsum(weight.values())
    p = {i: w / z for i, w in weight.items()}
    if params.top_p >= 1:
        return Reference(p, [], 0, 0.0, math.inf)
    keep, tied, n_tied, q_tied, cum, margin = {}, [], 0, 0.0, 0.0, math.inf
    ranked = sorted(p, key=lambda i: (-p[i], i))
    for q, members in itertools.groupby(ranked, key=p.get):   # groups of equal probability, most likely first
        group = list(members)
        margin = min([margin] + [abs(cum + t * q - params.top_p) for t in range(1, len(group) + 1)])
        need = math.ceil((params.top_p - cum) / q)          # tokens of the group whose preceding mass is < top_p
        if need < len(group):
            tied, n_tied, q_tied = group, need, q
            break
        keep.update((i, q) for i in group)
        cum += q * len(group)
        if cum >= params.top_p:
            break
    mass = math.fsum(keep.values()) + n_tied * q_tied
    return Reference({i: q / mass for i, q in keep.items()}, tied, n_tied, q_tied / mass, margin)


def transformers_distribution(logits, params: SamplingParams):
    """transformers' warpers in the order `generate(do_sample=True)` builds them (temperature, top-k, top-p;
    `GenerationMixin._get_logits_processor`), then the softmax `generate` samples from."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = LogitsProcessorList()
    if params.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(float(params.temperature)))
    if params.top_k:
        warpers.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        warpers.append(TopPLogitsWarper(params.top_p))
    scores = warpers(torch.zeros((logits.shape[0], 0), dtype=torch.long), logits.float().clone())
    return torch.softmax(scores, dim=-1)


# ---------------------------------------------------------------------------------------------------------------
# the cases: (logits [B, V], params, whether top_p may sit exactly on a partial sum)


def _row(*values, tail=()):
    return torch.tensor([[*values, *tail]], dtype=torch.float32)


def _shuffled(row, seed):
    g = torch.Generator().manual_seed(seed)
    return row[:, torch.randperm(row.shape[1], generator=g)]


def _bf16_rows(rows, vocab, scale, seed):
    """Random logits rounded to bfloat16, as a bf16 model gives them: many exact ties, in the tail included."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, vocab, generator=g) * scale).bfloat16().float()


def _one_token_mass():
    """Most of the mass in one token: at temperature 0.6, 0.96 of it, the rest spread over 99 others."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 100, generator=g) * 0.5
    x[0, 17] = 4.9
    return x


TIE_TAIL = (0.5, 0.5, 0.0, -1.0, -1.0, -2.0, -3.0, -4.0)
CASES = {
    # four tokens of equal probability straddle the top-p threshold: two of them stay
    "top_p_tie": (_row(2.0, 1.5, 1.5, 1.5, 1.5, tail=TIE_TAIL), SamplingParams(temperature=0.6, top_p=0.6), False),
    # six tokens of equal probability spread over the vocabulary straddle it (three stay), above temperature 1
    "top_p_tie_spread": (_shuffled(_row(3.0, 1.5, 1.5, 1.5, 1.5, 1.5, tail=TIE_TAIL * 3), 1),
                         SamplingParams(temperature=1.3, top_p=0.7), False),
    # all tokens of equal probability (exact in float32) and top_p exactly on a partial sum: the mass must reach it
    "top_p_exactly_reached": (torch.zeros(1, 8), SamplingParams(top_p=0.5), True),
    # top-k ties: every token tied with the k-th largest logit stays (5 tokens for k = 3)
    "top_k_tie": (_row(2.0, 1.0, 1.0, 1.0, 1.0, tail=TIE_TAIL), SamplingParams(temperature=0.6, top_k=3), False),
    # top-p keeping a single token, and a single one of two tied at the top
    "top_p_single": (_row(2.0, 1.0, 0.5, tail=TIE_TAIL), SamplingParams(temperature=0.6, top_p=0.5), False),
    "top_p_single_of_tied_top": (_row(2.0, 2.0, 1.0, tail=TIE_TAIL), SamplingParams(top_p=0.2), False),
    # temperature + top-k + top-p: top-k first, then top-p on its renormalised distribution (see the order test)
    "combined": (_bf16_rows(1, 64, 1.0, 2), SamplingParams(temperature=0.6, top_k=8, top_p=0.9), False),
    # most of the mass in one token: top-p 0.95 keeps it alone, top-p 0.98 adds part of the tail
    "one_token_p95": (_one_token_mass(), SamplingParams(temperature=0.6, top_p=0.95), False),
    "one_token_p98": (_one_token_mass(), SamplingParams(temperature=0.6, top_p=0.98), False),
    "one_token_k10_p99": (_one_token_mass(), SamplingParams(temperature=0.6, top_k=10, top_p=0.99), False),
    # the evaluation defaults on bf16-like logits (ties straddle the threshold in rows 0 and 2 of the first, row 0
    # of the second)
    "eval_defaults": (_bf16_rows(4, 1000, 3.0, 25), SamplingParams(temperature=0.6, top_p=0.95), False),
    "eval_defaults_top_k": (_bf16_rows(4, 1000, 3.0, 15), SamplingParams(temperature=0.6, top_k=100, top_p=0.95),
                            False),
    "hot": (_bf16_rows(4, 256, 2.0, 6), SamplingParams(temperature=1.5, top_p=0.8), False),
}


def _check_against_reference(dist, ref: Reference):
    support = set(torch.nonzero(dist).flatten().tolist())
    assert set(ref.sure) <= support
    chosen = support - set(ref.sure)                   # which of the tied tokens stayed
    assert chosen <= set(ref.tied) and len(chosen) == ref.n_tied
    for i in support:
        want = ref.sure.get(i, ref.tied_p)
        assert float(dist[i]) == pytest.approx(want, rel=1e-5, abs=1e-7), i


@pytest.mark.parametrize("case", CASES)
def test_the_distribution_equals_the_independent_reference(case):
    logits, params, exact = CASES[case]
    dist = token_distribution(logits, params)
    checked = 0
    for r in range(logits.shape[0]):
        assert float(dist[r].sum()) == pytest.approx(1.0, abs=1e-6)
        ref = reference(logits[r].tolist(), params)
        if ref.margin < 1e-5 and not exact:
            continue        # top_p within float32 rounding of a partial sum: either side of it is right
        _check_against_reference(dist[r], ref)
        checked += 1
    assert checked >= max(1, 3 * logits.shape[0] // 4)


def test_the_cases_exercise_what_they_are_named_for():
    """Ties straddle the threshold where the name says so; single-token cases keep one token; the combination
    keeps fewer tokens than top-k and fewer than top-p alone (so applying them in the other order would differ)."""
    refs = {name: [reference(row.tolist(), p) for row in logits] for name, (logits, p, _) in CASES.items()}
    for name in ("top_p_tie", "top_p_tie_spread", "top_p_exactly_reached", "top_p_single_of_tied_top"):
        assert 0 < refs[name][0].n_tied < len(refs[name][0].tied), name
    assert [len(refs["top_k_tie"][0].support)] == [5]
    for name in ("top_p_single", "top_p_single_of_tied_top", "one_token_p95"):
        assert len(refs[name][0].sure) + refs[name][0].n_tied == 1, name
    assert 10 <= len(refs["one_token_p98"][0].support) < 50
    assert len(refs["one_token_k10_p99"][0].support) == 2
    logits, params, _ = CASES["combined"]
    both = len(refs["combined"][0].support)
    top_p_alone = len(reference(logits[0].tolist(), SamplingParams(temperature=0.6, top_p=0.9)).support)
    assert both < params.top_k < top_p_alone
    assert sum(r.n_tied > 0 for name in ("eval_defaults", "eval_defaults_top_k", "hot") for r in refs[name]) >= 3


@pytest.mark.parametrize("case", CASES)
def test_the_distribution_equals_transformers_warpers(case):
    """The same tokens stay as with transformers' warpers, ties included (the engine's top-p is theirs, operation
    for operation), with the same probabilities."""
    logits, params, _ = CASES[case]
    ours, theirs = token_distribution(logits, params), transformers_distribution(logits, params)
    assert torch.equal(ours > 0, theirs > 0)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_the_distribution_equals_transformers_warpers_on_a_large_bf16_vocabulary():
    """bf16 logits over a large vocabulary have exact ties around the top-p threshold in many rows: the tokens
    that stay are transformers' in every row."""
    logits = _bf16_rows(32, 20000, 3.0, 7)
    for params in (SamplingParams(temperature=0.6, top_p=0.95), SamplingParams(temperature=0.6, top_k=50, top_p=0.95),
                   SamplingParams(temperature=1.0, top_p=0.9), SamplingParams(temperature=0.7, top_k=20)):
        ours, theirs = token_distribution(logits, params), transformers_distribution(logits, params)
        assert torch.equal(ours > 0, theirs > 0), params
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
        kept = ours > 0
        if params.top_p < 1:        # rows where the least likely kept token is tied with a dropped one
            edge = logits.masked_fill(~kept, float("inf")).min(dim=-1).values
            assert int(((logits == edge[:, None]) & ~kept).any(dim=-1).sum()) >= 5, params
        else:                       # rows where top-k keeps more than k tokens (ties with the k-th)
            assert int((kept.sum(dim=-1) > params.top_k).sum()) >= 5, params


# ---------------------------------------------------------------------------------------------------------------
# the tokens drawn


def _draws(logits_row, params, case):
    """The tokens `choose_tokens` draws from one row of logits with the uniforms the engine uses for 400 samples
    (their `sample_seed`s) over 50 steps, in chunks of 2,000 rows."""
    seeds = np.array([sample_seed(0, "distribution", case, i) for i in range(SEEDS)], dtype=np.uint64)
    u = torch.from_numpy(counter_uniforms(seeds[:, None], np.arange(STEPS, dtype=np.uint64)[None, :]).ravel())
    return torch.cat([choose_tokens(logits_row.expand(len(chunk), -1), chunk, params) for chunk in u.split(2000)])


def _chi_square_p(counts, bins, n):
    """p-value of Pearson's chi-square test of `counts` against `bins` [(tokens, probability)], bins expected
    fewer than 5 times pooled (and the pool into the smallest bin when it is itself below 5); None if one bin."""
    obs, exp, pool_o, pool_e = [], [], 0, 0.0
    for tokens, q in bins:
        o, e = sum(int(counts[t]) for t in tokens), n * q
        if e < 5:
            pool_o, pool_e = pool_o + o, pool_e + e
        else:
            obs.append(o)
            exp.append(e)
    if pool_e >= 5 or not exp:
        obs.append(pool_o)
        exp.append(pool_e)
    elif pool_e > 0:
        k = int(np.argmin(exp))
        obs[k], exp[k] = obs[k] + pool_o, exp[k] + pool_e
    if len(exp) < 2:
        return None
    stat = sum((o - e) ** 2 / e for o, e in zip(obs, exp, strict=True))
    return float(torch.special.gammaincc(torch.tensor((len(exp) - 1) / 2, dtype=torch.float64),
                                         torch.tensor(stat / 2, dtype=torch.float64)))


@pytest.mark.parametrize("case", CASES)
def test_drawn_tokens_follow_the_distribution(case):
    """20,000 draws with the engine's uniforms, against both references: never a token outside the support, and
    frequencies that pass a chi-square test. Against the independent reference the tied tokens at the threshold
    are one bin (which of them stay is the sort's choice) of which at most `n_tied` distinct ones are ever drawn;
    against transformers' warpers every token is its own bin."""
    logits, params, _ = CASES[case]
    row = logits[:1]
    tokens = _draws(row, params, case)
    counts = torch.bincount(tokens, minlength=row.shape[1])
    drawn = set(torch.nonzero(counts).flatten().tolist())

    ref = reference(row[0].tolist(), params)
    assert drawn <= ref.support
    assert len(drawn & set(ref.tied)) <= ref.n_tied
    bins = [([i], q) for i, q in ref.sure.items()] + ([(ref.tied, ref.n_tied * ref.tied_p)] if ref.tied else [])
    p = _chi_square_p(counts, bins, len(tokens))
    assert p is None or p > ALPHA, p

    want = transformers_distribution(row, params)[0].double()
    assert all(float(want[i]) > 0 for i in drawn)
    p = _chi_square_p(counts, [([i], float(want[i])) for i in torch.nonzero(want).flatten().tolist()], len(tokens))
    assert p is None or p > ALPHA, p


@pytest.mark.parametrize("case", CASES)
def test_extreme_uniforms_stay_in_the_support(case):
    """Uniforms at both ends of [0, 1): in float32, u from 1 - 2**-25 on rounds to 1.0, whose target lay past the
    last kept token; it must still pick a kept token, the last one of the walk (from the most likely down with
    top-p, in vocabulary order without), as u = 0 picks the first."""
    logits, params, _ = CASES[case]
    u = torch.tensor([0.0, 2.0 ** -53, 0.5, 1 - 2.0 ** -24, 1 - 2.0 ** -25, 1 - 2.0 ** -30, 1 - 2.0 ** -53],
                     dtype=torch.float64)
    dist = token_distribution(logits, params)
    for r in range(logits.shape[0]):
        got = choose_tokens(logits[r:r + 1].expand(len(u), -1), u, params)
        assert bool((dist[r, got] > 0).all()), (r, got.tolist())
        kept = torch.nonzero(dist[r]).flatten()
        if params.top_p < 1:
            assert float(dist[r, got[0]]) == float(dist[r].max())
            assert float(dist[r, got[-1]]) == float(dist[r, kept].min())
        else:
            assert (int(got[0]), int(got[-1])) == (int(kept[0]), int(kept[-1]))


def test_a_uniform_near_one_never_picks_a_filtered_token_even_without_top_p():
    """Without top-p the walk is in vocabulary order: the target past the end gave the last token, here filtered
    out by top-k."""
    logits = _row(5.0, 4.0, 3.0, tail=[-1.0] * 20)
    got = choose_tokens(logits.expand(3, -1), torch.tensor([1 - 2.0 ** -25, 1 - 2.0 ** -40, 1 - 2.0 ** -53],
                                                           dtype=torch.float64), SamplingParams(top_k=3))
    assert got.tolist() == [2, 2, 2]


# ---------------------------------------------------------------------------------------------------------------
# end to end, on a tiny model


@pytest.fixture(scope="module")
def sharp(tiny_model):
    """The tiny model with its final norm scaled 10x (logit spread about 1.2 instead of 0.12): peaked next-token
    distributions, so that top-p 0.95 keeps about 50 of its 490 tokens, not 454. Engines on both decode paths."""
    fast, model, tok = _engine(tiny_model, None)
    with torch.no_grad():
        model.model.norm.weight.mul_(10.0)
    slow = HFEngine(model, tok, cascade=False)
    assert (fast.decode_path, slow.decode_path) == ("cascade", "transformers")
    return model, tok, {"cascade": fast, "transformers": slow}


E2E_PARAMS = [SamplingParams(temperature=0.6, top_p=0.95, max_new_tokens=20),
              SamplingParams(temperature=0.6, top_k=5, max_new_tokens=20),
              SamplingParams(temperature=0.6, top_k=20, top_p=0.95, max_new_tokens=20)]


@pytest.mark.parametrize("path", ["cascade", "transformers"])
@pytest.mark.parametrize("params", E2E_PARAMS, ids=lambda p: f"t{p.temperature}-k{p.top_k}-p{p.top_p}")
def test_generate_draws_only_tokens_inside_the_filtered_support(sharp, path, params):
    """Every token of every completion lies inside the filtered support of the model's own logits at its step
    (a full forward over prompt + completion so far), by both references."""
    model, tok, engines = sharp
    prompt = "Question: 2 + 3 = ?"
    seeds = [sample_seed(0, "t", "support", i) for i in range(8)]
    completions = engines[path].generate([(prompt, seeds)], params)[0]
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    checked = cut = 0
    with torch.inference_mode():
        for c in completions:
            full = torch.tensor([ids + c.token_ids])
            logits = model(input_ids=full).logits[0, len(ids) - 1:-1]          # the logits each token was drawn from
            steps = torch.arange(len(c.token_ids))
            tokens = torch.tensor(c.token_ids)
            assert bool((token_distribution(logits, params)[steps, tokens] > 0).all())
            theirs = transformers_distribution(logits, params)
            assert bool((theirs[steps, tokens] > 0).all())
            for t, tok_id in enumerate(c.token_ids):
                assert tok_id in reference(logits[t].tolist(), params).support
            checked += len(c.token_ids)
            cut += int((theirs == 0).sum())
    assert checked >= 100 and cut >= checked * 100     # many tokens checked, and the filter cut off many at each


def test_the_distribution_is_the_one_transformers_generate_samples_from(sharp):
    """transformers' `generate(do_sample=True)` reports each step's raw logits and the scores it samples from
    (after its warpers, in its own order): `token_distribution` of the first is the softmax of the second."""
    model, tok, _ = sharp
    ids = tok("Question: 7 - 4 = ?", add_special_tokens=False, return_tensors="pt")["input_ids"]
    torch.manual_seed(0)
    for params in E2E_PARAMS:
        out = model.generate(ids.expand(4, -1), do_sample=True, temperature=params.temperature, top_p=params.top_p,
                             top_k=params.top_k, max_new_tokens=8, output_scores=True, output_logits=True,
                             return_dict_in_generate=True)
        for raw, processed in zip(out.logits, out.scores, strict=True):
            ours, theirs = token_distribution(raw, params), torch.softmax(processed, dim=-1)
            assert torch.equal(ours > 0, theirs > 0), params
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
