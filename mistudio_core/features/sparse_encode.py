"""Encode a batch of activations into its nonzero SAE codes `(tok, feat, vals)`, in chunks of contexts.

A TopK SAE has k nonzero codes per token, so extraction should never build the dense `[B, T, d_sae]` code tensor
(at 131k latents that is 2 GB per batch of 32×128 tokens, and every pass over it costs as much as the encode):
for `architecture == "topk"` the pre-activations of a chunk go straight to `kernels.select_topk`, the same
selection `SAE.encode` makes, and only the k pairs per token leave the chunk. Any other SAE (ReLU, JumpReLU, an
object with just `encode`) is encoded densely, chunk by chunk, and its nonzero entries listed.

The encoder's own product `x @ W_enc` ([tokens, d_sae]) is the one cost that grows with width and cannot be
skipped: a TopK selection needs every pre-activation. Chunks hold at most `max_elements` pre-activations, so the
working set does not grow with d_sae.
"""
from __future__ import annotations

import torch


def is_topk(sae) -> bool:
    """Whether `sae` is this package's TopK SAE (whose selection `sparse_codes` can make without dense codes)."""
    return getattr(getattr(sae, "cfg", None), "architecture", None) == "topk" and hasattr(sae, "pre_acts")


def contexts_per_chunk(T: int, d_sae: int, max_elements: int) -> int:
    """Contexts of T tokens whose d_sae-wide codes fit in `max_elements` (at least one)."""
    return max(1, max_elements // (T * d_sae))


@torch.no_grad()
def sparse_codes(sae, acts: torch.Tensor, max_elements: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nonzero codes of `acts [B, T, d_in]`: (tok in 0..B·T-1, feat, float32 value), in no particular order.
    Values equal `sae.encode(acts)`'s at those positions; every other code is 0."""
    B, T = acts.shape[:2]
    d_sae = sae.W_dec.shape[0]
    sub = contexts_per_chunk(T, d_sae, max_elements)
    toks, feats, vals = [], [], []
    topk = is_topk(sae)
    for c in range(0, B, sub):
        chunk = acts[c:c + sub]
        if topk:
            from ..sae import kernels

            pre = sae.pre_acts(chunk)  # the same shapes and calls as SAE.encode, so the same numbers
            rows, cols, v = kernels.select_topk(pre.reshape(-1, pre.shape[-1]).contiguous(), sae.cfg.k)
            v = torch.relu(v).float()
            keep = v > 0
            rows, cols, v = rows[keep], cols[keep], v[keep]
        else:
            flat = sae.encode(chunk).float().reshape(-1, d_sae)
            rows, cols = flat.nonzero(as_tuple=True)
            v = flat[rows, cols]
        toks.append(rows + c * T)
        feats.append(cols)
        vals.append(v)
    return torch.cat(toks), torch.cat(feats), torch.cat(vals)
