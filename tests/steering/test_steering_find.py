"""Find a feature by the concept it writes, the automatic sweep behind the suggested strength, and bad input."""
from __future__ import annotations

import math

import pytest
import torch

from mistudio_core.platform.errors import ValidationError
from mistudio_core.steering import auto, find
from mistudio_core.steering.effect import suggest_strength
from mistudio_core.steering.loader import check_steerable
from mistudio_core.steering.methods import SteerFeature, SteeringConfig
from steering_helpers import tiny_target

WRITER = 7


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """A tiny target whose feature WRITER's decoder row is the unembedding of ' union' (it writes ' union')."""
    t = tiny_target(tmp_path_factory.mktemp("tok"))
    tok_id = find.concept_token_ids(t.tokenizer, "union")[0]
    with torch.no_grad():
        row = t.model.get_output_embeddings().weight[tok_id].float()
        t.sae.W_dec[WRITER] = 3.0 * row / row.norm()
    return t


def _stats(n=64, dead=(3,)):
    d = torch.zeros(n, dtype=torch.bool)
    d[list(dead)] = True
    return {"max_activation": torch.full((n,), 2.0), "dead": d}


def test_the_feature_that_writes_the_concept_comes_first(target):
    res = find.find_features(target.model, target.tokenizer, target.sae, target.hook_name, "union", _stats(),
                             limit=5)
    top = res["rows"][0]
    assert top["index"] == WRITER and top["push"] > 0 and top["z"] > 3
    assert "union" in "".join(top["writes"][:3])          # what it writes is shown
    assert top["max_activation"] == 2.0 and 0 < top["output_score"] <= 1     # computed for the shown rows


def test_dead_features_are_never_offered_and_label_matches_rank_up(target):
    stats = _stats(dead=(WRITER,))
    res = find.find_features(target.model, target.tokenizer, target.sae, target.hook_name, "union", stats,
                             label_hits=[11], labels={11: "union stuff"}, limit=1)
    idx = [r["index"] for r in res["rows"]]
    assert WRITER not in idx and 11 in idx and len(idx) <= 2     # the label match is listed even past the limit
    row11 = res["rows"][idx.index(11)]
    assert row11["label_match"] and row11["label"] == "union stuff"
    assert row11["rank_score"] == pytest.approx(row11["push"] + find.LABEL_BONUS)


def test_empty_concept_is_refused(target):
    with pytest.raises(ValidationError, match="concept is empty"):
        find.find_features(target.model, target.tokenizer, target.sae, target.hook_name, "   ")


def test_strength_in_units_of_max_activation():
    assert find.fmt_strength(1.0, 4.0) == "1 (0.25× max act)"
    assert find.fmt_strength(3.0, None) == "3"
    assert auto.feature_strengths(2.0)[:4] == [0.25, 0.5, 0.75, 1.0]     # the grid starts small, finely


def test_auto_sweep_suggests_a_small_strength_and_reports_capability_cost(target):
    tokens = {"source": "test", "keys": ["union"], "tokens": {WRITER: [" union"]}}
    steering = SteeringConfig([SteerFeature(WRITER, 1.0)])
    res = auto.auto_sweep(target.model, target.tokenizer, target.sae, target.hook_name, steering,
                          auto.feature_strengths(2.0), prompts=("We the people", "The state of"), seeds=2,
                          max_new_tokens=6, effect_tokens=tokens)
    rows = res["rows"]
    assert [r["strength"] for r in rows] == auto.feature_strengths(2.0)
    assert all(len(r["texts"]) == 2 and r["capability_ppl"] > 0 for r in rows)
    assert res["baseline"]["capability_ppl"] > 0 and res["baseline"]["effect_tokens"] == 2 * 2 * 6
    # a stronger push makes the fixed text less predictable: the capability cost rises with strength
    assert rows[-1]["capability_ppl"] > res["baseline"]["capability_ppl"]
    assert rows[-1]["effect_expected"] > res["baseline"]["effect_expected"]
    s = res["suggested_strength"]
    assert s is None or s in auto.feature_strengths(2.0)
    assert "perplexity" in res["suggestion"]


def test_a_features_suggestion_keeps_a_margin_under_the_limit(target):
    steering = SteeringConfig([SteerFeature(WRITER, 1.0)])
    res = auto.feature_auto_sweep(target.model, target.tokenizer, target.sae, target.hook_name, steering, 2.0,
                                  prompts=("We the people",), seeds=1, max_new_tokens=4)
    assert [r["strength"] for r in res["rows"]] == auto.feature_strengths(2.0)
    limit = auto.FEATURE_SUGGEST_RATIO * res["baseline"]["perplexity"]
    kept = [r["strength"] for r in res["rows"] if r["perplexity"] <= limit]
    if res["suggested_strength"] is not None:
        assert res["suggested_strength"] in kept and "margin under the 1.5× limit" in res["suggestion"]
    # the walk itself: at 1.5× it would take 1.0; the margin (1.3×) stops at the step before
    rows = [{"strength": s, "perplexity": p} for s, p in [(0.25, 10.5), (0.5, 12.5), (1.0, 14.5), (2.0, 30.0)]]
    assert suggest_strength(rows, 10.0, 1.5)[0] == 1.0
    assert suggest_strength(rows, 10.0, auto.FEATURE_SUGGEST_RATIO)[0] == 0.5


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e9, "lots"])
def test_nan_inf_huge_or_text_strength_is_refused(bad):
    with pytest.raises(ValidationError, match="strength of feature 4"):
        SteerFeature(4, bad)


def test_steering_a_dead_feature_is_refused_naming_it():
    with pytest.raises(ValidationError, match="Feature\\(s\\) 3 never activated"):
        check_steerable(_stats(), [SteerFeature(5, 1.0), SteerFeature(3, 2.0)])
    check_steerable({}, [SteerFeature(3, 1.0)])   # no extraction: nothing known, nothing refused
    assert math.isfinite(SteerFeature(3, -2.5).strength)


def test_a_word_the_vocabulary_only_splits_still_has_tokens(target):
    ids = find.concept_token_ids(target.tokenizer, "yelling")   # the tiny BPE has no long piece of it
    assert ids and all(isinstance(i, int) for i in ids)


def test_concept_suggestion_takes_the_weakest_strength_near_the_saturated_effect():
    rows = [{"strength": s, "perplexity": p, "text_effect": e}
            for s, p, e in [(0.5, 5.0, 0.20), (0.75, 8.0, 0.85), (0.875, 10.0, 0.98), (1.0, 20.0, 0.99)]]
    base = {"perplexity": 4.0, "text_effect": 0.05}
    best, why = auto._pick_effect(rows, base, 3.0)          # 1.0 breaks the limit (20 > 12)
    assert best == 0.75 and "80%" in why                    # 0.80 gain ≥ 0.8 × 0.93, at less perplexity than 0.875
    assert auto._pick_effect([{**r, "text_effect": None} for r in rows], base, 3.0)[0] == 0.875   # no effect: largest
