"""Dataset registry: built-in corpus, local files of every type, hub streaming (faked), errors, delete."""
from __future__ import annotations

import time

import pandas as pd
import pytest

from mistudio_core.data import datasets as ds
from mistudio_core.platform.errors import NotFoundError, OfflineError, UnsupportedError, ValidationError
from test_textio import DOCS, write_all_types


def test_builtin_corpus_has_237_addresses_with_metadata(store):
    m = ds.add_builtin_corpus(store)
    assert m["id"] == "sotu" and m["n_docs"] == 237 and m["n_chars"] > 11_000_000
    assert {"year", "president", "text"} <= set(m["columns"])
    assert m["tokenizations"] == [] and m["source"]["type"] == "builtin"
    first = ds.preview(store, "sotu", n=1)[0]
    assert first["year"] == 1790 and first["president"] == "Washington"
    assert ds.add_builtin_corpus(store)["created"] == m["created"]  # idempotent
    texts = ds.load_texts(store, "sotu")
    assert len(texts) == 237 and sum(map(len, texts)) == m["n_chars"]


@pytest.mark.parametrize("name", ["one.txt", "txts", "rows.jsonl", "rows.json", "rows.csv", "rows.tsv",
                                  "rows.parquet"])
def test_add_local_every_type_round_trips(store, tmp_path, name):
    folder = write_all_types(tmp_path / "files")
    m = ds.add_local(store, folder / name)
    expected = [DOCS[0]] if name == "one.txt" else DOCS
    assert ds.load_texts(store, m["id"]) == expected
    assert m["n_docs"] == len(expected) and m["n_chars"] == sum(map(len, expected))
    assert m["source"]["type"] == "local" and m["source"]["path"].endswith(name)
    assert (store.path("datasets", m["id"]) / "text.parquet").is_file()
    assert m["id"] in [d["id"] for d in ds.list_datasets(store)]


def test_add_local_drops_empty_rows_and_uses_name(store, tmp_path):
    pd.DataFrame({"text": ["a", "", "  ", "b"]}).to_parquet(tmp_path / "x.parquet")
    m = ds.add_local(store, tmp_path / "x.parquet", name="My set")
    assert m["name"] == "My set" and m["n_docs"] == 2 and m["n_empty_dropped"] == 2
    assert ds.load_texts(store, m["id"]) == ["a", "b"]


def test_empty_dataset_is_an_error_and_leaves_nothing(store, tmp_path):
    pd.DataFrame({"text": ["", "   ", None]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(ValidationError, match="no non-empty text"):
        ds.add_local(store, tmp_path / "x.parquet")
    assert ds.list_datasets(store) == []


def test_bad_local_inputs_raise_clear_errors(store, tmp_path):
    with pytest.raises(NotFoundError):
        ds.add_local(store, tmp_path / "missing.csv")
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(UnsupportedError, match=".parquet"):
        ds.add_local(store, tmp_path / "x.docx")
    (tmp_path / "l.txt").write_bytes("na\xefve".encode("latin-1"))
    with pytest.raises(ValidationError, match="l.txt.*UTF-8"):
        ds.add_local(store, tmp_path / "l.txt")
    pd.DataFrame({"body": ["x"], "n": [1]}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ValidationError, match="Valid columns: body, n"):
        ds.add_local(store, tmp_path / "c.csv", text_column="text")
    assert ds.list_datasets(store) == []


def test_hub_offline_fails_fast_with_offline_error(store, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE"):
        ds.add_hub(store, "roneneldan/TinyStories", n_rows=10)
    assert time.perf_counter() - start < 5


def test_hub_unreachable_host_fails_fast(store, monkeypatch):
    import huggingface_hub.constants as hfc

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hfc, "ENDPOINT", "https://hub.invalid")
    monkeypatch.setattr("mistudio_core.platform.hub.HUB_PROBE_TIMEOUT_S", 1.0)
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="cannot reach hub.invalid"):
        ds.add_hub(store, "some/dataset")
    assert time.perf_counter() - start < 5


class _FakeHub:
    """Stands in for `datasets.load_dataset`: an endless stream, recording how it was called."""

    def __init__(self):
        self.calls, self.pulled = [], 0

    def __call__(self, repo_id, config=None, split="train", streaming=False, token=None):
        self.calls.append(dict(repo_id=repo_id, config=config, split=split, streaming=streaming, token=token))

        def rows():
            i = 0
            while True:
                self.pulled += 1
                yield {"label": i % 2, "story": f"story number {i}" if i != 2 else ""}
                i += 1

        return rows()


def test_hub_streams_first_n_rows_and_never_stores_token(store, monkeypatch):
    import datasets as hf

    fake = _FakeHub()
    monkeypatch.setattr(hf, "load_dataset", fake)
    monkeypatch.setattr(ds, "hub_offline_reason", lambda: None)
    m = ds.add_hub(store, "org/stories", config="en", split="validation", n_rows=5, token="hf_SECRET123")
    assert fake.calls == [dict(repo_id="org/stories", config="en", split="validation", streaming=True,
                               token="hf_SECRET123")]
    assert fake.pulled <= 6  # streamed, not downloaded
    assert ds.load_texts(store, m["id"]) == [f"story number {i}" for i in (0, 1, 3, 4)]  # empty row dropped
    assert m["source"] == {"type": "hub", "repo_id": "org/stories", "config": "en", "split": "validation",
                           "n_rows": 5, "text_column": "auto", "gated": True}
    for f in store.home.rglob("*"):
        if f.is_file():
            assert b"hf_SECRET123" not in f.read_bytes(), f


def test_hub_wrong_column_lists_columns(store, monkeypatch):
    import datasets as hf

    monkeypatch.setattr(hf, "load_dataset", _FakeHub())
    monkeypatch.setattr(ds, "hub_offline_reason", lambda: None)
    with pytest.raises(ValidationError, match="label, story"):
        ds.add_hub(store, "org/stories", n_rows=3, text_column="text")


def test_hub_missing_dataset_is_not_found(store, monkeypatch):
    import datasets as hf

    def missing(*a, **k):
        raise hf.exceptions.DatasetNotFoundError("Dataset 'x/y' doesn't exist on the Hub")

    monkeypatch.setattr(hf, "load_dataset", missing)
    monkeypatch.setattr(ds, "hub_offline_reason", lambda: None)
    with pytest.raises(NotFoundError, match="not found or gated"):
        ds.add_hub(store, "x/y")


def test_delete_dataset_and_unknown_id(store, tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    m = ds.add_local(store, tmp_path / "a.txt")
    ds.delete_dataset(store, m["id"])
    assert ds.list_datasets(store) == [] and not store.path("datasets", m["id"]).exists()
    with pytest.raises(NotFoundError, match="Known datasets"):
        ds.load_texts(store, m["id"])


@pytest.mark.parametrize("exc,kind,text", [
    (FileNotFoundError("no split 'nope'"), NotFoundError, "config and split"),
    (ConnectionError("connection reset"), OfflineError, "network error"),
    (ValueError("Bad split: nope. Available splits: ['train']"), ValidationError, "Available splits"),
])
def test_hub_library_errors_become_clear_errors(store, monkeypatch, exc, kind, text):
    import datasets as hf

    def failing(*a, **k):
        raise exc

    monkeypatch.setattr(hf, "load_dataset", failing)
    monkeypatch.setattr(ds, "hub_offline_reason", lambda: None)
    with pytest.raises(kind, match=text):
        ds.add_hub(store, "org/data", split="nope")
