"""SAE math: sparse TopK/BatchTopK gradients equal the dense ones; inference per architecture; folding."""
import pytest
import torch

from mistudio_core.platform.errors import ValidationError
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.train_config import TrainConfig
from mistudio_core.sae.model import SAE
from tests.sae_synthetic import one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def _dense_topk_loss(sae, x, k, dead=None, aux_k=0, alpha=0.0, batch=False):
    xc = x - sae.b_dec
    pre = xc @ sae.W_enc + sae.b_enc
    if batch:
        r = pre.relu().flatten()
        v, i = r.topk(k * x.shape[0])
        z = torch.zeros_like(r).scatter(0, i, v).view_as(pre)
    else:
        v, i = pre.topk(k, dim=1)
        z = torch.zeros_like(pre).scatter(1, i, v.relu())
    x_hat = z @ sae.W_dec + sae.b_dec
    loss = (x_hat - x).pow(2).sum(-1).mean()
    if dead is not None:
        e = (x - x_hat).detach()
        v2, i2 = pre.masked_fill(~dead, float("-inf")).topk(aux_k, dim=1)
        e_hat = torch.zeros_like(pre).scatter(1, i2, v2.relu()) @ sae.W_dec
        loss = loss + alpha * (e_hat - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum()
    return loss


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_sparse_gradients_match_dense_autograd(arch):
    torch.manual_seed(0)
    sae = SAE(SAEConfig(arch, 16, 64, k=4, dtype="float64"), seed=1)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_()
    x = torch.randn(32, 16, dtype=torch.float64)
    dead = (torch.arange(64) % 3 == 0) if arch == "topk" else None
    out = sae.training_losses(x, dead=dead, aux_k=5, aux_coefficient=0.5)
    out["loss"].backward()
    sparse = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    _dense_topk_loss(sae, x, 4, dead, 5, 0.5, batch=arch == "batchtopk").backward()
    for name, p in sae.named_parameters():
        torch.testing.assert_close(sparse[name], p.grad, atol=1e-10, rtol=1e-8, msg=name)
    assert out["l0"] == 4


def test_inference_per_architecture():
    x = torch.randn(10, 8)
    topk = SAE(SAEConfig("topk", 8, 32, k=3), seed=0)
    assert ((topk.encode(x) > 0).sum(-1) <= 3).all()
    std = SAE(SAEConfig("standard", 8, 32), seed=0)
    assert (std.encode(x) >= 0).all() and (std.encode(x) > 0).sum() > 3 * 10
    jr = SAE(SAEConfig("jumprelu", 8, 32), seed=0)
    with torch.no_grad():
        jr.threshold.fill_(0.5)
    z, pre = jr.encode(x), jr.pre_acts(x)
    assert torch.equal(z > 0, pre > 0.5)


def test_fold_normalisation_keeps_outputs_on_raw_activations():
    sae = SAE(SAEConfig("topk", 8, 32, k=4, normalize_activations="expected_average_only_in"), seed=0)
    with torch.no_grad():
        sae.norm_scale.fill_(3.7)
        sae.b_dec.normal_()
    x = torch.randn(20, 8) * 5
    folded = sae.folded()
    assert folded.cfg.normalize_activations == "none" and float(folded.norm_scale) == 1.0
    torch.testing.assert_close(folded(x), sae(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded.encode(x), sae.encode(x), atol=1e-5, rtol=1e-5)


def test_configs_validate_with_fixes():
    with pytest.raises(ValidationError, match="k"):
        SAEConfig("topk", 8, 32)
    with pytest.raises(ValidationError, match="Cannot train"):
        TrainConfig.of(architecture="gated")
    with pytest.raises(ValidationError, match="steps or tokens"):
        TrainConfig.of(steps=10, tokens=100)
    with pytest.raises(ValidationError, match="exceed"):
        TrainConfig.of(steps=10, lr_warmup_steps=8, lr_decay_steps=8)
    t = TrainConfig.of(tokens=10_000, batch_tokens=4096, lr_warmup_steps=1, lr_decay_steps=1)
    assert t.optim.total_steps == 3 and t.optim.lr_at(2) < t.optim.lr and t.optim.lr_at(1) == t.optim.lr
    assert TrainConfig.from_dict(t.to_dict()) == t
    assert t.sae_config(576, "blocks.8.hook_resid_post").d_sae == 8 * 576


def test_blocked_topk_selects_exactly_the_k_largest():
    from mistudio_core.sae import kernels
    torch.manual_seed(0)
    pre = torch.randn(50, 32 * 16)
    pre[:5] = 0.0  # ties everywhere: any k of them is a valid answer
    pre[5:10, :40] = 7.0  # the k largest crowd into two blocks
    rows, cols, vals = kernels.select_topk(pre, 8)
    assert torch.equal(rows, torch.arange(50).repeat_interleave(8))
    assert torch.equal(pre[rows, cols], vals)
    got = vals.view(50, 8).sort(1, descending=True).values
    torch.testing.assert_close(got, pre.topk(8, dim=1).values)
    assert all(len(set(c.tolist())) == 8 for c in cols.view(50, 8))  # no latent picked twice


def _dense_standard_loss(sae, x, l1):
    xc = x - sae.b_dec if sae.cfg.apply_b_dec_to_input else x
    z = torch.relu(xc @ sae.W_enc + sae.b_enc)
    return ((z @ sae.W_dec + sae.b_dec) - x).pow(2).sum(-1).mean() + l1 * (z * sae.W_dec.norm(dim=1)).sum(-1).mean()


@pytest.mark.parametrize("density", [0.0, 1.0])  # 0: dense kernel; 1: pair lists for any density
@pytest.mark.parametrize("b_dec_in", [True, False])
def test_standard_kernels_match_dense_autograd(monkeypatch, density, b_dec_in):
    from mistudio_core.sae import kernels
    monkeypatch.setattr(kernels, "SPARSE_DENSITY", density)
    torch.manual_seed(0)
    sae = SAE(SAEConfig("standard", 16, 96, dtype="float64", apply_b_dec_to_input=b_dec_in), seed=1)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(-0.5, 0.5)
        sae.W_dec.mul_(torch.rand(96, 1, dtype=torch.float64) + 0.5)  # rows of unequal norm: the L1 sees them
    x = torch.randn(40, 16, dtype=torch.float64)
    out = sae.training_losses(x, l1_coefficient=0.3)
    out["loss"].backward()
    fast = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    ref = _dense_standard_loss(sae, x, 0.3)
    ref.backward()
    torch.testing.assert_close(out["loss"].detach(), ref.detach())
    for name, p in sae.named_parameters():
        torch.testing.assert_close(fast[name], p.grad, atol=1e-10, rtol=1e-8, msg=name)
    assert float(out["l0"]) == pytest.approx(float((sae.encode(x) > 0).sum(-1).double().mean()))


def test_topk_kernels_match_dense_autograd_at_blocked_width():
    torch.manual_seed(0)
    sae = SAE(SAEConfig("topk", 24, 32 * 12, k=5, dtype="float64"), seed=2)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_()
    x = torch.randn(64, 24, dtype=torch.float64)
    dead = torch.arange(32 * 12) % 5 == 0
    sae.training_losses(x, dead=dead, aux_k=7, aux_coefficient=0.25)["loss"].backward()
    fast = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    _dense_topk_loss(sae, x, 5, dead, 7, 0.25).backward()
    for name, p in sae.named_parameters():
        torch.testing.assert_close(fast[name], p.grad, atol=1e-10, rtol=1e-8, msg=name)
    pre = sae.pre_acts(x)
    v, i = pre.topk(5, dim=1)
    torch.testing.assert_close(sae.encode(x), torch.zeros_like(pre).scatter(1, i, v.relu()))
