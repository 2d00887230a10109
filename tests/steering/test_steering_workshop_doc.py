"""docs/WORKSHOP.md's steering numbers are the ones the Steering tab uses: the doc quotes the sentences that the tab
builds from the constants (`auto.feature_sweep_text`, `concept.concept_sweep_text`), so changing a constant without
the doc fails here."""
from __future__ import annotations

import re
from pathlib import Path

from mistudio_core.steering import auto, concept
from mistudio_core.steering.sweep import MAX_PPL_RATIO

DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "WORKSHOP.md"


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_workshop_quotes_the_automatic_sweeps_of_the_tab():
    doc = _flat(DOC.read_text(encoding="utf-8"))
    assert _flat(auto.feature_sweep_text()) in doc
    assert _flat(concept.concept_sweep_text()) in doc
    assert f"≤ {MAX_PPL_RATIO:g}× the unsteered baseline's" in doc


def test_the_sentences_follow_the_constants(monkeypatch):
    monkeypatch.setattr(auto, "FEATURE_MULTIPLES", (0.5, 3.0))
    monkeypatch.setattr(concept, "CONCEPT_MAX_PPL_RATIO", 2.0)
    assert "1/2×, 3× the feature's max activation" in auto.feature_sweep_text()
    assert "≤ 2× the unsteered" in concept.concept_sweep_text()
    assert _flat(auto.feature_sweep_text()) not in _flat(DOC.read_text(encoding="utf-8"))   # the doc would fail
