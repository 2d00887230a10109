"""Steering with an imported community SAE: a Gemma Scope `params.npz` (JumpReLU) for a local tiny Gemma-2 model,
both registered in the store the way a user adds them, then steered through the same `load_target` the Steering
tab and the CLI use."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mistudio_core.model.hooks import capture, intervene
from mistudio_core.interop.importers import import_sae
from mistudio_core.model.models import add_local_model
from mistudio_core.steering.generate import SamplingConfig, compare, encode_prompt
from mistudio_core.steering.loader import load_target
from mistudio_core.steering.methods import Steerer, SteerFeature, SteeringConfig
from tiny_models import save_tiny_model

REPO, PATH = "google/gemma-scope-2b-pt-res", "layer_1/width_16k/average_l0_20"
PROMPT = "the cat sat on the mat"


@pytest.fixture
def imported(store, tmp_path):
    save_tiny_model("gemma2", tmp_path / "gemma2-tiny")
    model = add_local_model(store, tmp_path / "gemma2-tiny", name="gemma2-tiny")
    d_in = model["d_model"]
    g = np.random.default_rng(0)
    w_dec = g.normal(size=(16 * 1024, d_in)).astype(np.float32)
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    folder = tmp_path / "gemma-scope"
    folder.mkdir()
    # Encoder near the decoder's transpose, as in trained SAEs, so features fire on the activations they write.
    np.savez(folder / "params.npz", W_enc=(0.7 * w_dec.T).copy(), W_dec=w_dec, b_enc=np.zeros(16 * 1024, np.float32),
             b_dec=np.zeros(d_in, np.float32), threshold=np.full(16 * 1024, 0.05, np.float32))
    sae = import_sae(store, folder, model_id=model["id"], repo_id=REPO, path_in_repo=PATH)
    return load_target(store, sae["id"])


def test_imported_gemma_scope_steers_and_strength_zero_is_the_baseline(imported):
    t = imported
    assert (t.hook_name, t.manifest["architecture"]) == ("blocks.1.hook_resid_post", "jumprelu")
    s = SamplingConfig(max_new_tokens=8, temperature=0.8, seed=3, stop_at_eos=False)
    zero = compare(t.model, t.tokenizer, t.sae, t.hook_name, PROMPT, SteeringConfig([SteerFeature(11, 0.0)]), s)
    assert zero["steered_tokens"] == zero["baseline_tokens"]
    big = compare(t.model, t.tokenizer, t.sae, t.hook_name, PROMPT, SteeringConfig([SteerFeature(11, 40.0)]), s)
    assert big["baseline_tokens"] == zero["baseline_tokens"] and big["steered_tokens"] != big["baseline_tokens"]


def test_suppressing_an_imported_feature_zeroes_its_reencoded_activation(imported):
    t = imported
    ids = torch.tensor([encode_prompt(t.tokenizer, PROMPT)])
    base = capture(t.model, ids, [t.hook_name])[t.hook_name]
    f = int(t.sae.encode(base[0]).sum(0).argmax())  # the feature firing most on this prompt
    assert t.sae.encode(base[0])[:, f].max() > 0
    seen = {}
    with intervene(t.model, t.hook_name, Steerer(SteeringConfig([SteerFeature(f, 0.0)], method="clamp_exact"),
                                                 t.sae)), \
            intervene(t.model, t.hook_name, lambda a: seen.setdefault("a", a)), torch.no_grad():
        t.model(input_ids=ids)
    assert t.sae.encode(seen["a"][0])[:, f].abs().max() < 1e-4
