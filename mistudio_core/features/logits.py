"""Top and bottom logits of each feature's decoder direction: which tokens the feature pushes up or down.

    logit_effect[f] = norm_lin(W_dec[f]) @ W_U.T          W_U: the unembedding [vocab, d_model]

The final norm sits between the residual stream and W_U, and it is not linear. Our choice (the usual
"logit lens on the decoder direction"): keep the parts of the norm that act on a direction the same way whatever
the residual is, and drop the rest:
- RMSNorm: multiply by its per-dimension gain (Gemma stores it as `1 + weight`); the division by the RMS is one
  positive scale shared by all vocabulary entries, so it changes values but never the ranking.
- LayerNorm: also subtract the direction's mean (centering is linear); its bias does not depend on the feature,
  so it is left out.
This describes the *direct* effect of adding W_dec[f] at the last layer; at earlier layers it is an
approximation (the layers in between also read the direction), as in every tool that shows these lists.
"""
from __future__ import annotations

import torch

from .sparse_encode import SEARCH_MARGIN  # the same guard against bf16 rounding as the TopK search

_NORM_PATHS = ("model.norm", "model.language_model.norm", "language_model.model.norm", "transformer.ln_f",
               "gpt_neox.final_layer_norm")


def final_norm(model) -> torch.nn.Module | None:
    """The norm applied before the unembedding, or None if this architecture's is not known."""
    for path in _NORM_PATHS:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    return None


def norm_linear_part(model, directions: torch.Tensor) -> torch.Tensor:
    """Apply the direction-independent linear part of the final norm to `directions [n, d]` (see module doc)."""
    norm = final_norm(model)
    if norm is None:
        return directions
    if isinstance(norm, torch.nn.LayerNorm):
        directions = directions - directions.mean(dim=-1, keepdim=True)
    weight = getattr(norm, "weight", None)
    if weight is None:
        return directions
    gain = weight.detach().float().to(directions.device)
    if "gemma" in str(getattr(getattr(model, "config", None), "model_type", "")):
        gain = 1.0 + gain  # Gemma's RMSNorm scales by (1 + weight)
    return directions * gain


_BLOCK = 32


def top_and_bottom(logits: torch.Tensor, n: int):
    """`logits.topk(n, dim=1)` and its `largest=False` twin, sorted, with the same values. Vocabulary-wide topk
    costs ~4× a max-reduce per element, so when the row splits into blocks of 32 it first ranks the blocks by
    their max (min): the n largest (smallest) entries always lie in the n blocks with the largest maxima (smallest
    minima), and only those n·32 candidates go through topk."""
    rows, V = logits.shape
    if V % _BLOCK or V // _BLOCK < 2 * n:
        return logits.topk(n, dim=1), logits.topk(n, dim=1, largest=False)
    return _extreme(logits, n, True), _extreme(logits, n, False)


def _extreme(scores: torch.Tensor, n: int, largest: bool):
    """The n largest (smallest) entries of each row through the block pruning of `top_and_bottom`."""
    rows, V = scores.shape
    blocks = scores.view(rows, V // _BLOCK, _BLOCK)
    reduced = blocks.amax(-1) if largest else blocks.amin(-1)
    pick = reduced.topk(n, dim=1, largest=largest, sorted=False).indices  # [rows, n] block ids
    cand = blocks.gather(1, pick[..., None].expand(-1, -1, _BLOCK)).reshape(rows, n * _BLOCK)
    vals, j = cand.topk(n, dim=1, largest=largest)
    return torch.return_types.topk((vals, pick.gather(1, j // _BLOCK) * _BLOCK + j % _BLOCK))


@torch.no_grad()
def decoder_logits(model, W_dec: torch.Tensor, n: int = 10, chunk: int = 512, search_dtype=None):
    """(top_ids, top_vals, bottom_ids, bottom_vals), each `[d_sae, n]`, computed in chunks of features so the
    `[d_sae, vocab]` matrix is never held whole (16k × 49k floats would be 3 GB). The product itself,
    d_sae × d_model × vocab multiply-adds, is the one fixed cost of extraction that grows with width.

    `search_dtype` bfloat16 (where bf16 matmuls are faster: a GPU, a CPU with AMX) runs that product in bf16 only to
    *choose* the n + SEARCH_MARGIN candidates at each end; their logits are then recomputed in fp32, so every value
    saved is an fp32 value and the lists match the fp32 ones except where bf16 rounding (~0.4%) moves an entry
    more than the margin's 8 ranks (tests/features/test_features_logits.py measures the agreement)."""
    W_U = model.get_output_embeddings().weight.detach().float()
    n = min(n, W_U.shape[0])
    low = getattr(torch, search_dtype) if isinstance(search_dtype, str) else search_dtype
    W_low = W_U.to(torch.bfloat16) if low == torch.bfloat16 else None
    wide = min(n + SEARCH_MARGIN, W_U.shape[0])
    outs = [[], [], [], []]
    for start in range(0, W_dec.shape[0], chunk):
        dirs = norm_linear_part(model, W_dec[start:start + chunk].detach().float().to(W_U.device))
        if W_low is None:
            top, bottom = top_and_bottom(dirs @ W_U.T, n)
        else:
            top_ids, bottom_ids = _bf16_candidates(dirs.to(torch.bfloat16) @ W_low.T, wide)
            top, bottom = _rescored(dirs, W_U, top_ids, n, True), _rescored(dirs, W_U, bottom_ids, n, False)
        for lst, t in zip(outs, (top.indices, top.values, bottom.indices, bottom.values)):
            lst.append(t.cpu())
    return tuple(torch.cat(o) for o in outs)


def _bf16_candidates(logits: torch.Tensor, wide: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids of the `wide` largest and smallest entries of each row of bf16 `logits`, chosen on their bits read as
    int16 (bf16's own reductions are ~4× slower on a CPU). For values ≥ 0 the bits' order is the float order and
    every negative sorts below them, so the largest bits are the largest logits when a row has `wide` positive
    ones; one XOR with 0x7FFF turns the negatives' order around the same way, so the smallest XOR-ed bits are the
    most negative logits when a row has `wide` negative ones. A row without enough of either (rare: a direction
    that pushes almost every token the same way) is ranked on its float values instead."""
    rows, V = logits.shape
    if V % _BLOCK or V // _BLOCK < wide:
        exact = logits.float()
        return exact.topk(wide, dim=1).indices, exact.topk(wide, dim=1, largest=False).indices
    bits = logits.view(torch.int16)
    top = _extreme(bits, wide, True)
    bottom = _extreme(bits ^ 0x7FFF, wide, False)
    top_ids, bottom_ids = top.indices, bottom.indices
    redo = (top.values < 0).any(1) | (bottom.values >= 0).any(1)
    if redo.any():
        exact = logits[redo].float()
        top_ids[redo] = exact.topk(wide, dim=1).indices
        bottom_ids[redo] = exact.topk(wide, dim=1, largest=False).indices
    return top_ids, bottom_ids


def _rescored(dirs: torch.Tensor, W_U: torch.Tensor, ids: torch.Tensor, n: int, largest: bool):
    """The fp32 logits of the candidate `ids [rows, m]` of each direction, and the n best of them, sorted."""
    exact = torch.einsum("rd,rmd->rm", dirs, W_U[ids])
    vals, j = exact.topk(n, dim=1, largest=largest)
    return torch.return_types.topk((vals, ids.gather(1, j)))
