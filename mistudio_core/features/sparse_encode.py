"""Encode a batch of activations into its nonzero SAE codes `(tok, feat, vals)`, in chunks of contexts.

A TopK SAE has k nonzero codes per token, so extraction should never build the dense `[B, T, d_sae]` code tensor
(at 131k latents that is 2 GB per batch of 32×128 tokens, and every pass over it costs as much as the encode):
for `architecture == "topk"` the pre-activations of a chunk go straight to `kernels.select_topk`, the same
selection `SAE.encode` makes, and only the k pairs per token leave the chunk. Any other SAE (ReLU, JumpReLU, an
object with just `encode`) is encoded densely, chunk by chunk, in its own dtype, and its nonzero entries listed.

The encoder's own product `x @ W_enc` ([tokens, d_sae]) is the one cost that grows with width and cannot be
skipped: a TopK selection needs every pre-activation. Chunks hold at most `max_elements` pre-activations, so the
working set does not grow with d_sae.

bf16 search (`LowPrecisionSearch`): where bf16 matmuls are faster (a GPU, or a CPU with AMX: ~3× fp32), a TopK
SAE's product runs in bf16 and only *chooses* candidates: the k + `margin` largest bf16 pre-activations of each
token. Those (token, latent) pairs alone are then rescored in fp32 — x·W_enc[:, f] + b_enc[f] on the SAE's own
centred input — and the true fp32 top k of the candidates kept, so every value saved is an fp32 value. A pair is
lost only if its bf16 rank falls below k + margin while its fp32 rank is within k: bf16 keeps 8 significant bits,
so a pre-activation moves by ~0.4% of its size, while the margin's 8 extra ranks span several times that on any
width (tests/features/test_features_bf16.py measures the agreement). The selection reads the bf16 bits as int16: for
values ≥ 0 their order is the float order, and every negative one sorts below them; negatives never survive the
ReLU, so the kept codes are the same and the cheap integer reduction replaces bf16's slow one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

SEARCH_MARGIN = 8
"""Extra bf16 candidates per token beyond k, rescored in fp32 (guards the k-th place against bf16 rounding)."""
RESCORE_TOKENS = 32
"""Tokens whose candidates' encoder columns are gathered at once (~3 MB at k + margin = 40: stays in cache)."""


def is_topk(sae) -> bool:
    """Whether `sae` is this package's TopK SAE (whose selection `sparse_codes` can make without dense codes)."""
    return getattr(getattr(sae, "cfg", None), "architecture", None) == "topk" and hasattr(sae, "pre_acts")


def contexts_per_chunk(T: int, d_sae: int, max_elements: int) -> int:
    """Contexts of T tokens whose d_sae-wide codes fit in `max_elements` (at least one)."""
    return max(1, max_elements // (T * d_sae))


@dataclass
class LowPrecisionSearch:
    """A TopK SAE's encoder prepared for the bf16 search + fp32 rescore (`prepare_search`); built once per pass."""

    W_low: torch.Tensor
    """W_enc in the search dtype, [d_in, d_sae]."""
    b_low: torch.Tensor
    """b_enc in the search dtype."""
    W_rows: torch.Tensor
    """W_enc transposed, fp32 [d_sae, d_in]: one latent's encoder column is a contiguous row to gather."""
    margin: int = SEARCH_MARGIN
    """Candidates per token beyond k."""

    @property
    def dtype(self) -> torch.dtype:
        return self.W_low.dtype


def prepare_search(sae, dtype: str | torch.dtype, margin: int = SEARCH_MARGIN) -> LowPrecisionSearch | None:
    """The bf16 search of a float32 TopK SAE when `dtype` is bfloat16; None (plain fp32 encode) otherwise."""
    low = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if low != torch.bfloat16 or not is_topk(sae) or sae.W_enc.dtype != torch.float32:
        return None
    W = sae.W_enc.detach()
    return LowPrecisionSearch(W.to(low), sae.b_enc.detach().to(low), W.T.contiguous(), margin)


def centred(sae, x: torch.Tensor) -> torch.Tensor:
    """The encoder's input, as `SAE.pre_acts` forms it: x·norm_scale, minus b_dec when the SAE subtracts it."""
    x = x.to(sae.W_enc.dtype) * sae.norm_scale.to(sae.W_enc.dtype)
    return x - sae.b_dec if sae.cfg.apply_b_dec_to_input else x


def _searched_topk(sae, search: LowPrecisionSearch, x: torch.Tensor):
    """(rows, cols, fp32 values) of each row's k largest pre-activations: bf16 product for the k + margin
    candidates, fp32 values for those pairs only, the fp32 top k of them kept (see the module doc)."""
    from ..sae import kernels

    xc = centred(sae, x).reshape(-1, x.shape[-1])
    n, d_in = xc.shape
    k = sae.cfg.k
    m = min(k + search.margin, search.W_low.shape[1])
    low = torch.addmm(search.b_low, xc.to(search.dtype), search.W_low)
    _, cand, _ = kernels.select_topk(low.view(torch.int16), m)  # int16 order = float order for values >= 0
    del low
    cand = cand.view(n, m)
    exact = torch.empty((n, m), dtype=torch.float32, device=xc.device)
    for s in range(0, n, RESCORE_TOKENS):  # gather a few tokens' columns at a time: the gather stays in cache
        cols = search.W_rows.index_select(0, cand[s:s + RESCORE_TOKENS].reshape(-1)).view(-1, m, d_in)
        torch.bmm(cols, xc[s:s + RESCORE_TOKENS, :, None], out=exact[s:s + RESCORE_TOKENS, :, None])
    exact += sae.b_enc.detach()[cand]
    values, j = exact.topk(k, dim=1, sorted=False)
    rows = torch.arange(n, device=xc.device).repeat_interleave(k)
    return rows, cand.gather(1, j).reshape(-1), values.reshape(-1)


@torch.no_grad()
def sparse_codes(sae, acts: torch.Tensor, max_elements: int, search: LowPrecisionSearch | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nonzero codes of `acts [B, T, d_in]`: (tok in 0..B·T-1, feat, float32 value), in no particular order.
    Without `search`, values equal `sae.encode(acts)`'s at those positions and every other code is 0; with it
    (a TopK SAE's bf16 search), the pairs are the fp32 top k among the bf16 candidates, at fp32 values."""
    B, T = acts.shape[:2]
    d_sae = sae.W_dec.shape[0]
    sub = contexts_per_chunk(T, d_sae, max_elements)
    toks, feats, vals = [], [], []
    topk = is_topk(sae)
    for c in range(0, B, sub):
        chunk = acts[c:c + sub]
        if topk:
            from ..sae import kernels

            if search is not None:
                rows, cols, v = _searched_topk(sae, search, chunk)
            else:
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
