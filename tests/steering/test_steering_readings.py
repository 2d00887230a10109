"""Steering's two activations, named; the sweep's baseline, effect share and suggested strength; label word search.
Tiny Llama + tiny BPE tokenizer + TinySAE: seconds on two cores."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.steering.effect import (SOURCE_EXTRACTION, SOURCE_UNEMBEDDING, effect_tokens, suggest_strength,
                                           token_share, token_specificity)
from mistudio_core.steering.generate import SamplingConfig, compare
from mistudio_core.steering.loader import search_features
from mistudio_core.steering.methods import Steerer, SteerFeature, SteeringConfig
from mistudio_core.steering.sweep import sweep
from steering_helpers import HOOK, TinySAE, tiny_target

PROMPT = "The state of the union is"
GREEDY = SamplingConfig(max_new_tokens=6, temperature=0.0, stop_at_eos=False)


@pytest.fixture(scope="module")
def t(tmp_path_factory):
    return tiny_target(tmp_path_factory.mktemp("tok"))


def _always_on(f: int = 3, overlap: float = 1.0) -> TinySAE:
    """A TinySAE whose feature `f` fires at every position (large b_enc), with W_enc scaled by `overlap`."""
    sae = TinySAE()
    with torch.no_grad():
        sae.W_enc.mul_(overlap)
        sae.b_enc[f] = 50.0
    return sae


def test_additive_strength_raises_the_activation_at_the_hook_not_only_the_text(t):
    res = sweep(t.model, t.tokenizer, t.sae, HOOK, PROMPT, SteeringConfig([SteerFeature(3, 1.0)]),
                [0.0, 2.0, 8.0, 32.0], SamplingConfig(max_new_tokens=6, seed=2, stop_at_eos=False))
    at_hook = [r["steered_feature_mean"][3] for r in res["rows"]]
    assert all(b > a for a, b in zip(at_hook, at_hook[1:])), at_hook
    # tied TinySAE: d_f = 1, so strength 32 adds about 32 to the pre-activation wherever the feature is active
    assert at_hook[-1] - at_hook[0] > 20
    assert res["rows"][0]["text"] == res["baseline"]["text"]   # additive 0 = the unsteered baseline row
    assert res["baseline"]["steered_feature_mean"][3] == pytest.approx(at_hook[0], abs=1e-5)


def test_clamp_exact_to_c_reads_c_at_the_hook_while_plain_clamp_falls_short(t):
    sae = _always_on(overlap=0.5)   # an encoder reading back half a decoder step, as trained SAEs do
    runs = {m: compare(t.model, t.tokenizer, sae, HOOK, PROMPT, SteeringConfig([SteerFeature(3, 7.0)], method=m),
                       GREEDY) for m in ("clamp", "clamp_exact")}
    assert runs["clamp_exact"]["steered_feature_mean"][3] == pytest.approx(7.0, abs=1e-3)
    assert abs(runs["clamp"]["steered_feature_mean"][3] - 7.0) > 1.0
    r = runs["clamp_exact"]   # both readings are there, and the baseline's unsteered reading differs from 7
    assert set(r["feature_mean"]) == {3} and r["perplexity"] > 1 and r["baseline_perplexity"] > 1
    assert abs(r["baseline_feature_mean"][3] - 7.0) > 1.0


def test_stopped_rows_are_not_counted():
    sae = _always_on()
    st = Steerer(SteeringConfig([SteerFeature(3, 0.0)], method="clamp"), sae)
    st(torch.randn(2, 4, 32))                                    # prefill: both rows, 4 positions
    st.live = torch.tensor([True, False])
    st(torch.randn(2, 1, 32) + 100.0)                            # row 1 stopped: its step is padding
    means = st.steered_means()
    assert means[0][3] == pytest.approx(0.0, abs=1e-5) and means[1][3] == pytest.approx(0.0, abs=1e-5)
    st.reset()
    assert st.steered_means() == []


def test_suggested_strength_is_the_largest_within_the_perplexity_limit():
    rows = [{"strength": s, "perplexity": p} for s, p in [(0, 10), (2, 11), (4, 14.9), (8, 16), (16, 12)]]
    best, why = suggest_strength(rows, 10.0)
    assert best == 4 and "1.5" in why          # 16 is back under the limit, but 8 already broke the text
    assert suggest_strength([{"strength": 2, "perplexity": 40}], 10.0)[0] is None
    neg = [{"strength": -2, "perplexity": 10}, {"strength": -6, "perplexity": 12}]
    assert suggest_strength(neg, 10.0)[0] == -6
    assert suggest_strength(rows, None)[0] is None


class _Results:
    """The part of `FeatureResults` the effect score reads: top-example peak tokens [F, k] (-1 = empty)."""

    def __init__(self, peaks):
        self._p = torch.tensor(peaks)
        self.n_features = self._p.shape[0]

    def peak_tokens(self):
        return self._p


def test_effect_tokens_come_from_extraction_else_from_the_unembedding(t):
    ids = t.tokenizer(" union state", add_special_tokens=False)["input_ids"]
    res = _Results([[ids[0]] * 9 + [ids[1]], [-1] * 10] + [[-1] * 10] * 62)
    got = effect_tokens(t.model, t.tokenizer, t.sae, [0], res)
    assert got["source"] == SOURCE_EXTRACTION and got["tokens"][0][0] == t.tokenizer.decode([ids[0]])
    assert token_share(t.tokenizer, [ids[0], ids[1], ids[0]], got["keys"]) == (3, 3)
    other = next(i for i in range(len(t.tokenizer)) if t.tokenizer.decode([i]).strip().lower() not in got["keys"])
    assert token_share(t.tokenizer, [other, ids[0]], got["keys"]) == (1, 2)
    fallback = effect_tokens(t.model, t.tokenizer, t.sae, [1], res, n=5)   # feature 1: no examples
    assert fallback["source"] == SOURCE_UNEMBEDDING and len(fallback["tokens"][1]) == 5
    assert token_specificity(res, min_examples=5)[0] == pytest.approx(0.9)


def test_sweep_reports_effect_share_against_the_baseline_and_a_suggestion(t):
    tokens = effect_tokens(t.model, t.tokenizer, t.sae, [3], None, n=30)
    res = sweep(t.model, t.tokenizer, t.sae, HOOK, PROMPT, SteeringConfig([SteerFeature(3, 1.0)]),
                [0.0, 4.0, 64.0], SamplingConfig(max_new_tokens=8, seed=0, stop_at_eos=False), seeds=2,
                effect_tokens=tokens)
    assert res["seeds"] == 2 and res["effect_source"] == SOURCE_UNEMBEDDING
    for r in res["rows"] + [res["baseline"]]:
        assert 0.0 <= r["effect_share"] <= 1.0 and r["effect_tokens"] == 16   # 2 seeds × 8 tokens
    assert res["suggested_strength"] in (None, 0.0, 4.0, 64.0) and res["suggestion"]


def test_labels_are_searched_by_words(store):
    from mistudio_core.labeling.store import LabelStore

    with store.create("saes", "s", {"d_sae": 64}, artifact_id="s"):
        pass
    labels = LabelStore(store, "s")
    labels.set(5, "yelling in ALL CAPS", description="Text written as shouting")
    labels.set(9, "capitalized letters at sentence start")
    labels.set(11, "numbers")
    assert [h["index"] for h in search_features(store, "s", "yelling")] == [5]
    assert 9 in [h["index"] for h in search_features(store, "s", "capital letters")]
    hit = search_features(store, "s", "Yelling")[0]
    assert hit["label"] == "yelling in ALL CAPS" and hit["source"] == "manual"
    assert search_features(store, "s", "11") == [{"index": 11, "label": "numbers", "source": ""}]


def test_expected_share_is_the_models_probability_of_the_effect_tokens(t):
    """effect_expected = mean over generated positions of the probability the row's model gives the feature's
    tokens: the unsteered row's values equal an independent forward over prompt + its output; a zero strength
    equals the baseline; a strong push along the feature changes it; the sweep averages the per-token values."""
    from mistudio_core.steering import sweep as sweep_mod
    from mistudio_core.steering.effect import key_mask
    from mistudio_core.steering.generate import _eos_ids, encode_prompt

    tokens = effect_tokens(t.model, t.tokenizer, t.sae, [3], None, n=30)
    sampling = SamplingConfig(max_new_tokens=8, seed=0, stop_at_eos=False)
    prompt_ids = encode_prompt(t.tokenizer, PROMPT)
    unit = SteeringConfig([SteerFeature(3, 1.0)])
    base, zero, strong = sweep_mod._run_seed(t.model, t.tokenizer, t.sae, HOOK, prompt_ids, unit, [0.0, 64.0],
                                             sampling, _eos_ids(t.tokenizer, t.model), lambda step: None,
                                             sweep_mod._effect_mask(t.tokenizer, tokens["keys"]))
    with torch.no_grad():
        logits = t.model(input_ids=torch.tensor([prompt_ids + base["tokens"]])).logits[0, len(prompt_ids) - 1:-1]
    mask = key_mask(t.tokenizer, tokens["keys"], logits.shape[-1])
    expected = torch.softmax(logits.float(), -1)[:, mask].sum(-1)
    assert base["effect_probs"] == pytest.approx(expected.tolist(), rel=1e-4, abs=1e-7)
    assert zero["effect_probs"] == pytest.approx(base["effect_probs"], rel=1e-6)
    assert strong["effect_probs"] != pytest.approx(base["effect_probs"], rel=1e-2)
    res = sweep(t.model, t.tokenizer, t.sae, HOOK, PROMPT, unit, [0.0, 64.0], sampling, seeds=1,
                effect_tokens=tokens)
    assert res["baseline"]["effect_expected"] == pytest.approx(float(expected.mean()), rel=1e-4)
