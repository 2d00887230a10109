"""Ingest at scale: text is written in parquet row groups (memory = one chunk), large local files stream, and
a corpus that would not fit the disk is refused before anything is written."""
from __future__ import annotations

import json
from collections import namedtuple

import pyarrow.parquet as pq
import pytest

from mistudio_core.data import datasets as ds
from mistudio_core.platform.errors import ValidationError

Usage = namedtuple("Usage", "total used free")


def test_hub_ingest_writes_row_groups_and_reads_only_n_rows(store, monkeypatch):
    import datasets as hf

    pulled = []

    def fake(repo_id, config=None, split="train", streaming=False, token=None):
        def rows():
            i = 0
            while True:
                pulled.append(i)
                yield {"text": f"doc {i} " * 3}
                i += 1
        return rows()

    monkeypatch.setattr(hf, "load_dataset", fake)
    monkeypatch.setattr(ds, "hub_offline_reason", lambda: None)
    monkeypatch.setattr(ds, "CHUNK_ROWS", 100)
    m = ds.add_hub(store, "org/big", n_rows=950)
    assert m["n_docs"] == 950 and len(pulled) <= 951
    meta = pq.ParquetFile(ds.text_path(store, m["id"])).metadata
    assert meta.num_row_groups == 10  # one per chunk: the stream never sat in memory whole
    assert ds.load_texts(store, m["id"])[949] == "doc 949 " * 3


def test_large_jsonl_streams_with_the_same_result(store, tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(json.dumps({"body": f"text {i}", "n": i}) for i in range(250)) + "\n\n")
    small = ds.add_local(store, path, name="whole")
    monkeypatch.setattr(ds, "STREAM_BYTES", 10)
    monkeypatch.setattr(ds, "CHUNK_ROWS", 64)
    streamed = ds.add_local(store, path, name="streamed")
    assert ds.load_texts(store, streamed["id"]) == ds.load_texts(store, small["id"])
    assert pq.ParquetFile(ds.text_path(store, streamed["id"])).metadata.num_row_groups == 4
    assert {k: streamed[k] for k in ("n_docs", "n_chars")} == {k: small[k] for k in ("n_docs", "n_chars")}


def test_corpus_too_big_for_the_disk_is_refused_before_ingest(store, tmp_path, monkeypatch):
    path = tmp_path / "corpus.txt"
    path.write_text("x" * 5000)
    monkeypatch.setattr(ds.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(ValidationError, match="Not enough disk space.*GiB free.*Free some space"):
        ds.add_local(store, path)
    assert ds.list_datasets(store) == []
    assert not [p for p in (store.home / "datasets").iterdir()]  # no half-written folder either


def test_hub_stream_too_big_is_refused_after_the_first_chunk(store, monkeypatch):
    import datasets as hf

    pulled = []

    def fake(*a, **k):
        def rows():
            while True:
                pulled.append(1)
                yield {"text": "y" * 1000}
        return rows()

    monkeypatch.setattr(hf, "load_dataset", fake)
    monkeypatch.setattr(ds, "hub_offline_reason", lambda: None)
    monkeypatch.setattr(ds, "CHUNK_ROWS", 50)
    monkeypatch.setattr(ds.shutil, "disk_usage", lambda p: Usage(10**9, 0, 10**6))
    with pytest.raises(ValidationError, match="Not enough disk space for 1,000,000 rows of org/huge"):
        ds.add_hub(store, "org/huge", n_rows=1_000_000)
    assert len(pulled) <= 51 and ds.list_datasets(store) == []
