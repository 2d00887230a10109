"""jumprelu trained directly (Rajamanoharan et al. 2024, with Gemma Scope 2's quadratic L0 penalty as SAELens's
`jumprelu_sparsity_loss_mode="quadratic"`): z_i = pre_i·[pre_i > θ_i] with a trained threshold θ ≥ 0, and

    loss = ‖x − x̂‖² + c·mean_b 2/T·(L0_b − T)²,    L0_b = Σ_i [pre_bi > θ_i],  T = target_l0 (or k)

The step function has no gradient; θ gets the straight-through estimate with a rectangle kernel of width ε
(`jumprelu_bandwidth`): ∂[pre > θ]/∂θ ≈ −(1/ε)·[|pre − θ| < ε/2], so ∂loss/∂θ_i = Σ_b over the band of
−(θ_i/ε)·∂mse/∂z_bi − (1/ε)·c·∂penalty/∂L0_b (DeepMind's variant: no estimator gradient into pre). ∂mse/∂z_bi is
g_b·W_dec[i] with g_b = 2(x̂_b − x_b)/B, known after the forward, so the kernels stay sparse: the active pairs
train encoder and decoder as in TopK, and θ gets this gradient through a zero-valued surrogate term.
"""
from __future__ import annotations

import torch

from .. import kernels
from . import register
from .base import Architecture
from .topk import TopK


class JumpReLU(Architecture):
    name = saved_as = "jumprelu"
    threshold = "parameter"

    def encode(self, sae, pre):
        return torch.relu(pre) * (pre > sae.threshold)

    def options(self, tcfg):
        return dict(target_l0=float(tcfg.sae.target_l0 or tcfg.sae.k),
                    l0_coefficient=tcfg.optim.jumprelu_l0_coefficient, bandwidth=tcfg.optim.jumprelu_bandwidth)

    def losses(self, sae, x, target, opts):
        n = x.shape[0]
        xc = sae._centred(x)
        pre = sae._pre_acts_buffer(xc)
        theta = sae.threshold
        active = pre > theta.detach().clamp_min(0)
        rows, cols = active.nonzero(as_tuple=True)
        x_hat, acts = sae._autoencode(xc, rows, cols, pre[rows, cols])
        mse = (x_hat - target).pow(2).sum(-1).mean()
        target_l0, coef = opts["target_l0"], opts["l0_coefficient"]
        l0_tok = active.sum(1).to(torch.float64)
        penalty = coef * (2 / target_l0 * (l0_tok - target_l0).pow(2)).mean()
        grad_theta = self._threshold_grad(sae, pre, theta.detach(), x_hat.detach() - target, l0_tok, opts)
        surrogate = (theta * grad_theta).sum()
        loss = mse + float(penalty) + surrogate - surrogate.detach()
        aux = TopK.aux(sae, target - x_hat.detach(), xc, pre, opts)
        if aux is not None:
            loss = loss + opts["aux_coefficient"] * aux
        return dict(loss=loss, mse=mse.detach(), l1=acts.detach().sum() / n,
                    aux=(aux if aux is not None else torch.zeros((), device=x.device)).detach(), x_hat=x_hat.detach(),
                    fired=torch.bincount(cols, minlength=sae.cfg.d_sae), l0=torch.tensor(rows.numel() / n))

    @staticmethod
    @torch.no_grad()
    def _threshold_grad(sae, pre, theta, error, l0_tok, opts):
        n, eps = pre.shape[0], opts["bandwidth"]
        target_l0, coef = opts["target_l0"], opts["l0_coefficient"]
        brows, bcols = ((pre - theta).abs() < eps / 2).nonzero(as_tuple=True)
        g = (2.0 / n) * error.to(sae.W_dec.dtype)  # ∂mse/∂x̂
        with kernels.full_precision(g):
            dz = kernels.sampled_dot(brows, bcols, g.contiguous(), sae.W_dec.detach(), n)
        d_pen = (coef * 4.0 / target_l0 * (l0_tok - target_l0) / n).to(dz.dtype)  # ∂penalty/∂L0_b
        per_pair = -(theta[bcols] / eps) * dz - d_pen[brows] / eps
        return torch.zeros_like(theta).index_add_(0, bcols, per_pair)

    @torch.no_grad()
    def initialise(self, sae, x, tcfg):
        """θ at tcfg.optim.jumprelu_init_threshold, or per latent at the first batch's (1 − T/d_sae) quantile of its
        pre-activations, so training starts at L0 ≈ T (a small uniform start leaves half of the latents on and the
        penalty needs thousands of steps to raise θ at Adam's ~lr per step). Under torchrun the trainer then
        broadcasts rank 0's θ (its share of the first batch)."""
        if tcfg.optim.jumprelu_init_threshold is not None:
            sae.threshold.fill_(tcfg.optim.jumprelu_init_threshold)
            return
        pre = sae._centred(x) @ sae.W_enc + sae.b_enc  # x is already scaled
        frac = min(1.0, float(tcfg.sae.target_l0 or tcfg.sae.k) / sae.cfg.d_sae)
        k = max(1, min(pre.shape[0], round(pre.shape[0] * (1 - frac))))
        sae.threshold.copy_(pre.kthvalue(k, dim=0).values.clamp_min(0))

    @torch.no_grad()
    def after_step(self, sae):
        sae.threshold.clamp_(min=0.0)  # projected, not clamped in the graph (SAELens: a clamp's zero gradient pins)


register(JumpReLU())
