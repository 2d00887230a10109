"""Hook points on every supported family: names, equality with `output_hidden_states`, early stop, interventions."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.platform.errors import ValidationError
from mistudio_core.model.hooks import capture, d_model, decoder_layers, hook_points, intervene, parse_hook
from tiny_models import FAMILIES, random_tokens, tiny_model

MODELS = {f: tiny_model(f) for f in FAMILIES}


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


def _final_norm(model):
    base = getattr(model, "model", None) or getattr(model, "transformer", None) or model.gpt_neox
    for name in ("norm", "ln_f", "final_layer_norm"):
        if hasattr(base, name):
            return getattr(base, name)
    raise AssertionError("no final norm")


def test_hook_names_and_d_model(family):
    model = MODELS[family]
    n = len(decoder_layers(model))
    names = hook_points(model)
    assert len(names) == 4 * n
    assert names[:4] == ["blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.hook_mlp_out",
                         "blocks.0.hook_resid_post"]
    assert parse_hook(model, f"blocks.{n - 1}.hook_mlp_out").layer == n - 1
    assert d_model(model) == model.config.get_text_config().hidden_size


@pytest.mark.parametrize("bad", ["blocks.99.hook_resid_post", "blocks.0.hook_resid_mid", "resid_post", ""])
def test_unknown_name_lists_valid_names(bad):
    with pytest.raises(ValidationError) as err:
        parse_hook(MODELS["llama"], bad)
    assert "blocks.0.hook_resid_pre" in str(err.value) and "0..2" in str(err.value)


def test_capture_matches_hidden_states(family):
    model, toks = MODELS[family], random_tokens(2, 10)
    n = len(decoder_layers(model))
    with torch.no_grad():
        hidden = model(toks, output_hidden_states=True).hidden_states
    assert len(hidden) == n + 1
    names = [f"blocks.{L}.hook_resid_{s}" for L in range(n) for s in ("pre", "post")]
    acts = capture(model, toks, names)
    for L in range(n):
        torch.testing.assert_close(acts[f"blocks.{L}.hook_resid_pre"], hidden[L], rtol=1e-5, atol=1e-6)
        if L < n - 1:
            torch.testing.assert_close(acts[f"blocks.{L}.hook_resid_post"], hidden[L + 1], rtol=1e-5, atol=1e-6)
    # The last hidden state is after the final norm, not the raw residual stream.
    last = acts[f"blocks.{n - 1}.hook_resid_post"]
    assert not torch.allclose(last, hidden[n], atol=1e-3)
    with torch.no_grad():
        torch.testing.assert_close(_final_norm(model)(last), hidden[n])


def test_branches_sum_to_residual_update(family):
    """resid_post = resid_pre + attn_out + mlp_out: the branch hooks see exactly what is added."""
    model, toks = MODELS[family], random_tokens(2, 10, seed=1)
    acts = capture(model, toks, [f"blocks.1.hook_{s}" for s in ("resid_pre", "attn_out", "mlp_out", "resid_post")])
    pre, attn, mlp, post = acts.values()
    assert pre.shape == (2, 10, d_model(model))
    torch.testing.assert_close(pre + attn + mlp, post, rtol=1e-5, atol=1e-5)
    assert attn.abs().sum() > 0 and mlp.abs().sum() > 0


def _count_calls(model):
    calls = [0] * len(decoder_layers(model))
    handles = [layer.register_forward_hook(lambda *_a, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, layer in enumerate(decoder_layers(model))]
    return calls, handles


@pytest.mark.parametrize("site,computed", [("resid_post", 2), ("attn_out", 2), ("resid_pre", 1)])
def test_capture_stops_after_deepest_layer(family, site, computed):
    model = MODELS[family]
    calls, handles = _count_calls(model)
    lm_head_calls = []
    handles.append(model.lm_head.register_forward_hook(lambda *_a: lm_head_calls.append(1)))
    try:
        acts = capture(model, random_tokens(1, 6), [f"blocks.1.hook_{site}", "blocks.0.hook_resid_post"])
    finally:
        for h in handles:
            h.remove()
    # Layer 0 and layer 1 (unless only its input was asked for) complete once; nothing above, no LM head.
    assert calls[:computed] == [1] * computed and sum(calls[computed:]) == 0
    assert not lm_head_calls and set(acts) == {f"blocks.1.hook_{site}", "blocks.0.hook_resid_post"}


def test_capture_leaves_no_hooks_behind():
    model = MODELS["llama"]

    def n_hooks():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    before = n_hooks()
    capture(model, random_tokens(1, 4), ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"])
    with pytest.raises(ValidationError):
        capture(model, random_tokens(1, 4), ["blocks.0.hook_resid_post", "blocks.7.hook_mlp_out"])
    assert n_hooks() == before


@pytest.mark.parametrize("site", ["resid_pre", "attn_out", "mlp_out", "resid_post"])
def test_intervention_changes_logits_and_identity_does_not(family, site):
    model, toks = MODELS[family], random_tokens(2, 8, seed=2)
    name = f"blocks.0.hook_{site}"
    with torch.no_grad():
        clean = model(toks).logits
        with intervene(model, name, lambda a: a):
            same = model(toks).logits
        # A random direction, not a constant: LayerNorm (GPT-2, NeoX) cancels a uniform shift exactly.
        push = 3.0 * torch.randn(d_model(model), generator=torch.Generator().manual_seed(0))
        with intervene(model, name, lambda a: a + push):
            steered = model(toks).logits
        after = model(toks).logits
    torch.testing.assert_close(same, clean, rtol=0, atol=0)
    assert (steered - clean).abs().max() > 1e-3
    torch.testing.assert_close(after, clean, rtol=0, atol=0)  # the hook is gone afterwards


def test_intervention_visible_to_capture_and_nested():
    model, toks = MODELS["llama"], random_tokens(1, 5)
    clean = capture(model, toks, "blocks.1.hook_resid_pre")["blocks.1.hook_resid_pre"]
    with intervene(model, "blocks.1.hook_resid_pre", lambda a: a * 2), \
            intervene(model, "blocks.1.hook_resid_pre", lambda a: a + 1):
        got = capture(model, toks, "blocks.1.hook_resid_pre")["blocks.1.hook_resid_pre"]
    torch.testing.assert_close(got, clean * 2 + 1)


def test_intervention_during_generate_with_kv_cache(family):
    model = MODELS[family]
    prompt = random_tokens(2, 4, seed=3)
    shapes = []
    push = 3.0 * torch.randn(d_model(model), generator=torch.Generator().manual_seed(0))

    def spy(act):
        shapes.append(tuple(act.shape))
        return act + push

    gen = dict(max_new_tokens=3, do_sample=False, use_cache=True, pad_token_id=0)
    with torch.no_grad():
        with intervene(model, "blocks.0.hook_resid_post", spy):
            steered = model.generate(prompt, **gen, output_logits=True, return_dict_in_generate=True)
        clean = model.generate(prompt, **gen, output_logits=True, return_dict_in_generate=True)
    d = d_model(model)
    assert shapes[0] == (2, 4, d) and all(s == (2, 1, d) for s in shapes[1:]) and len(shapes) == 3
    assert (steered.logits[0] - clean.logits[0]).abs().max() > 1e-3


def test_intervention_shape_mismatch_is_a_clear_error():
    model = MODELS["gpt2"]
    with pytest.raises(ValidationError, match="same shape"):
        with intervene(model, "blocks.0.hook_mlp_out", lambda a: a[:, :1]), torch.no_grad():
            model(random_tokens(1, 4))


def test_capture_in_another_thread_ignores_an_intervention():
    """A training job's capture must never see a steering hook that another thread has put on the shared model."""
    import threading

    model, toks = MODELS["llama"], random_tokens(1, 5)
    name = "blocks.1.hook_resid_post"
    clean = capture(model, toks, name)[name]
    got = {}
    with intervene(model, "blocks.0.hook_resid_post", lambda a: a * 0):
        worker = threading.Thread(target=lambda: got.update(capture(model, toks, name)))
        worker.start()
        worker.join(timeout=30)
        mine = capture(model, toks, name)[name]  # this thread's own capture does see it
    torch.testing.assert_close(got[name], clean)
    assert not torch.allclose(mine, clean)


def test_concurrent_captures_do_not_mix():
    from concurrent.futures import ThreadPoolExecutor

    model = MODELS["gpt2"]
    jobs = [(random_tokens(2, 6, seed=i), f"blocks.{i % 3}.hook_resid_post") for i in range(12)]
    expected = [capture(model, t, n)[n] for t, n in jobs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda job: capture(model, job[0], job[1])[job[1]], jobs))
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e)
