"""Token storage at scale: tokenization streams chunks of documents straight into an int32 safetensors file
(same tokens and stats as the in-memory path), and loading memory-maps it instead of reading it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from mistudio_core.data import datasets as ds
from mistudio_core.data import tokenize as tkz
from mistudio_core.platform.errors import ValidationError
from mistudio_core.data.tokenize import TokenizeConfig, load_tokenized, load_tokenizer, tokenize_dataset, tokenize_texts
from mistudio_core.data.tokenstore import TokenWriter, mmap_tokens
from tiny_tokenizer import TINY_MODEL_ID, register_tiny_tokenizer_model


def docs(n=300):
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "sea", "river", "stone", "light"]
    return [" ".join(rng.choice(words, size=int(rng.integers(3, 60)))) for _ in range(n)]


@pytest.fixture
def tok_store(store, tmp_path):
    register_tiny_tokenizer_model(store)
    pd.DataFrame({"text": docs()}).to_parquet(tmp_path / "d.parquet")
    return store, ds.add_local(store, tmp_path / "d.parquet")["id"]


@pytest.mark.parametrize("cfg", [dict(context_size=16), dict(context_size=9, pack=False),
                                 dict(context_size=16, max_tokens=16 * 40), dict(context_size=12, prepend_bos=False)])
def test_streamed_file_equals_in_memory_tokenization(tok_store, monkeypatch, cfg):
    store, did = tok_store
    monkeypatch.setattr(tkz, "TEXT_CHUNK_ROWS", 7)  # many small chunks: packing must carry across them
    monkeypatch.setattr(tkz, "BATCH_DOCS", 5)
    stats = tokenize_dataset(store, did, TINY_MODEL_ID, TokenizeConfig(**cfg))
    ref, ref_stats = tokenize_texts(load_tokenizer(store, TINY_MODEL_ID), ds.load_texts(store, did),
                                    TokenizeConfig(**cfg))
    t = load_tokenized(store, did, TINY_MODEL_ID)
    np.testing.assert_array_equal(t.tokens.numpy(), ref)
    for key in ("n_tokens", "n_contexts", "n_tokens_unused", "top_tokens", "distinct_tokens"):
        assert stats[key] == ref_stats[key], key
    folder = tkz.tokenized_dir(store, did, TINY_MODEL_ID)
    assert torch.equal(load_file(str(folder / "tokens.safetensors"))["tokens"], t.tokens)  # a standard file


def test_load_is_a_memory_map_of_int32(tok_store):
    store, did = tok_store
    tokenize_dataset(store, did, TINY_MODEL_ID, TokenizeConfig(context_size=16))
    t = load_tokenized(store, did, TINY_MODEL_ID)
    assert t.tokens.dtype == torch.int32
    path = str(tkz.tokenized_dir(store, did, TINY_MODEL_ID) / "tokens.safetensors")
    ptr = t.tokens.data_ptr()
    maps = [line.split() for line in open("/proc/self/maps") if line.rstrip().endswith(path)]
    assert any(int(m[0].split("-")[0], 16) <= ptr < int(m[0].split("-")[1], 16) for m in maps)  # file-backed
    rows = t.tokens[torch.tensor([3, 0])].long()  # what the stream/extraction do per batch
    assert rows.dtype == torch.int64 and torch.equal(rows[1], t.tokens[0].long())


def test_writer_and_corrupt_files(tmp_path):
    w = TokenWriter(tmp_path / "t.safetensors", 4)
    w.write(np.arange(8, dtype=np.int64).reshape(2, 4))
    w.write(np.arange(8, 12).reshape(1, 4))
    assert w.close() == 3
    assert mmap_tokens(tmp_path / "t.safetensors").tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    (tmp_path / "bad.safetensors").write_bytes(b"\x10" * 20)
    with pytest.raises(ValidationError, match="Tokenize the dataset again"):
        mmap_tokens(tmp_path / "bad.safetensors")
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "short.safetensors").write_bytes(data[:-4])
    with pytest.raises(ValidationError, match="truncated"):
        mmap_tokens(tmp_path / "short.safetensors")
