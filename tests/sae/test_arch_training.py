"""Every architecture of the registry trains through the one trainer: loss falls, resume equals uninterrupted,
JumpReLU lands near its target L0, Matryoshka's first prefix reconstructs alone, bad configs are refused first."""
import pytest
import torch

from mistudio_core.platform.errors import ValidationError
from mistudio_core.sae.architectures import REGISTRY
from mistudio_core.jobs.checkpoint import load_checkpoint, save_checkpoint
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.train_config import TrainConfig
from mistudio_core.sae.trainer import train_saes
from tests.sae_synthetic import PlantedDictionary
from tests.sae_synthetic import one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

IN, OUT = "blocks.0.hook_mlp_in", "blocks.0.hook_mlp_out"
DATA = PlantedDictionary(d_in=32, n_features=128, active=4, mean_norm=2.0)
MIX = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(5)))[0] * 1.7
"""The synthetic 'MLP': out = in·MIX, a map a transcoder can learn and an SAE of `in` does not reproduce."""

KINDS = {
    "topk": dict(architecture="topk"),
    "batchtopk": dict(architecture="batchtopk"),
    "matryoshka": dict(architecture="matryoshka_batchtopk", matryoshka_prefixes=[16, 64]),
    "jumprelu": dict(architecture="jumprelu"),
    "standard": dict(architecture="standard", l1_coefficient=0.5),
    "transcoder": dict(architecture="batchtopk", hook_out="hook_mlp_out"),
    "skip_transcoder": dict(architecture="jumprelu", hook_out=OUT, skip_transcoder=True),
}


def stream(start: int = 0):
    b = start
    while True:
        x = DATA.batch(b, 256)
        yield {IN: x, OUT: x @ MIX}
        b += 1


def _cfg(kind: str, **kw) -> TrainConfig:
    base = dict(d_sae=128, k=4, steps=60, batch_tokens=256, lr=3e-3, metrics_every=5, lr_decay_steps=10)
    return TrainConfig.of(**{**base, **KINDS[kind], **kw})


def test_registry_has_every_trainable_architecture():
    assert {"standard", "topk", "batchtopk", "matryoshka_batchtopk", "jumprelu"} <= set(REGISTRY)
    assert REGISTRY["matryoshka_batchtopk"].saved_as == REGISTRY["batchtopk"].saved_as == "jumprelu"


@pytest.mark.parametrize("kind", KINDS)
def test_each_architecture_reduces_its_loss(kind):
    tcfg, rows = _cfg(kind, steps=150 if kind == "transcoder" else 100), []  # a transcoder starts tied: slower
    sae = train_saes(stream, [tcfg.sae_config(32, IN)], tcfg, on_metrics=rows.append)[0]
    first, last = rows[0], rows[-1]
    assert last["mse"] < 0.7 * first["mse"] and last["explained_variance"] > 0.3, (first, last)
    if tcfg.sae.hook_out:  # scored against the output hook, and it learnt the map rather than copying its input
        assert sae.cfg.hook_name_out == OUT and sae.cfg.d_out == 32
        x = DATA.batch(999, 512)
        with torch.no_grad():
            y_hat = sae(x)
        assert (y_hat - x @ MIX).pow(2).sum() < 0.5 * (y_hat - x).pow(2).sum()


@pytest.mark.parametrize("kind", ["matryoshka", "jumprelu", "skip_transcoder"])
def test_resume_equals_uninterrupted(tmp_path, kind):
    tcfg = _cfg(kind, steps=30)
    cfg = tcfg.sae_config(32, IN)
    full = train_saes(stream, [cfg], tcfg)[0]
    calls = iter(range(100))
    train_saes(stream, [cfg], tcfg, should_stop=lambda: next(calls) >= 12,
               checkpoint=lambda t, st: save_checkpoint(tmp_path / "c", t, st))
    tensors, state = load_checkpoint(tmp_path / "c")
    assert state["step"] == 12
    resumed = train_saes(stream, [cfg], tcfg, resume_from=(tensors, state))[0]
    for name, p in full.named_parameters():
        torch.testing.assert_close(dict(resumed.named_parameters())[name], p, atol=1e-6, rtol=0, msg=name)
    for name, b in full.named_buffers():
        torch.testing.assert_close(dict(resumed.named_buffers())[name], b, atol=1e-6, rtol=0, msg=name)


