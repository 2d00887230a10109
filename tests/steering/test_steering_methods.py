"""The interventions, checked against hand computations and through the real hook on a tiny Llama."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.platform.errors import ValidationError
from mistudio_core.model.hooks import capture, intervene
from mistudio_core.steering.methods import (SteerFeature, Steerer, SteeringConfig, clamp_feature, orthogonal,
                                            projection_cap)
from steering_helpers import HOOK, TinySAE, llama


def _ids(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 256, (2, n), generator=g)


def test_additive_hook_adds_exactly_c_times_v_at_every_position():
    model, sae = llama(), TinySAE()
    ids = _ids()
    base = capture(model, ids, [HOOK])[HOOK]
    seen = {}
    cfg = SteeringConfig([SteerFeature(5, 3.0)], method="additive")
    with intervene(model, HOOK, Steerer(cfg, sae)), intervene(model, HOOK, lambda a: seen.setdefault("a", a)):
        model(input_ids=ids)
    torch.testing.assert_close(seen["a"] - base, (3.0 * sae.W_dec[5]).expand_as(base).detach(),
                               atol=1e-5, rtol=0)


def test_normalize_uses_the_unit_vector():
    sae = TinySAE()
    with torch.no_grad():
        sae.W_dec[2] *= 4.0
    h = torch.zeros(1, 3, 32)
    out = Steerer(SteeringConfig([SteerFeature(2, 2.0)], normalize=True), sae)(h)
    assert torch.allclose(out[0, 0].norm(), torch.tensor(2.0))


def test_generated_positions_only_leaves_the_prompt_alone():
    sae = TinySAE()
    v = sae.W_dec[1].detach()
    st = Steerer(SteeringConfig([SteerFeature(1, 1.0)], positions="generated"), sae, prompt_len=4)
    prefill = st(torch.zeros(1, 4, 32))  # the whole prompt: untouched
    assert prefill.abs().max() == 0
    step = st(torch.zeros(1, 1, 32))     # a KV-cache step at position 4: steered
    torch.testing.assert_close(step[0, 0], v)
    st.reset()                            # without a cache: the full sequence again, positions 0..5
    full = st(torch.zeros(1, 6, 32))
    assert full[0, :4].abs().max() == 0 and torch.allclose(full[0, 4:], v.expand(2, -1))


def test_orthogonal_matches_the_matrix_formula():
    g = torch.Generator().manual_seed(1)
    h, v = torch.randn(2, 5, 8, generator=g), torch.randn(8, generator=g)
    P = torch.outer(v, v) / v.dot(v)
    expected = h @ (torch.eye(8) - P).T + 2.5 * (h @ P.T)
    torch.testing.assert_close(orthogonal(h, v, 2.5), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(orthogonal(h, v, 1.0), h, atol=1e-5, rtol=1e-5)  # c = 1 is the identity


def test_projection_cap_by_hand():
    v = torch.tensor([3.0, 4.0])                   # v̂ = (0.6, 0.8)
    h = torch.tensor([[[3.0, 4.0], [0.6, 0.8]]])   # projections 5 and 1
    out = projection_cap(h, v, 2.0)
    torch.testing.assert_close(out[0, 0], torch.tensor([1.2, 1.6]))   # capped from 5 down to 2
    torch.testing.assert_close(out[0, 1], torch.tensor([0.6, 0.8]))   # below the cap: unchanged
    floored = projection_cap(h, v, 10.0, low=3.0)
    torch.testing.assert_close(floored[0, 1], torch.tensor([1.8, 2.4]))


def test_clamp_to_zero_ablates_the_feature_and_keeps_the_reconstruction_error():
    sae = TinySAE()
    g = torch.Generator().manual_seed(2)
    h = torch.randn(2, 4, 32, generator=g) + sae.W_dec[7].detach() * 3.0  # make feature 7 fire
    z = sae.encode(h)
    assert (z[..., 7] > 0).all()
    out = clamp_feature(h, sae, 7, 0.0)
    assert sae.encode(out)[..., 7].abs().max() < 1e-5
    z_clamped = z.clone()
    z_clamped[..., 7] = 0
    # out = decode(z_clamped) + (h - decode(z)): the edited reconstruction plus the original error, untouched
    torch.testing.assert_close(out - sae.decode(z_clamped), h - sae.decode(z), atol=1e-5, rtol=0)
    torch.testing.assert_close(out, h - z[..., 7:8] * sae.W_dec[7].detach(), atol=1e-5, rtol=0)


def test_suppression_through_the_hook_zeroes_the_reencoded_activation():
    model, sae = llama(), TinySAE()
    ids = _ids(9, seed=3)
    base = capture(model, ids, [HOOK])[HOOK]
    f = int(sae.encode(base).sum((0, 1)).argmax())  # the feature firing most on this input
    assert sae.encode(base)[..., f].max() > 0
    seen = {}
    with intervene(model, HOOK, Steerer(SteeringConfig([SteerFeature(f, 0.0)], method="clamp"), sae)), \
            intervene(model, HOOK, lambda a: seen.setdefault("a", a)):
        model(input_ids=ids)
    assert sae.encode(seen["a"])[..., f].abs().max() < 1e-4


def _untied(overlap: float = 0.6) -> TinySAE:
    """A TinySAE whose encoder reads back only `overlap` of each decoder step, as trained SAEs do (d_f < 1)."""
    sae = TinySAE()
    with torch.no_grad():
        sae.W_enc.mul_(overlap)
    return sae


def test_plain_clamp_leaves_activation_on_an_untied_sae_and_clamp_exact_zeroes_it():
    model, sae = llama(), _untied(0.6)
    ids = _ids(9, seed=3)
    base = capture(model, ids, [HOOK])[HOOK]
    f = int(sae.encode(base).sum((0, 1)).argmax())
    before = sae.encode(base)[..., f]
    after = {}
    for method in ("clamp", "clamp_exact"):
        seen = {}
        with intervene(model, HOOK, Steerer(SteeringConfig([SteerFeature(f, 0.0)], method=method), sae)), \
                intervene(model, HOOK, lambda a: seen.setdefault("a", a)):
            model(input_ids=ids)
        after[method] = sae.encode(seen["a"])[..., f]
    torch.testing.assert_close(after["clamp"], 0.4 * before, atol=1e-4, rtol=1e-4)  # (1 − d_f) survives
    assert after["clamp_exact"].abs().max() < 1e-4


def test_clamp_exact_lands_on_a_positive_target():
    sae = _untied(0.5)
    h = torch.randn(3, 32, generator=torch.Generator().manual_seed(1)) + 4.0 * sae.W_dec[3].detach()
    assert (sae.encode(h)[..., 3] > 0).all()
    out = Steerer(SteeringConfig([SteerFeature(3, 2.5)], method="clamp_exact"), sae)(h[None])
    torch.testing.assert_close(sae.encode(out)[0, :, 3], torch.full((3,), 2.5), atol=1e-4, rtol=0)


def test_clamp_exact_refuses_a_feature_the_encoder_cannot_read_back():
    sae = TinySAE()
    with torch.no_grad():
        sae.W_enc[:, 4] = 0.0
    with pytest.raises(ValidationError, match="feature 4.*Use clamp instead"):
        Steerer(SteeringConfig([SteerFeature(4, 0.0)], method="clamp_exact"), sae)


def test_rows_and_row_scale():
    sae = TinySAE()
    v = sae.W_dec[0].detach()
    h = torch.zeros(3, 2, 32)
    out = Steerer(SteeringConfig([SteerFeature(0, 2.0)]), sae, rows=torch.tensor([False, True, True]),
                  row_scale=torch.tensor([5.0, 1.0, -1.0]))(h)
    assert out[0].abs().max() == 0
    torch.testing.assert_close(out[1, 1], 2.0 * v)
    torch.testing.assert_close(out[2, 0], -2.0 * v)


def test_bad_inputs_say_what_to_do():
    with pytest.raises(ValidationError, match="choose one of"):
        SteeringConfig([SteerFeature(0, 1.0)], method="add")
    with pytest.raises(ValidationError, match="0..63"):
        Steerer(SteeringConfig([SteerFeature(64, 1.0)]), TinySAE())
    assert SteeringConfig.from_dict(SteeringConfig([SteerFeature(3, -2.0)]).to_dict()).features[0].strength == -2.0
