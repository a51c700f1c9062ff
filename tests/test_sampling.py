"""The hf engine's stop strings: a row ends at the first step whose text holds a stop string, its completion is
cut before the stop string, and only rows whose new token can complete one are decoded to look."""

import pytest
import torch
from rlvr.harness.sample.engine import HFEngine, SamplingParams, sample_seed

PROMPT = "Question: 2 + 3 = ?"


@pytest.fixture(scope="module")
def engine(tiny_model):
    from rlvr.harness.sample.models import load_model

    model, tok = load_model(str(tiny_model), device="cpu")
    return HFEngine(model, tok)


def search_every_row(monkeypatch):
    """The engine without its token filter: every live row is searched at every step."""
    monkeypatch.setattr(HFEngine, "_stop_tokens",
                        lambda self, stop, vocab, device: torch.ones(vocab, dtype=torch.bool, device=device))


def _llama_engine(fast):
    """A random one-layer Llama model over the tokenizer `fast`, in an HFEngine."""
    import transformers

    cfg = transformers.LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                   eos_token_id=fast.eos_token_id)
    torch.manual_seed(0)
    return HFEngine(transformers.LlamaForCausalLM(cfg).eval(), fast)


def _text(engine, ids):
    return engine.tokenizer.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("stop", [("e",), ("\n", "o"), ("th", " a"), ("=", "12", "zz")])
def test_rows_end_where_a_stop_string_first_appears(engine, stop):
    seeds = [sample_seed(0, "t", "stop", i) for i in range(48)]
    got = engine.generate([(PROMPT, seeds)], SamplingParams(temperature=1.0, max_new_tokens=40, stop=stop))[0]
    stopped = 0
    for c in got:
        full = _text(engine, c.token_ids)
        if c.finish_reason == "stop" and c.token_ids[-1] not in engine.eos_ids:
            stopped += 1
            assert any(s in full for s in stop)                                  # the last token completed it
            assert not any(s in _text(engine, c.token_ids[:-1]) for s in stop)   # ... and no earlier one did
            cut = min(i for i in (full.find(s) for s in stop) if i >= 0)
            assert c.text == full[:cut]
        else:
            assert not any(s in full for s in stop)
            assert c.text == full
    assert stopped >= 5                     # the random model writes these strings often: the case is exercised


@pytest.mark.parametrize("stop", [("e",), ("\n\n",), ("th", " a"), ("=", "12", "zz")])
def test_looking_only_at_flagged_tokens_changes_no_completion(engine, stop, monkeypatch):
    """The token filter is exact: decoding every live row at every step gives the same completions."""
    seeds = [sample_seed(0, "t", "filter", i) for i in range(48)]
    params = SamplingParams(temperature=1.0, max_new_tokens=40, stop=stop)
    fast = engine.generate([(PROMPT, seeds)], params)[0]
    search_every_row(monkeypatch)
    every_row = engine.generate([(PROMPT, seeds)], params)[0]
    assert [(c.token_ids, c.text, c.finish_reason) for c in fast] == \
           [(c.token_ids, c.text, c.finish_reason) for c in every_row]


def test_flagged_tokens_are_those_that_can_end_a_stop_string(engine):
    vocab = engine.model.get_output_embeddings().weight.shape[0]
    flags = engine._stop_tokens(("\n\n", "ab"), vocab, "cpu")
    tok = engine.tokenizer
    for i in range(vocab):
        text = tok.decode([i], skip_special_tokens=True) if i < len(tok) else ""
        if "\n" in text or "b" in text or not text or "\ufffd" in text:
            assert flags[i], (i, text)
    assert not flags[tok("a", add_special_tokens=False)["input_ids"][-1]]
    assert int(flags.sum()) < vocab // 2    # a real filter: most tokens are never decoded to look


