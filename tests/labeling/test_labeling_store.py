"""LabelStore: labels.json per SAE, manual labels never overwritten by auto labels, safe concurrent writers."""
from __future__ import annotations

import json
import threading

import pytest

from mistudio_core.platform.errors import ValidationError
from mistudio_core.labeling import LabelStore


@pytest.fixture
def labels(store):
    (store.path("saes", "sae-1")).mkdir(parents=True)
    return LabelStore(store, "sae-1")


def test_set_get_all_search_and_file_format(labels, store):
    assert labels.get(3) is None and labels.all() == {}
    labels.set(3, "  French words ", category="language", description="Fires on French.")
    labels.set_auto(7, "closing brackets", category="punctuation", score={"accuracy": 0.9, "chance": 0.5},
                    model="gpt-x", fingerprint="abc")
    assert labels.get(3)["label"] == "French words" and labels.get(3)["source"] == "manual"
    auto = labels.get(7)
    assert auto["source"] == "auto" and auto["score"]["accuracy"] == 0.9 and auto["fingerprint"] == "abc"
    assert sorted(labels.all()) == [3, 7]
    assert labels.search("FRENCH") == [3] and labels.search("punct") == [7] and labels.search(" ") == []
    on_disk = json.loads((store.path("saes", "sae-1") / "labels.json").read_text())
    assert on_disk["version"] == 1 and set(on_disk["labels"]) == {"3", "7"}
    # a fresh instance (another page, another process) reads the same labels
    assert LabelStore(store, "sae-1").get(7)["label"] == "closing brackets"


def test_auto_never_overwrites_manual(labels):
    labels.set(5, "my own name")
    assert labels.set_auto(5, "llm name") is False
    assert labels.get(5)["label"] == "my own name"
    assert labels.set_auto_many([(5, {"label": "x"}), (6, {"label": "y"})]) == [False, True]
    assert labels.get(5)["source"] == "manual" and labels.get(6)["label"] == "y"
    # an auto label can be replaced by a newer auto label and by a manual edit
    assert labels.set_auto(6, "y2") is True and labels.get(6)["label"] == "y2"
    labels.set(6, "fixed by hand")
    assert labels.set_auto(6, "y3") is False and labels.get(6)["label"] == "fixed by hand"


def test_invalid_input_and_delete(labels, store):
    with pytest.raises(ValidationError, match="empty"):
        labels.set(1, "   ")
    with pytest.raises(ValidationError, match="source"):
        labels.set(1, "x", source="robot")
    labels.set(1, "x")
    assert labels.delete(1) is True and labels.delete(1) is False and labels.get(1) is None
    with pytest.raises(ValidationError, match="No SAE folder"):
        LabelStore(store, "missing-sae").set(0, "x")


def test_concurrent_writers_lose_nothing(labels, store):
    other = LabelStore(store, "sae-1")  # e.g. the Features tab while a job writes

    def write(ls, start, source):
        for i in range(start, start + 25):
            (ls.set if source == "manual" else ls.set_auto)(i, f"label {i}")

    threads = [threading.Thread(target=write, args=(labels, 0, "auto")),
               threading.Thread(target=write, args=(other, 100, "manual"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_labels = labels.all()
    assert len(all_labels) == 50
    assert all_labels[110]["source"] == "manual" and all_labels[10]["source"] == "auto"


def test_renaming_an_llm_label_keeps_its_description_but_not_its_score(labels):
    labels.set_auto(4, "llm name", category="syntax", description="Fires on commas.", score={"accuracy": 0.9})
    entry = labels.set(4, "my name")  # what the Features tab does
    assert entry["source"] == "manual" and entry["category"] == "syntax" and entry["description"] == "Fires on commas."
    assert entry["score"] is None and entry["replaced_auto"] == "llm name"
    assert labels.set(4, "my name", description="")["description"] == ""
