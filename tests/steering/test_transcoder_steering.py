"""Steering with a transcoder (reads blocks.1.hook_mlp_in, writes blocks.1.hook_mlp_out) on a tiny Llama: every
write lands at the output hook, every activation is the encoding of the input hook of the same forward pass."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.model.hooks import capture, intervene
from mistudio_core.platform.errors import ValidationError
from mistudio_core.sae.model import SAE
from mistudio_core.sae.train_config import TrainConfig
from mistudio_core.steering.methods import Steerer, SteerFeature, SteeringConfig
from mistudio_core.steering.transcoder import read_hook, steer
from steering_helpers import llama

IN, OUT = "blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"


def transcoder(skip: bool = False) -> SAE:
    """A random ReLU transcoder whose encoder reads the MLP input (unit decoder rows; biases so features fire)."""
    cfg = TrainConfig.of(architecture="standard", d_sae=64, hook_out="hook_mlp_out", skip_transcoder=skip)
    sae = SAE(cfg.sae_config(32, IN), seed=1)
    with torch.no_grad():
        sae.W_dec.mul_(10.0)                     # unit rows (standard init: 0.1)
        sae.W_enc.mul_(10.0)
        sae.b_enc.fill_(0.1)
        if skip:
            sae.W_skip.normal_(0.0, 0.1)
    return sae.eval()


def _ids(n=7, seed=0):
    return torch.randint(3, 256, (2, n), generator=torch.Generator().manual_seed(seed))


def _run(model, ids, steerer):
    """Both hooks' activations of one forward pass with `steerer` installed (the captures run after it)."""
    seen = {}
    with steer(model, OUT, steerer), intervene(model, IN, lambda a: seen.setdefault(IN, a.clone())), \
            intervene(model, OUT, lambda a: seen.setdefault(OUT, a.clone())), torch.no_grad():
        model(input_ids=ids)
    return seen


@pytest.fixture(scope="module")
def tiny():
    model, sae, ids = llama(), transcoder(skip=True), _ids()
    base = capture(model, ids, [IN, OUT])
    with torch.no_grad():
        a = sae.encode(base[IN])                 # a_f(x_in): the transcoder's activations, read at its input
    f = int(a.mean((0, 1)).argmax())             # a feature that fires on this text
    assert (a[..., f] > 0).float().mean() > 0.5
    return model, sae, ids, base, a, f


def test_additive_writes_exactly_c_times_w_dec_at_the_output_and_leaves_the_input_alone(tiny):
    model, sae, ids, base, a, f = tiny
    st = Steerer(SteeringConfig([SteerFeature(f, 3.0)]), sae)
    seen = _run(model, ids, st)
    torch.testing.assert_close(seen[IN], base[IN], atol=0, rtol=0)
    torch.testing.assert_close(seen[OUT] - base[OUT], (3.0 * sae.W_dec[f]).expand_as(base[OUT]).detach(),
                               atol=1e-5, rtol=0)
    # The readout: the input's encoding of the same pass plus the code the step wrote (+3), not encode(output).
    assert st.steered_means()[0][f] == pytest.approx(float(a[0, :, f].mean()) + 3.0, abs=1e-4)
    wrong = float(sae.encode(seen[OUT][0]).detach()[:, f].mean())
    assert abs(wrong - st.steered_means()[0][f]) > 0.1


