"""batchtopk: the k·B largest positive pre-activations over the whole batch (an average of k per token).
Inference runs as JumpReLU with one global threshold, an EMA of the smallest selected activation per batch (as
SAELens does), so it is saved as jumprelu with that threshold in every latent."""
from __future__ import annotations

import torch

from .. import kernels
from . import register
from .topk import TopK


class BatchTopK(TopK):
    name = "batchtopk"
    saved_as = "jumprelu"
    threshold = "buffer"

    def select(self, sae, pre):
        return kernels.select_batchtopk(pre, sae.cfg.k)

    def encode(self, sae, pre):
        return torch.relu(pre) * (pre > sae.threshold)

    @torch.no_grad()
    def after_select(self, sae, acts):
        positive = acts[acts > 0]
        if positive.numel():
            lr = getattr(sae, "threshold_lr", 0.01)
            sae.threshold.mul_(1 - lr).add_(lr * positive.min())

    def export_fields(self, cfg):
        return {}


register(BatchTopK())
