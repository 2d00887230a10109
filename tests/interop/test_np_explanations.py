"""Neuronpedia explanations become labels (source "neuronpedia") of the matching SAE: JSON, JSONL and gzip; manual
labels win; another model/width is refused saying what the file is for; bad lines are counted; word search finds
"yelling" and "capital letters" ranked."""
from __future__ import annotations

import gzip
import json

import pytest

from mistudio_core.platform.errors import ValidationError
from mistudio_core.interop import catalog
from mistudio_core.interop.np_explanations import import_explanations, parse_source
from mistudio_core.labeling.store import LabelStore
from test_interop import make_gemma_scope

ENTRY = "gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_20"
SOURCE = "1-gemmascope-res-16k"


def record(i, text, model="gemma-2-2b", source=SOURCE, score=None):
    return {"modelId": model, "layer": source, "index": str(i), "description": text,
            "explanationModelName": "gpt-4o-mini", "typeName": "oai_token-act-pair",
            "scores": [{"value": score}] if score is not None else []}


ROWS = [record(7, "text in ALL CAPS, as if yelling"), record(9, "shouting and yelled exclamations", score=0.9),
        record(9, "exclamation marks", score=0.2), record(12, "capitalized letters at the start of words"),
        record(13, "the letter Q"), record(14, "French words")]


@pytest.fixture
def sae(store, tmp_path):
    return catalog.import_entry(store, ENTRY, snapshot=make_gemma_scope(tmp_path / "gs"))["id"]


def write(path, rows, fmt):
    text = json.dumps(rows) if fmt == "json" else "\n".join(json.dumps(r) for r in rows)
    if fmt == "jsonl.gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("fmt", ["json", "jsonl", "jsonl.gz"])
def test_every_published_format_imports(store, sae, tmp_path, fmt):
    out = import_explanations(store, sae, write(tmp_path / f"x.{fmt}", ROWS, fmt))
    assert (out["features"], out["new"], out["skipped"]) == (5, 5, 0)
    entry = LabelStore(store, sae).get(9)
    assert entry["source"] == "neuronpedia" and entry["label"] == "shouting and yelled exclamations"  # best score
    assert entry["model"] == "gpt-4o-mini"


def test_manual_labels_are_never_overwritten_and_keep_the_explanation_beside(store, sae, tmp_path):
    labels = LabelStore(store, sae)
    labels.set(7, "my caps feature", "style", "mine")
    out = import_explanations(store, sae, write(tmp_path / "x.jsonl", ROWS, "jsonl"))
    assert out["kept_manual_or_llm"] == 1
    e = labels.get(7)
    assert (e["label"], e["source"]) == ("my caps feature", "manual")
    assert e["neuronpedia"]["description"] == "text in ALL CAPS, as if yelling"
    labels.set(7, "renamed")  # a later edit keeps the explanation
    assert labels.get(7)["neuronpedia"]["description"].endswith("yelling")


def test_wrong_model_or_width_is_refused_with_what_the_file_is_for(store, sae, tmp_path):
    other = write(tmp_path / "o.jsonl", [record(1, "x", model="gemma-2-9b", source="20-gemmascope-res-131k")], "jsonl")
    with pytest.raises(ValidationError, match="gemma-2-9b layer 20 width 131k.*gemma-2-2b.*layer 1 width 16384"):
        import_explanations(store, sae, other)
    wide = write(tmp_path / "w.jsonl", [record(1, "x", source="1-gemmascope-res-65k")], "jsonl")
    with pytest.raises(ValidationError, match="width 65k"):
        import_explanations(store, sae, wide)
    assert LabelStore(store, sae).all() == {}
    assert parse_source("20-gemmascope-res-131k__l0-30") == (20, 131000)


def test_malformed_lines_are_skipped_and_counted(store, sae, tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(ROWS[0]), "{not json", "[1, 2]", json.dumps(record(99999, "out of range")),
             json.dumps(record(3, "")), json.dumps({"description": "no index"}), json.dumps(ROWS[3])]
    path.write_text("\n".join(lines))
    out = import_explanations(store, sae, path)
    assert (out["features"], out["skipped"]) == (2, 5)


def test_word_search_finds_yelling_and_capital_letters_ranked(store, sae, tmp_path):
    import_explanations(store, sae, write(tmp_path / "x.json", ROWS, "json"))
    labels = LabelStore(store, sae)
    assert labels.search_words("yelling")[:2] in ([7, 9], [9, 7])
    assert labels.search_words("YELL") and 14 not in labels.search_words("yelling")
    assert labels.search_words("capital letters")[:2] == [12, 7]  # both words beat one word
    assert labels.search_words("") == [] and labels.search_words("zebra") == []
    assert labels.search("French") == [14]  # the substring search of the contract still works


def test_a_plain_folder_import_matches_by_the_model_name_in_its_config(store, tmp_path):
    from mistudio_core.interop.importers import import_sae

    m = import_sae(store, make_gemma_scope(tmp_path / "gs"), model_id="google--gemma-2-2b",
                   repo_id="google/gemma-scope-2b-pt-res", path_in_repo="layer_1/width_16k/average_l0_20")
    out = import_explanations(store, m["id"], write(tmp_path / "x.jsonl", ROWS, "jsonl"))
    assert out["features"] == 5
