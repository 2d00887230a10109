"""Trainer: resume equals uninterrupted, several SAEs from one stream, metrics, cancel, ground truth recovery."""
import time

import pytest
import torch

from mistudio_core.platform.errors import ValidationError
from mistudio_core.jobs.checkpoint import load_checkpoint, save_checkpoint
from mistudio_core.sae.train_config import TrainConfig
from mistudio_core.sae.trainer import train_saes
from tests.sae_synthetic import PlantedDictionary
from tests.sae_synthetic import one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

HOOK = "blocks.0.hook_resid_post"


def _cfg(**kw):
    base = dict(architecture="topk", d_sae=128, k=8, steps=40, batch_tokens=256, lr=1e-3, metrics_every=5,
                dead_feature_window=512, lr_decay_steps=10)
    return TrainConfig.of(**{**base, **kw})


@pytest.mark.parametrize("arch", ["topk", "standard", "batchtopk"])
def test_resume_gives_the_same_weights_as_uninterrupted(tmp_path, arch):
    data = PlantedDictionary(d_in=32, n_features=64, mean_norm=3.0)
    full_cfg = _cfg(architecture=arch)
    sae_cfg = full_cfg.sae_config(32, HOOK)
    full = train_saes(data.stream(HOOK, 256), [sae_cfg], full_cfg)[0]

    calls = iter(range(100))

    def stop_at_20():  # checked before each step: stops before step 20
        return next(calls) >= 20

    first = train_saes(data.stream(HOOK, 256), [sae_cfg], full_cfg, should_stop=stop_at_20,
                       checkpoint=lambda t, st: save_checkpoint(tmp_path / "ckpt", t, st))[0]
    tensors, state = load_checkpoint(tmp_path / "ckpt")
    assert state["step"] == 20 and not torch.equal(first.W_dec, full.W_dec)
    resumed = train_saes(data.stream(HOOK, 256), [sae_cfg], full_cfg, resume_from=(tensors, state))[0]
    for name, p in full.named_parameters():
        torch.testing.assert_close(dict(resumed.named_parameters())[name], p, atol=1e-6, rtol=0, msg=name)
    torch.testing.assert_close(resumed.norm_scale, full.norm_scale)


def test_two_hooks_two_configs_one_stream_with_metrics():
    a, b = PlantedDictionary(d_in=32, seed=1), PlantedDictionary(d_in=48, seed=2)

    def stream(start):
        i = start
        while True:
            yield {"h.a": a.batch(i, 256), "h.b": b.batch(i, 256)}
            i += 1

    tcfg = _cfg(steps=20)
    configs = [tcfg.sae_config(32, "h.a"), TrainConfig.of(**{**tcfg.to_dict(), "architecture": "standard"})
               .sae_config(48, "h.b")]
    rows = []
    saes = train_saes(stream, configs, tcfg, on_metrics=rows.append)
    assert [s.cfg.d_in for s in saes] == [32, 48]
    assert {r["sae"] for r in rows} == {0, 1} and rows[-1]["step"] == 20
    for key in ("loss", "mse", "l1", "l0", "explained_variance", "dead_fraction", "lr", "tokens_per_s"):
        assert key in rows[-1]
    topk_rows = [r for r in rows if r["sae"] == 0]
    assert topk_rows[-1]["explained_variance"] > topk_rows[0]["explained_variance"]
    assert topk_rows[-1]["l0"] <= 8


def test_wrong_hook_names_the_available_ones():
    data = PlantedDictionary(d_in=32)
    tcfg = _cfg(steps=2, lr_decay_steps=0)
    with pytest.raises(ValidationError, match="h.x"):
        train_saes(data.stream("h.x", 64), [tcfg.sae_config(32, "h.y")], tcfg)
    with pytest.raises(ValidationError, match="width 32"):
        train_saes(data.stream("h.x", 64), [tcfg.sae_config(16, "h.x")], tcfg)


def test_topk_recovers_planted_dictionary():
    """d_in 64, 256 planted unit directions, 4 active per sample: ≥ 90% recovered at decoder cosine ≥ 0.9."""
    torch.manual_seed(0)
    data = PlantedDictionary(d_in=64, n_features=256, active=4, noise=0.01)
    tcfg = TrainConfig.of(architecture="topk", d_sae=512, k=4, steps=400, batch_tokens=1024, lr=4e-3,
                       lr_decay_steps=100, dead_feature_window=4096, metrics_every=100, b_dec_init="zeros",
                       normalize_activations="none")
    t0 = time.perf_counter()
    sae = train_saes(data.stream(HOOK, 1024), [tcfg.sae_config(64, HOOK)], tcfg)[0]
    elapsed = time.perf_counter() - t0
    cos = data.directions @ (sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)).detach().t()
    recovered = float((cos.max(dim=1).values >= 0.9).float().mean())
    print(f"planted directions recovered at cos>=0.9: {recovered:.3f} in {elapsed:.1f}s")
    assert recovered >= 0.9
