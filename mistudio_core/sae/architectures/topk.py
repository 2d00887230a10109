"""topk: z = ReLU(pre) on each token's k largest pre-activations; loss ‖x − x̂‖² + α·AuxK, AuxK = ‖e − ê_dead‖² /
‖e − ē‖² with e the detached residual and ê_dead its reconstruction from the top aux_k dead latents (Gao et al.
2024). Decoder rows are kept at unit norm. `TopK.select` is what batchtopk and matryoshka override."""
from __future__ import annotations

import torch

from .. import kernels
from . import register
from .base import Architecture


class TopK(Architecture):
    name = saved_as = "topk"

    def select(self, sae, pre):
        return kernels.select_topk(pre, sae.cfg.k)

    def encode(self, sae, pre):
        flat = pre.reshape(-1, pre.shape[-1]).contiguous()
        rows, cols, values = kernels.select_topk(flat, sae.cfg.k)
        return kernels.to_dense(rows, cols, torch.relu(values), *flat.shape).view_as(pre)

    def losses(self, sae, x, target, opts):
        n = x.shape[0]
        xc = sae._centred(x)
        pre = sae._pre_acts_buffer(xc)  # the one dense product; everything after it is sparse (kernels)
        rows, cols, pre_sel = self.select(sae, pre)
        x_hat, acts = sae._autoencode(xc, rows, cols, pre_sel)
        mse = (x_hat - target).pow(2).sum(-1).mean()
        loss = mse + self.extra_loss(sae, xc, target, rows, cols, pre_sel)
        aux = self.aux(sae, target - x_hat.detach(), xc, pre, opts)
        if aux is not None:
            loss = loss + opts["aux_coefficient"] * aux
        acts = acts.detach()
        self.after_select(sae, acts)
        return dict(loss=loss, mse=mse.detach(), l1=acts.abs().sum() / n,
                    aux=(aux if aux is not None else torch.zeros((), device=x.device)).detach(), x_hat=x_hat.detach(),
                    fired=torch.bincount(cols[acts > 0], minlength=sae.cfg.d_sae), l0=(acts > 0).sum().float() / n)

    def extra_loss(self, sae, xc, target, rows, cols, pre_sel):
        return 0.0

    def after_select(self, sae, acts):
        pass

    @staticmethod
    def aux(sae, residual, xc, pre, opts):
        """AuxK on the dead latents, or None when off or nothing is dead."""
        dead, aux_k = opts.get("dead"), opts.get("aux_k", 0)
        n_dead = 0 if dead is None else int(dead.sum())
        if opts.get("aux_coefficient", 0) <= 0 or aux_k <= 0 or n_dead == 0:
            return None
        return sae._aux_loss(residual, xc, pre, dead, min(aux_k, n_dead))

    def export_fields(self, cfg):
        return dict(k=cfg.k, rescale_acts_by_decoder_norm=False)


register(TopK())
