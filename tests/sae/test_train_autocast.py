"""TrainConfig.autocast / tf32: mixed-precision SAE training keeps fp32 parameters and lands where fp32 training
lands on a small planted-dictionary problem; the options are validated, exposed as CLI flags and recorded."""
from __future__ import annotations

import argparse

import pytest
import torch

from mistudio_core.platform.errors import ValidationError
from mistudio_core.sae.train_config import TrainConfig
from mistudio_core.sae.metrics import explained_variance
from mistudio_core.sae.trainer import train_saes
from sae_synthetic import one_thread  # noqa: F401  (fixture)

D_IN, BATCH = 32, 512


pytestmark = pytest.mark.usefixtures("one_thread")  # sae_synthetic's: one thread is steady on a shared box


def batch(step: int, device="cpu") -> torch.Tensor:
    """Sparse combinations of 48 fixed directions plus a little noise: a dictionary an SAE can find."""
    g = torch.Generator().manual_seed(100 + step)
    basis = torch.randn(48, D_IN, generator=torch.Generator().manual_seed(3))
    codes = torch.rand(BATCH, 48, generator=g) * (torch.rand(BATCH, 48, generator=g) < 0.08)
    return (codes @ basis + 0.3 + 0.01 * torch.randn(BATCH, D_IN, generator=g)).to(device)


def train(architecture="topk", device="cpu", steps=100, **kw):
    tcfg = TrainConfig.of(architecture=architecture, k=6, d_sae=128, batch_tokens=BATCH, steps=steps, lr=3e-3,
                       l1_coefficient=0.5, metrics_every=10, **kw)
    rows = []
    stream = lambda start: ({"h": batch(s, device)} for s in range(start, 10**9))  # noqa: E731
    sae = train_saes(stream, [tcfg.sae_config(D_IN, "h")], tcfg, on_metrics=rows.append)[0]
    x = batch(10**6, device)  # a batch no step trained on
    with torch.no_grad():
        ev = float(explained_variance(x, sae(x)))
    return sae, rows, ev


@pytest.mark.parametrize("architecture", ["topk", "standard"])
def test_bf16_autocast_training_matches_fp32_on_cpu(architecture):
    ref, _, ev32 = train(architecture)
    sae, rows, ev16 = train(architecture, autocast="bf16")
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert {p.dtype for p in sae.parameters()} == {torch.float32}  # parameters (and Adam) stay fp32
    assert ev32 > 0.6, ev32  # the problem is learnable, so "close" means something
    assert abs(ev16 - ev32) < 0.03, (ev32, ev16)
    assert not torch.equal(sae.W_enc, ref.W_enc)  # bf16 products really ran: not bit-identical to fp32
    assert sae.cfg.metadata["train_autocast"] == "bf16"
    assert sae.train_summary["train_config"]["runtime"]["autocast"] == "bf16"


def test_tf32_is_on_during_training_and_restored_after():
    seen = []
    tcfg = TrainConfig.of(architecture="topk", k=4, d_sae=64, batch_tokens=BATCH, steps=3, tf32=True)
    before = torch.backends.cuda.matmul.allow_tf32
    stream = lambda start: ({"h": batch(s)} for s in range(start, 10**9))  # noqa: E731
    train_saes(stream, [tcfg.sae_config(D_IN, "h")], tcfg,
               on_metrics=lambda row: seen.append(torch.backends.cuda.matmul.allow_tf32))
    assert seen and all(seen)
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_bad_autocast_settings_are_refused_naming_the_fix():
    with pytest.raises(ValidationError, match="use one of"):
        TrainConfig.of(autocast="fp8")
    with pytest.raises(ValidationError, match="set dtype float32 or autocast off"):
        TrainConfig.of(autocast="bf16", dtype="bfloat16")
    assert "train_autocast" not in TrainConfig().sae_config(16, "h").metadata  # default SAEs unchanged


def test_cli_flags_reach_the_train_config(real_store):
    from mistudio_core.cli.train import register, train_spec

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--preset", "quick", "--autocast", "bf16", "--tf32", "true", "--steps", "50"])
    args.store = real_store
    tcfg = train_spec(args)["train"]
    assert (tcfg["runtime"]["autocast"], tcfg["runtime"]["tf32"], tcfg["optim"]["steps"]) == ("bf16", True, 50)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bf16 autocast + TF32 on the device)")
def test_bf16_autocast_and_tf32_training_on_cuda():
    _, _, ev32 = train(device="cuda")
    sae, rows, ev16 = train(device="cuda", autocast="bf16", tf32=True)
    assert sae.W_enc.is_cuda and sae.W_enc.dtype == torch.float32
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert abs(ev16 - ev32) < 0.03, (ev32, ev16)


def test_training_form_advanced_precision_reaches_the_job(tmp_path):
    from mistudio_core.jobs import JobRegistry
    from pages import training
    from pages.context import AppContext
    from test_jobs_train import HOOK, make_train_home

    store = make_train_home(tmp_path)
    ctx = AppContext(store=store, jobs=JobRegistry(store), allowed_roots=[store.home])
    form = dict(architecture="topk", expansion_factor=2, d_sae=64, k=4, l1_coefficient=5.0, lr=1e-3, batch_tokens=64,
                steps=12, lr_warmup_steps=0, seed=0, lr_decay_steps=0, target_l0=0, cache_mode="off",
                cache_dtype="bfloat16", cache_tokens=0)
    from pages.training_form import CACHE_FORM, FORM

    values = [form[k] for k in FORM + CACHE_FORM]
    assert training.start(ctx, "tiny-ds", "tiny-llama", [HOOK], "mixed", *values, [], "bf16", True)[0].startswith("✓")
    assert training.start(ctx, "tiny-ds", "tiny-llama", [HOOK], "older-caller", *values)[0].startswith("✓")
    specs = {r["name"]: r["spec"]["train"] for r in ctx.jobs.list("train")}
    assert (specs["mixed"]["runtime"]["autocast"], specs["mixed"]["runtime"]["tf32"]) == ("bf16", True)
    assert (specs["older-caller"]["runtime"]["autocast"], specs["older-caller"]["runtime"]["tf32"]) == ("off", False)
