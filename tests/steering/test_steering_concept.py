"""Concept vectors from two prompt sets, steering with them (raw or as features), feature groups, and bad input."""
from __future__ import annotations

import json

import pytest
import torch

from mistudio_core.platform.errors import NotFoundError, ValidationError
from mistudio_core.steering import concept as C
from mistudio_core.steering import groups as G
from mistudio_core.steering.generate import SamplingConfig, compare
from mistudio_core.steering.methods import SteerFeature, SteeringConfig, SteerVector
from mistudio_core.steering.score import CAPABILITY_TEXT, steered_text_perplexity
from steering_helpers import tiny_target

POS = ["THE STATE OF THE UNION IS STRONG!", "WE THE PEOPLE!", "FELLOW CITIZENS OF THE SENATE!"]
NEG = ["The state of the union is strong.", "We the people.", "Fellow citizens of the Senate."]


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    return tiny_target(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def concept(target):
    return C.concept_vector(target.model, target.tokenizer, target.sae, target.hook_name, POS, NEG, "shout")


def test_vector_is_the_mean_difference_and_features_carry_it(target, concept):
    a_pos, _ = C.prompt_means(target.model, target.tokenizer, target.sae, target.hook_name, POS)
    a_neg, _ = C.prompt_means(target.model, target.tokenizer, target.sae, target.hook_name, NEG)
    assert torch.allclose(torch.tensor(concept["vector"]), (a_pos - a_neg).mean(0), atol=1e-5)
    feats = concept["features"]
    assert feats and concept["n_pairs"] == 3
    shares = [f["share"] for f in feats]
    assert shares == sorted(shares, reverse=True) and shares[0] > 0
    assert sum(shares) <= concept["reconstructed_share"] + 1e-6 or len(feats) == C.N_TOP


def test_steering_with_the_raw_vector_or_its_features_changes_the_output(target, concept):
    sampling = SamplingConfig(max_new_tokens=6, temperature=0.0)
    common = (target.model, target.tokenizer, target.sae, target.hook_name, "We the people")
    raw = compare(*common, C.as_vector(concept, strength=20.0), sampling)
    assert raw["baseline"] != raw["steered"]
    zero = compare(*common, C.as_vector(concept, strength=0.0), sampling)
    assert zero["baseline"] == zero["steered"]
    writers = {w["index"]: w["strength"] for w in concept["writers"]}
    carrier = next(f for f in concept["features"] if f["index"] not in writers)
    picked = C.as_features(concept, indices=[carrier["index"]], multiplier=2.0)
    assert [f.strength for f in picked.features] == [pytest.approx(2.0 * carrier["delta"])]
    default = C.as_features(concept, multiplier=0.5)     # the writers, each at its fitted strength
    assert {f.index: f.strength for f in default.features} == pytest.approx({i: 0.5 * c for i, c in writers.items()})
    assert writers and compare(*common, C.as_features(concept, multiplier=20.0), sampling)["steered"] != \
        raw["baseline"]
    with pytest.raises(ValidationError, match="No concept feature selected"):
        C.as_features(concept, indices=[])


def test_capability_cost_is_the_fixed_texts_perplexity_under_the_steering(target, concept):
    ids = list(target.tokenizer(CAPABILITY_TEXT)["input_ids"])
    unit = C.as_vector(concept)
    base, small, big = steered_text_perplexity(target.model, target.sae, target.hook_name, unit, ids, [0, 1, 5000])
    assert base == pytest.approx(steered_text_perplexity(target.model, target.sae, target.hook_name,
                                                         SteeringConfig(), ids, [1])[0], rel=1e-4)
    assert small != pytest.approx(base, rel=1e-6) and big != pytest.approx(base, rel=1e-3)   # steering shows


@pytest.mark.parametrize("pos,neg,msg", [([], NEG, "concept \\(positive\\) prompt set is empty"),
                                         (POS, "\n  \n", "contrast \\(negative\\) prompt set is empty"),
                                         (POS, NEG[:2], "different sizes \\(3 vs 2\\)")])
def test_bad_prompt_sets_are_refused_before_any_forward(target, pos, neg, msg, monkeypatch):
    monkeypatch.setattr(C, "prompt_means", lambda *a: pytest.fail("ran the model on bad input"))
    with pytest.raises(ValidationError, match=msg):
        C.concept_vector(target.model, target.tokenizer, target.sae, target.hook_name, pos, neg)


def test_the_builtin_yelling_pair_is_paired_and_shouted():
    d = C.load_builtin("yelling")
    assert len(d["positive"]) == len(d["negative"]) >= 16 and len(d["prompts"]) >= 3
    assert all(C.uppercase_share(p) > 0.9 for p in d["positive"])
    assert all(C.uppercase_share(n) < 0.2 for n in d["negative"])
    assert C.EFFECTS[d["effect"]] is C.uppercase_share
    with pytest.raises(NotFoundError, match="yelling"):
        C.load_builtin("whispering")


def test_a_vector_with_nan_or_the_wrong_width_is_refused(target):
    with pytest.raises(ValidationError, match="NaN/inf"):
        SteerVector("v", [0.0, float("nan")])
    bad = SteeringConfig(vectors=[SteerVector("short", [1.0, 2.0])])
    with pytest.raises(ValidationError, match="another model or hook point"):
        compare(target.model, target.tokenizer, target.sae, target.hook_name, "Hi", bad,
                SamplingConfig(max_new_tokens=2))


def test_feature_groups_save_list_export_import_and_refuse_bad_input(store):
    cfg = SteeringConfig([SteerFeature(5, 2.0), SteerFeature(9, -1.5)])
    rec = G.save_group(store, "shouty", "sae-a", cfg, note="from Find")
    assert [g["id"] for g in G.list_groups(store, "sae-a")] == [rec["id"]] and G.list_groups(store, "other") == []
    assert G.group_config(G.load_group(store, rec["id"])).to_dict() == cfg.to_dict()
    path = G.export_group(store, rec["id"])
    data = json.loads(path.read_text())
    assert data["format"] == G.FORMAT and data["steering"]["features"][1] == {"index": 9, "strength": -1.5}
    again = G.import_group(store, data)
    assert again["id"] != rec["id"] and again["name"] == "shouty"
    with pytest.raises(ValidationError, match="Unknown keys.*evil"):
        G.import_group(store, {**data, "evil": 1})
    dead = {"dead": torch.tensor([False] * 9 + [True])}
    n_before = len(G.list_groups(store))
    for bad in (lambda: G.save_group(store, "", "sae-a", cfg),
                lambda: G.save_group(store, "x", "sae-a", SteeringConfig()),
                lambda: G.save_group(store, "x", "sae-a", cfg, stats=dead)):
        with pytest.raises(ValidationError):
            bad()
    assert len(G.list_groups(store)) == n_before        # nothing saved on bad input