def test_jumprelu_lands_near_its_target_l0():
    for target in (3, 12):
        tcfg, rows = _cfg("jumprelu", target_l0=target, steps=150, lr_decay_steps=0), []
        train_saes(stream, [tcfg.sae_config(32, IN)], tcfg, on_metrics=rows.append)
        l0 = sum(r["l0"] for r in rows[-5:]) / 5
        assert target / 2 < l0 < target * 2, (target, l0)


def test_matryoshka_first_prefix_reconstructs_on_its_own():
    """Only the first 16 latents kept: Matryoshka trained that prefix to reconstruct; BatchTopK did not."""
    x = DATA.batch(999, 1024)
    err = {}
    for kind in ("matryoshka", "batchtopk"):
        tcfg = _cfg(kind, steps=120, matryoshka_prefixes=[16, 64] if kind == "matryoshka" else None)
        sae = train_saes(stream, [tcfg.sae_config(32, IN)], tcfg)[0]
        with torch.no_grad():
            z = sae.encode(x)
            z[:, 16:] = 0
            err[kind] = float((sae.decode(z) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert err["matryoshka"] < 0.9 * err["batchtopk"], err


@pytest.mark.parametrize("bad, match", [
    (dict(architecture="jumprelu", target_l0=0), "target_l0 must be a number > 0"),
    (dict(architecture="jumprelu", target_l0=-4), "target_l0 must be a number > 0"),
    (dict(architecture="matryoshka_batchtopk", d_sae=64, matryoshka_prefixes=[32, 16]), "strictly increase"),
    (dict(architecture="matryoshka_batchtopk", d_sae=64, matryoshka_prefixes=[16, 65]), "below the width"),
    (dict(architecture="topk", matryoshka_prefixes=[16]), "for architecture matryoshka_batchtopk"),
    (dict(architecture="topk", hook_out="mlp_out"), "is not a hook name"),
    (dict(architecture="topk", skip_transcoder=True), "needs hook_out"),
])
def test_bad_train_configs_are_refused_with_the_fix(bad, match):
    with pytest.raises(ValidationError, match=match):
        TrainConfig.of(**bad)


def test_matryoshka_prefixes_past_a_derived_width_are_refused():
    tcfg = TrainConfig.of(architecture="matryoshka_batchtopk", expansion_factor=2, matryoshka_prefixes=[16, 80])
    with pytest.raises(ValidationError, match="below the width d_sae=64"):
        tcfg.sae_config(32, IN)


def test_transcoder_hooks_of_different_widths_or_models_are_refused():
    with pytest.raises(ValidationError, match="same width"):
        SAEConfig("topk", 32, 64, k=4, d_out=48, apply_b_dec_to_input=False,
                  metadata=dict(hook_name=IN, hook_name_out=OUT))
    from mistudio_core.sae.architectures.transcoder import check_hooks
    from tests.tiny_models import tiny_model

    model = tiny_model("llama")  # 3 layers, d_model 32
    ok = _cfg("transcoder").sae_config(32, "blocks.1.hook_mlp_in", model_name="tiny")
    check_hooks(model, [ok], "tiny")
    far = SAEConfig(**{**ok.to_dict(), "metadata": {**ok.metadata, "hook_name_out": "blocks.7.hook_mlp_out"}})
    with pytest.raises(ValidationError, match="does not belong to this model"):
        check_hooks(model, [far], "tiny")
    other = SAEConfig(**{**ok.to_dict(), "metadata": {**ok.metadata, "model_name_out": "gpt2"}})
    with pytest.raises(ValidationError, match="both hooks must belong to one model"):
        check_hooks(model, [other], "tiny")
    wide = _cfg("transcoder").sae_config(48, "blocks.1.hook_mlp_in")
    with pytest.raises(ValidationError, match="width 32"):
        check_hooks(model, [wide], "tiny")
