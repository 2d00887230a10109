"""What a feature's decoder direction says on its own (no dataset needed): its nearest features and its effect
on every output logit.

    cos(f, g)        = W_dec[f] · W_dec[g] / (‖W_dec[f]‖ ‖W_dec[g]‖)
    logit_effect[f]  = norm_lin(W_dec[f]) @ W_U.T        (all vocab entries; `logits.py` says what norm_lin is)

Both run for one feature at a time and read W_dec in row chunks, so the only extra memory is one chunk of rows
plus one value per feature (or per vocab entry): a 131k-wide SAE on a 2304-wide model adds ~75 MB (8192 rows
of fp32), not another copy of its 1.2 GB decoder.
"""
from __future__ import annotations

import math

import torch

from ..platform.errors import ValidationError
from .logits import norm_linear_part

CHUNK_ROWS = 8192


@torch.no_grad()
def decoder_cosines(W_dec: torch.Tensor, index: int, chunk: int = CHUNK_ROWS) -> torch.Tensor:
    """Cosine between feature `index`'s decoder row and every row `[d_sae]` (float32, on the CPU)."""
    d_sae = W_dec.shape[0]
    if not 0 <= index < d_sae:
        raise ValidationError(f"Feature {index} does not exist; this SAE has features 0..{d_sae - 1}.")
    target = W_dec[index].detach().float()
    target = target / target.norm().clamp_min(1e-12)
    out = torch.empty(d_sae, dtype=torch.float32)
    for start in range(0, d_sae, chunk):
        rows = W_dec[start:start + chunk].detach().float()
        out[start:start + len(rows)] = ((rows @ target) / rows.norm(dim=1).clamp_min(1e-12)).cpu()
    return out


def nearest_features(W_dec: torch.Tensor, index: int, n: int = 10, chunk: int = CHUNK_ROWS) -> list[dict]:
    """The `n` features whose decoder directions point most the same way as `index`'s, highest cosine first."""
    cos = decoder_cosines(W_dec, index, chunk)
    cos[index] = -math.inf
    top = cos.topk(min(n, len(cos) - 1))
    return [{"index": int(j), "cosine": float(v)} for v, j in zip(top.values, top.indices)]


@torch.no_grad()
def logit_effects(model, W_dec: torch.Tensor, index: int) -> torch.Tensor:
    """`norm_lin(W_dec[index]) @ W_U.T`: the direct effect on every vocabulary logit `[vocab]`."""
    W_U = model.get_output_embeddings().weight.detach()
    row = W_dec[index:index + 1].detach().to(W_U.device, torch.float32)
    return (norm_linear_part(model, row) @ W_U.float().T)[0].cpu()


def histogram(values: torch.Tensor, bins: int = 60) -> dict:
    """Equal-width histogram `{edges, counts}` of all `values` (e.g. every vocab entry's logit effect)."""
    values = values.float()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1e-6
    counts = torch.histc(values, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    return {"edges": edges.tolist(), "counts": [int(c) for c in counts.tolist()]}
