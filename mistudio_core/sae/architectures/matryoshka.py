"""matryoshka_batchtopk (Bussmann et al. 2025; SAELens's MatryoshkaBatchTopK): BatchTopK whose loss adds, for every
nested prefix m of `cfg.matryoshka_prefixes` below d_sae, the reconstruction error of latents [0, m) alone:
loss = Σ_levels ‖x − x̂_{<m}‖² + α·AuxK. Early latents must reconstruct on their own, which pushes general
features to the front and is meant to absorb less. Saved as jumprelu with its threshold, as SAELens does."""
from __future__ import annotations

from . import register
from .batchtopk import BatchTopK


class Matryoshka(BatchTopK):
    name = "matryoshka_batchtopk"

    def extra_loss(self, sae, xc, target, rows, cols, pre_sel):
        """The inner levels' errors: each prefix decodes its own pairs (the kernels sum their gradients)."""
        total = 0.0
        for m in sae.cfg.matryoshka_prefixes[:-1]:
            keep = cols < m
            x_hat, _ = sae._autoencode(xc, rows[keep], cols[keep], pre_sel[keep])
            total = total + (x_hat - target).pow(2).sum(-1).mean()
        return total


register(Matryoshka())