@pytest.mark.parametrize("method", ["clamp", "clamp_exact"])
def test_clamp_sets_the_activation_read_at_the_input_hook(tiny, method):
    model, sae, ids, base, a, f = tiny
    c = 2.5
    st = Steerer(SteeringConfig([SteerFeature(f, c)], method=method), sae)
    seen = _run(model, ids, st)
    expected = (c - a[..., f])[..., None] * sae.W_dec[f].detach()      # (c − a_f(x_in))·W_dec[f] at every position
    torch.testing.assert_close(seen[OUT] - base[OUT], expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(seen[IN], base[IN], atol=0, rtol=0)
    assert [m[f] for m in st.steered_means()] == pytest.approx([c, c], abs=1e-4)
    # Clamp to 0 removes exactly the feature's own term from the output (the skip term and the rest stay).
    zero = _run(model, ids, Steerer(SteeringConfig([SteerFeature(f, 0.0)], method=method), sae))
    torch.testing.assert_close(zero[OUT] - base[OUT], -a[..., f, None] * sae.W_dec[f].detach(), atol=1e-5, rtol=1e-4)


def test_the_other_directions_are_written_at_the_output_hook(tiny):
    model, sae, ids, base, _, f = tiny
    v = sae.W_dec[f].detach()
    u = v / v.norm()
    seen = _run(model, ids, Steerer(SteeringConfig([SteerFeature(f, 0.0)], method="orthogonal"), sae))
    proj = (base[OUT] * u).sum(-1, keepdim=True)
    torch.testing.assert_close(seen[OUT], base[OUT] - proj * u, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(seen[IN], base[IN], atol=0, rtol=0)


def test_generated_positions_and_baseline_rows_read_the_input_of_their_own_positions():
    """Called as the hooks call it (input first, then output): a KV-cache step steers its one position with its own
    input; the unsteered baseline row writes nothing and reports its input's encoding."""
    sae = transcoder()
    g = torch.Generator().manual_seed(4)
    x, h = torch.randn(2, 5, 32, generator=g), torch.randn(2, 5, 32, generator=g)
    st = Steerer(SteeringConfig([SteerFeature(7, 1.5)], method="clamp", positions="generated"), sae, prompt_len=4,
                 rows=torch.tensor([False, True]))
    st.see_input(x[:, :4])
    torch.testing.assert_close(st(h[:, :4]), h[:, :4], atol=0, rtol=0)     # the prompt: untouched
    st.see_input(x[:, 4:])
    out = st(h[:, 4:])                                                       # the first generated position
    with torch.no_grad():
        a = sae.encode(x[:, 4:])[..., 7]
    torch.testing.assert_close(out[0], h[0, 4:], atol=0, rtol=0)
    torch.testing.assert_close(out[1] - h[1, 4:], ((1.5 - a[1])[:, None] * sae.W_dec[7]).detach(), atol=1e-5,
                               rtol=1e-4)
    means = st.steered_means()
    assert means[0][7] == pytest.approx(float(a[0, 0]), abs=1e-5) and means[1][7] == pytest.approx(1.5, abs=1e-5)
    with pytest.raises(ValidationError, match="input hook"):               # the input is taken once per pass
        st(h[:, 4:])


def test_a_transcoder_steerer_without_its_input_or_at_the_wrong_hook_is_refused(tiny):
    model, sae, ids, *_ = tiny
    st = Steerer(SteeringConfig([SteerFeature(1, 1.0)], method="clamp"), sae)
    with pytest.raises(ValidationError, match="read at its input hook.*transcoder.steer"):
        with intervene(model, OUT, st), torch.no_grad():   # no capture of the input: never encode the output
            model(input_ids=ids)
    with pytest.raises(ValidationError, match=f"writes {OUT}.*steer there, not at {IN}"):
        read_hook(sae, IN)
    with pytest.raises(ValidationError, match="Feature 64 does not exist: this SAE has features 0..63"):
        Steerer(SteeringConfig([SteerFeature(64, 1.0)]), sae)


def test_a_registered_transcoder_steers_through_load_target_and_the_sweep(store, tmp_path):
    from mistudio_core.model.models import add_local_model, clear_cache
    from mistudio_core.sae.library import register_sae
    from mistudio_core.steering.concept import prompt_means
    from mistudio_core.steering.generate import SamplingConfig, compare, encode_prompt
    from mistudio_core.steering.loader import load_target
    from mistudio_core.steering.sweep import score_continuation, sweep
    from tiny_models import save_tiny_model

    save_tiny_model("llama", tmp_path / "llama-tiny")
    model_id = add_local_model(store, tmp_path / "llama-tiny", name="llama-tiny")["id"]
    sae_id = register_sae(store, transcoder(skip=True), "tc", provenance={"model_id": model_id, "hook_name": IN})["id"]
    try:
        t = load_target(store, sae_id)
        assert (t.hook_name, t.read_hook) == (OUT, IN)
        s = SamplingConfig(max_new_tokens=8, temperature=0.8, seed=3, stop_at_eos=False)
        prompt = "the cat sat on the mat"
        res = sweep(t.model, t.tokenizer, t.sae, t.hook_name, prompt, SteeringConfig([SteerFeature(5, 1.0)]),
                    [0.0, 60.0], s)
        zero, big = res["rows"]
        assert zero["text"] == res["baseline"]["text"] and big["text"] != res["baseline"]["text"]
        assert big["capability_ppl"] != res["baseline"]["capability_ppl"]
        # The sweep's reading of a text (score_continuation) is the input hook's encoding over the generated tokens.
        ids, gen = encode_prompt(t.tokenizer, prompt), [40, 41, 42, 43]
        x = capture(t.model, torch.tensor([ids + gen]), [IN])[IN][0, len(ids):]
        read = score_continuation(t.model, t.sae, t.hook_name, ids, gen, [5])
        assert read["feature_mean"][5] == pytest.approx(float(t.sae.encode(x).detach()[:, 5].mean()), abs=1e-5)
        r = compare(t.model, t.tokenizer, t.sae, t.hook_name, prompt,
                    SteeringConfig([SteerFeature(5, 4.0)], method="clamp"), s)
        assert r["steered_feature_mean"][5] == pytest.approx(4.0, abs=1e-4)
        # A concept's codes are the input's encoding too (its activation mean is the output hook's).
        acts, codes = prompt_means(t.model, t.tokenizer, t.sae, OUT, [prompt])
        got = capture(t.model, torch.tensor([ids]), [IN, OUT])
        torch.testing.assert_close(acts[0], got[OUT][0, 1:].mean(0), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(codes[0], t.sae.encode(got[IN][0, 1:]).mean(0), atol=1e-5, rtol=1e-4)
    finally:
        clear_cache()
