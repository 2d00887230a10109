"""Prompt building, robust answer parsing, example splitting and detection metrics (no network)."""
from __future__ import annotations

import random

import pytest

from fake_openai_server import FakeFeatures
from mistudio_core.platform.errors import ValidationError
from mistudio_core.labeling.prompts import DEFAULT_TEMPLATE, build_messages, format_example, parse_label
from mistudio_core.labeling.scoring import _parse_numbers, metrics, negatives_for, split_examples
from mistudio_core.labeling.spec import LabelSpec, parse_indices


@pytest.mark.parametrize("answer", [
    '{"label": "dates", "category": "number", "description": "Years."}',
    'Sure!\n```json\n{"label": "dates", "category": "number", "description": "Years.",}\n```\nHope it helps',
    'The feature is about {years}. {"Label": "dates", "Category": "number", "Description": "Years."} done',
])
def test_parse_label_tolerates_fences_prose_and_trailing_commas(answer):
    assert parse_label(answer) == {"label": "dates", "category": "number", "description": "Years."}


@pytest.mark.parametrize("answer", ["I think it is about dates.", '{"category": "x"}', "", '{"label": "unclosed'])
def test_parse_label_rejects_answers_without_a_label(answer):
    assert parse_label(answer) is None


def test_prompt_marks_active_tokens_and_fills_placeholders():
    feats = FakeFeatures()
    feature = feats.feature(2)
    shown, held = split_examples(feature, 3, 1)
    msgs = build_messages(feature, shown, 2, DEFAULT_TEMPLATE)
    user = msgs[-1]["content"]
    assert "Feature 2 fires" in user and "<< word2>>" in user and "<< The>>" not in user
    assert "' word2s'" in user and "' never'" in user  # top and bottom logits
    assert "\\n" in user and "{examples}" not in user
    assert user.count("<< word2") == len(shown) == 3 + 2  # 3 top + 1 per quantile (2 quantiles)
    # a run of active tokens is one span; the weak " again" (0.4 < 5% of max in quantiles) stays unmarked there
    assert user.count("<< word2 again>>") == 3 and user.count("<< word2>> again") == 2
    assert format_example(shown[0], mark=False) == "The report says word2 again (ctx0)\\n end"
    with pytest.raises(ValidationError, match="examples"):
        build_messages(feature, shown, 2, "Name this feature.")


def test_held_out_examples_are_disjoint_from_shown_and_negatives_are_foreign():
    feats = FakeFeatures(n=4)
    feature = feats.feature(1)
    shown, held = split_examples(feature, 10, 1)
    ids = lambda xs: {e["context_id"] for e in xs}  # noqa: E731
    assert len(shown) == 12 and len(held) == 4 + 2 * 2 and not ids(shown) & ids(held)
    pool = [(i, e) for i in range(4) for e in feats.feature(i)["top_examples"][:3]]
    neg = negatives_for(1, feature, pool, 5, random.Random(0))
    assert len(neg) == 5 and not ids(neg) & ids(shown + held)
    assert all(" word1" not in e["tokens"] for e in neg)


def test_detection_metrics_and_answer_parsing():
    truth = [True, True, False, False, False, False]
    perfect = metrics(truth, {1, 2})
    assert perfect["accuracy"] == 1.0 and perfect["balanced_accuracy"] == 1.0
    assert perfect["chance"] == pytest.approx(4 / 6, abs=1e-3)
    everything = metrics(truth, set(range(1, 7)))
    assert everything["accuracy"] == pytest.approx(2 / 6, abs=1e-3) and everything["balanced_accuracy"] == 0.5
    assert _parse_numbers('```json\n{"activating": [1, "3", 9]}\n```', 6) == {1, 3}
    assert _parse_numbers("Snippets [2, 4] fire.", 6) == {2, 4}
    assert _parse_numbers("no idea", 6) is None


def test_spec_validation_and_index_parsing():
    assert parse_indices("3, 17, 40-42") == [3, 17, 40, 41, 42]
    with pytest.raises(ValidationError, match="40-"):
        parse_indices("40-x")
    with pytest.raises(ValidationError, match="indices"):
        LabelSpec(sae_id="s", selection="indices")
    with pytest.raises(ValidationError, match="Base URL"):
        LabelSpec(sae_id="s", provider={"base_url": "localhost:11434", "model": "m"})
    a = LabelSpec(sae_id="s", provider={"base_url": "http://x/v1", "model": "m"}, concurrency=2, key_ref="k1")
    b = LabelSpec(sae_id="s", provider={"base_url": "http://x/v1/", "model": "m"}, concurrency=8, key_ref="k2",
                  selection="indices", indices=[1])
    assert a.fingerprint() == b.fingerprint()  # resumes/reselections skip done work
    assert a.fingerprint() != LabelSpec(sae_id="s", provider={"base_url": "http://x/v1", "model": "m2"}).fingerprint()
