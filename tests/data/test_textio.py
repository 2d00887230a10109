"""Local file readers: every supported type, column picking, and each bad input's message."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from mistudio_core.platform.errors import NotFoundError, UnsupportedError, ValidationError
from mistudio_core.data.textio import SUPPORTED, read_local

DOCS = ["First document, with a comma.", "Second: ünïcödé 🙂\nand a newline", "Third \"quoted\" text"]


def write_all_types(folder):
    """One file per supported type holding DOCS (plus a numeric `id` column where tabular)."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"id": [1, 2, 3], "text": DOCS})
    (folder / "one.txt").write_text(DOCS[0], encoding="utf-8")
    (folder / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")) + "\n")
    (folder / "rows.json").write_text(json.dumps(frame.to_dict("records")))
    frame.to_csv(folder / "rows.csv", index=False)
    frame.to_csv(folder / "rows.tsv", index=False, sep="\t")
    frame.to_parquet(folder / "rows.parquet", index=False)
    txts = folder / "txts"
    txts.mkdir()
    for i, d in enumerate(DOCS):
        (txts / f"doc{i}.txt").write_text(d, encoding="utf-8")
    return folder


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.json", "rows.csv", "rows.tsv", "rows.parquet"])
def test_tabular_types_read_the_text_column(tmp_path, name):
    folder = write_all_types(tmp_path / "files")
    frame = read_local(folder / name)
    assert frame["text"].tolist() == DOCS


def test_txt_file_is_one_document_and_folder_one_per_file(tmp_path):
    folder = write_all_types(tmp_path / "files")
    assert read_local(folder / "one.txt")["text"].tolist() == [DOCS[0]]
    frame = read_local(folder / "txts")
    assert frame["text"].tolist() == DOCS
    assert frame["file"].tolist() == ["doc0.txt", "doc1.txt", "doc2.txt"]


def test_json_list_of_strings_and_wrapped_list(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(DOCS))
    (tmp_path / "b.json").write_text(json.dumps({"data": [{"body": d} for d in DOCS]}))
    assert read_local(tmp_path / "a.json")["text"].tolist() == DOCS
    assert read_local(tmp_path / "b.json")["text"].tolist() == DOCS  # single string column auto-picked


def test_single_string_column_is_auto_picked_and_named_column_used(tmp_path):
    pd.DataFrame({"n": [1, 2], "body": ["a b", "c d"]}).to_csv(tmp_path / "x.csv", index=False)
    assert read_local(tmp_path / "x.csv")["text"].tolist() == ["a b", "c d"]
    pd.DataFrame({"title": ["t1", "t2"], "body": ["a b", "c d"]}).to_parquet(tmp_path / "y.parquet")
    assert read_local(tmp_path / "y.parquet", text_column="title")["text"].tolist() == ["t1", "t2"]


def test_ambiguous_columns_ask_for_a_choice(tmp_path):
    pd.DataFrame({"title": ["t"], "body": ["b"]}).to_parquet(tmp_path / "y.parquet")
    with pytest.raises(ValidationError, match="title, body"):
        read_local(tmp_path / "y.parquet")


def test_wrong_text_column_lists_valid_columns(tmp_path):
    folder = write_all_types(tmp_path / "files")
    with pytest.raises(ValidationError) as err:
        read_local(folder / "rows.csv", text_column="content")
    assert "'content'" in str(err.value) and "id, text" in str(err.value)
    with pytest.raises(ValidationError, match="does not hold text"):
        read_local(folder / "rows.parquet", text_column="id")


def test_missing_file(tmp_path):
    with pytest.raises(NotFoundError, match="not found"):
        read_local(tmp_path / "nope.jsonl")


def test_unsupported_extension_lists_supported(tmp_path):
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(UnsupportedError) as err:
        read_local(tmp_path / "doc.pdf")
    assert all(ext in str(err.value) for ext in SUPPORTED)


@pytest.mark.parametrize("name", ["latin.txt", "latin.csv", "latin.jsonl"])
def test_non_utf8_names_file_and_says_reencode(tmp_path, name):
    body = "text\ncaf\xe9 cr\xe8me\n" if name.endswith(".csv") else '{"text": "caf\xe9"}' if name.endswith(
        ".jsonl") else "caf\xe9 cr\xe8me"
    (tmp_path / name).write_bytes(body.encode("latin-1"))
    with pytest.raises(ValidationError) as err:
        read_local(tmp_path / name)
    assert name in str(err.value) and "UTF-8" in str(err.value) and "Re-encode" in str(err.value)


def test_utf8_bom_is_accepted(tmp_path):
    (tmp_path / "bom.csv").write_bytes("text\nhello\n".encode("utf-8-sig"))
    assert read_local(tmp_path / "bom.csv")["text"].tolist() == ["hello"]


def test_bad_jsonl_line_is_named(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": broken}\n')
    with pytest.raises(ValidationError, match="line 2"):
        read_local(tmp_path / "bad.jsonl")


def test_folder_without_txt_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no .txt files"):
        read_local(tmp_path / "empty")
