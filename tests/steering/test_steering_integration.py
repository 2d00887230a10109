"""Steering on the shipped SmolLM2 (integration): strength 0 is the baseline, steering moves the text, and the
feature-space clamp lowers the feature's re-encoded activation at the hook."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.model.hooks import capture, intervene
from mistudio_core.model.models import BUILTIN_ID, load_model
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.model import SAE
from mistudio_core.steering.generate import SamplingConfig, compare
from mistudio_core.steering.methods import Steerer, SteerFeature, SteeringConfig

pytestmark = pytest.mark.integration
HOOK = "blocks.8.hook_resid_post"


@pytest.fixture(scope="module")
def smol(real_store):
    loaded = load_model(real_store, BUILTIN_ID, device="cpu")
    sae = SAE(SAEConfig("standard", d_in=loaded.model.config.hidden_size, d_sae=1024), seed=0)
    with torch.no_grad():  # shaped like a trained SAE: unit decoder rows, an encoder that reads a step back 1:1
        sae.normalize_decoder()  # (a fresh standard SAE starts at decoder norm 0.1 and would re-read 1% of a step)
        sae.W_enc.copy_(sae.W_dec.T)
    return loaded, sae


def test_strength_zero_is_the_baseline_and_steering_changes_smollm2(smol):
    loaded, sae = smol
    s = SamplingConfig(max_new_tokens=8, temperature=0.8, seed=1, stop_at_eos=False, chat=True)
    zero = compare(loaded.model, loaded.tokenizer, sae, HOOK, "Tell me about the sea.",
                   SteeringConfig([SteerFeature(5, 0.0)]), s)
    assert zero["steered_tokens"] == zero["baseline_tokens"]
    big = compare(loaded.model, loaded.tokenizer, sae, HOOK, "Tell me about the sea.",
                  SteeringConfig([SteerFeature(5, 200.0)]), s)
    assert big["baseline_tokens"] == zero["baseline_tokens"] and big["steered_tokens"] != big["baseline_tokens"]


def test_clamp_lowers_the_reencoded_activation(smol):
    loaded, sae = smol
    ids = torch.tensor([loaded.tokenizer("The ocean is deep and blue, and whales sing.")["input_ids"]])
    base = capture(loaded.model, ids, [HOOK])[HOOK]
    f = int(sae.encode(base[0, 1:]).sum(0).argmax())
    seen = {}
    with intervene(loaded.model, HOOK, Steerer(SteeringConfig([SteerFeature(f, 0.0)], method="clamp"), sae)), \
            intervene(loaded.model, HOOK, lambda a: seen.setdefault("a", a)), torch.no_grad():
        loaded.model(input_ids=ids)
    before, after = sae.encode(base)[0, 1:, f], sae.encode(seen["a"])[0, 1:, f]
    assert after.sum() < 0.05 * before.sum()


def test_additive_strength_raises_the_activation_in_the_steered_model_monotonically(smol):
    """The sweep's `steered_feature_mean` (SAE reading of the steered residual at the hook) rises with additive
    strength on the real model; `feature_mean` is the unsteered re-read, reported beside it."""
    from mistudio_core.steering.sweep import sweep

    loaded, sae = smol
    prompt = "The ocean is deep and blue."
    ids = torch.tensor([loaded.tokenizer(prompt)["input_ids"]])
    f = int(sae.encode(capture(loaded.model, ids, [HOOK])[HOOK][0, 1:]).sum(0).argmax())
    res = sweep(loaded.model, loaded.tokenizer, sae, HOOK, prompt, SteeringConfig([SteerFeature(f, 1.0)]),
                [0.0, 4.0, 8.0, 16.0], SamplingConfig(max_new_tokens=5, temperature=0.8, seed=0, stop_at_eos=False))
    at_hook = [r["steered_feature_mean"][f] for r in res["rows"]]
    assert all(b > a for a, b in zip(at_hook, at_hook[1:])), at_hook
    assert all(r["feature_mean"][f] is not None for r in res["rows"])