def _metaspace_engine():
    """A random Llama model over a SentencePiece-style tokenizer (Metaspace: a word's leading space is part of
    its token and is dropped when the token starts the text), the case the letter-before reading is for."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    words = "the cat sat on a mat and ate an apple then the end of it was near at hand".split()
    corpus = [" ".join(words[i:] + words[:i]) + "\n" for i in range(len(words))] + ["x = 12\ny = 3\n"]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "</s>"],
                                                        show_progress=False))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>",
                                                pad_token="</s>")
    return _llama_engine(fast)


def test_stop_filter_is_exact_for_a_sentencepiece_style_tokenizer(monkeypatch):
    engine = _metaspace_engine()
    assert engine.tokenizer.decode([engine.tokenizer.convert_tokens_to_ids("▁cat")]) == "cat"   # no space alone
    seeds = [sample_seed(0, "t", "metaspace", i) for i in range(48)]
    runs = {}
    for every_row in (False, True):
        if every_row:
            search_every_row(monkeypatch)
        for stop in (("t ",), (" a",), ("e c", "\n"), ("at",)):     # stops that end in a space need the context
            got = engine.generate([("the cat", seeds)], SamplingParams(temperature=1.0, max_new_tokens=30, stop=stop))
            runs[every_row, stop] = [(c.token_ids, c.text, c.finish_reason) for c in got[0]]
    for stop in (("t ",), (" a",), ("e c", "\n"), ("at",)):
        assert runs[False, stop] == runs[True, stop], stop
        assert sum(1 for _, text, reason in runs[False, stop] if reason == "stop") >= 5, stop


def _wordpiece_engine(words, clean_up: bool):
    """A random Llama model over a BERT-style WordPiece tokenizer from a fixed word list."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(["[UNK]", "[SEP]", "[PAD]", *words])},
                                     unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[SEP]",
                                                pad_token="[PAD]", clean_up_tokenization_spaces=clean_up)
    return _llama_engine(fast)


def _scripted(engine, monkeypatch, tokens, stop):
    """The completion when the sampler emits exactly `tokens` (one row)."""
    import rlvr.harness.sample.engine

    ids = engine.tokenizer.convert_tokens_to_ids(tokens)
    steps = iter(ids)
    monkeypatch.setattr(rlvr.harness.sample.engine, "choose_tokens",
                        lambda logits, uniforms, params: torch.full((logits.shape[0],), next(steps)))
    c = engine.generate([("x", [1])], SamplingParams(max_new_tokens=len(ids), stop=stop))[0][0]
    return c.token_ids == ids[:len(c.token_ids)], len(c.token_ids), c.finish_reason


@pytest.mark.parametrize("stop,tokens,ends_at", [(("n'",), ["do", "don", "'", "t", "the", "cat"], 4),
                                                 (("I'",), ["the", "I", "'", "m", "on", "the"], 4)])
def test_a_tokenizer_that_cleans_up_spaces_is_searched_at_every_token(monkeypatch, stop, tokens, ends_at):
    """transformers' clean-up joins "don ' t" into "don't" only once "t" arrives, and "t" does not hold the
    stop string's last character: such tokenizers get no filter (every row is searched, as before it)."""
    words = ["do", "don", "'", "t", "the", "cat", "I", "m", "on", "a"]
    engine = _wordpiece_engine(words, clean_up=True)
    assert engine.tokenizer.decode(engine.tokenizer.convert_tokens_to_ids(["don", "'", "t"])) == "don't"
    assert bool(engine._stop_tokens(stop, len(engine.tokenizer), "cpu").all())
    assert _scripted(engine, monkeypatch, tokens, stop) == (True, ends_at, "stop")


def test_a_tokenizer_without_a_plain_letter_is_searched_at_every_token():
    """The after-a-letter reading needs a letter that is an ordinary token; "a" as [UNK] cannot serve."""
    engine = _wordpiece_engine(["x", "the", "cat"], clean_up=False)
    assert engine.tokenizer.tokenize("a") == ["[UNK]"]
    assert bool(engine._stop_tokens(("x ",), len(engine.tokenizer), "cpu").all())
