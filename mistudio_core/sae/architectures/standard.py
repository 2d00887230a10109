"""standard: z = ReLU(pre); loss ‖x − x̂‖² + λ·Σ_i z_i‖W_dec[i]‖ (Anthropic's April-2024 L1: weighting by the
decoder norm means the penalty cannot be dodged by shrinking z and growing W_dec). Decoder rows start at norm 0.1
and are free; λ is fixed, warmed up, or chased toward target_l0 by the trainer."""
from __future__ import annotations

import torch

from .. import kernels
from . import register
from .base import Architecture


class Standard(Architecture):
    name = saved_as = "standard"
    unit_decoder = False
    init_row_norm = 0.1  # SAELens's decoder_init_norm: at norm 1 the ~half of latents active at init explode x̂

    def encode(self, sae, pre):
        return torch.relu(pre)

    def losses(self, sae, x, target, opts):
        n = x.shape[0]
        xc = sae._centred(x)
        pre = sae._pre_acts_buffer(xc)
        active = pre > 0
        n_active = int(active.sum())
        norms = sae.W_dec.norm(dim=1)
        if n_active <= kernels.SPARSE_DENSITY * active.numel():  # pair lists beat the decoder's 4 dense products
            rows, cols = active.nonzero(as_tuple=True)
            x_hat, acts = sae._autoencode(xc, rows, cols, pre[rows, cols])
            l1 = (acts * norms[cols]).sum() / n
            fired = torch.bincount(cols, minlength=sae.cfg.d_sae)
        else:
            with kernels.full_precision(xc):
                x_hat, z = kernels.DenseAutoencode.apply(xc, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec,
                                                         pre.to(sae.W_enc.dtype), sae.cfg.apply_b_dec_to_input,
                                                         True)
                x_hat = sae._with_skip(x_hat, xc)
            l1 = (z.sum(0) * norms).sum() / n
            fired = active.sum(0)
        mse = (x_hat - target).pow(2).sum(-1).mean()
        return dict(loss=mse + opts.get("l1_coefficient", 0.0) * l1, mse=mse.detach(), l1=l1.detach(),
                    aux=torch.zeros(()), x_hat=x_hat.detach(), fired=fired, l0=torch.tensor(n_active / n))


register(Standard())
