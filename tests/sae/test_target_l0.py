"""Target-L0 mode for standard SAEs (λ found during warm-up) and the dead-latent window that scales with the run."""
import pytest
import torch

from mistudio_core.platform.errors import ValidationError
from mistudio_core.sae.train_config import TrainConfig
from mistudio_core.sae.trainer import train_saes
from tests.sae_synthetic import PlantedDictionary
from tests.sae_synthetic import one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def test_standard_sae_with_target_l0_40_lands_within_25_percent():
    data = PlantedDictionary(d_in=64, n_features=512, active=12, seed=3)
    tcfg = TrainConfig.of(architecture="standard", d_sae=512, target_l0=40, steps=300, batch_tokens=512, lr=1e-3,
                       lr_decay_steps=60, metrics_every=50)
    rows = []
    sae = train_saes(data.stream("h", 512), [tcfg.sae_config(64, "h")], tcfg, on_metrics=rows.append)[0]
    with torch.no_grad():
        l0 = float((sae.encode(data.batch(10_000, 4096)) > 0).float().sum(-1).mean())  # fresh data
    assert 30 <= l0 <= 50, f"L0 {l0:.1f} is not within 25% of 40"
    assert rows[0]["l1_coefficient"] == 2.0 and rows[-1]["l1_coefficient"] != 2.0  # λ moved, reported per row


def test_target_l0_is_for_standard_saes_only():
    with pytest.raises(ValidationError, match="target_l0 is for standard"):
        TrainConfig.of(architecture="topk", target_l0=40)


def test_dead_window_scales_with_short_runs_and_caps_at_a_million():
    assert TrainConfig.of(steps=200, batch_tokens=4096).optim.dead_window == 200 * 4096 // 4  # short runs see dead
    assert TrainConfig.of(steps=30_000, batch_tokens=4096).optim.dead_window == 1_000_000
    assert TrainConfig.of(steps=10, dead_feature_window=777).optim.dead_window == 777


def test_first_row_comes_after_the_first_step_then_on_time(monkeypatch):
    from mistudio_core.sae import trainer

    data = PlantedDictionary(d_in=16, n_features=32)
    tcfg = TrainConfig.of(d_sae=32, k=4, steps=6, batch_tokens=64, metrics_every=100)
    rows = []
    train_saes(data.stream("h", 64), [tcfg.sae_config(16, "h")], tcfg, on_metrics=rows.append)
    assert [r["step"] for r in rows] == [1, 6]  # a live chart has a point after step 1, not after 100
    monkeypatch.setattr(trainer, "REPORT_SECONDS", 0.0)  # a slow run: a row whenever the interval passed
    rows.clear()
    train_saes(data.stream("h", 64), [tcfg.sae_config(16, "h")], tcfg, on_metrics=rows.append)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
