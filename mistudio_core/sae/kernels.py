"""Training kernels: one dense product per step, everything after it sparse or fused by hand.

An SAE step needs the encoder's pre-activations `pre = xc @ W_enc + b_enc` [B, d_sae] in full (to pick the active
latents). After that only the active (token, latent) pairs matter, so `SparseAutoencode` takes the selection as a
flat pair list (rows ascending) and computes, with a = ReLU(pre) at the pairs and g = ∂L/∂x̂:

    forward   x̂[b]      = Σ_j a_bj·W_dec[l_bj] (+ b_dec)                 embedding_bag, B·k rows read
    backward  ∂L/∂a_p    = g[b_p]·W_dec[l_p] (+ the loss's own ∂L/∂a_p)    sampled_addmm at the pairs only
              ∂L/∂W_dec  = A_latent @ g     ∂L/∂W_enc = (G_latent @ xc)ᵀ  CSR [d_sae, B] × dense, one sort shared
              ∂L/∂b_enc  = Σ_p∈latent ∂L/∂pre_p
              ∂L/∂b_dec  = Σ_b g[b] − W_enc @ ∂L/∂b_enc                    the input path without a [B, d_in] grad

The last line is why these kernels beat autograd even for dense codes: x is data, so the only gradient that flows
back through xc = x − b_dec is its sum over tokens, W_enc @ (Σ_b ∂L/∂pre_b) — a matrix-vector product instead of
the [B, d_sae] × [d_sae, d_in] product autograd would spend on ∂L/∂xc. `DenseAutoencode` uses the same trick for
ReLU codes that are too dense for pair lists (a standard SAE early in training): 5 big products instead of 6.

`sampled_dot` (g[rows]·W_dec[cols] at pairs) also gives JumpReLU's threshold gradient (architectures/jumprelu.py).
Selections: `select_topk` (k per row; a two-level search that first ranks blocks of 32 latents by their maximum,
exact because the k largest values always lie in the k blocks with the largest maxima), `select_batchtopk` (k·B
over the batch), `select_positive` (ReLU's support). Nothing assumes a device.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

SPARSE_DENSITY = 0.05  # a standard SAE's step uses pair lists once at most this share of its codes fire
_BLOCK = 32


def select_topk(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k latents of each row: (rows, cols, values), rows ascending (k per row, unordered within a row)."""
    n, m = pre.shape
    if m % _BLOCK or m // _BLOCK < 2 * k or not pre.is_contiguous():
        values, cols = pre.topk(k, dim=1, sorted=False)
    else:  # torch.topk is ~4× slower per element than a max-reduce; search 32 blocks instead of d_sae values
        blocks = pre.view(n, m // _BLOCK, _BLOCK)
        top_blocks = blocks.amax(-1).topk(k, dim=1, sorted=False).indices                    # [n, k]
        flat = (torch.arange(n, device=pre.device)[:, None] * (m // _BLOCK) + top_blocks).reshape(-1)
        cand = blocks.reshape(-1, _BLOCK).index_select(0, flat).view(n, k * _BLOCK)
        values, j = cand.topk(k, dim=1, sorted=False)
        cols = top_blocks.gather(1, j // _BLOCK) * _BLOCK + j % _BLOCK
    rows = torch.arange(n, device=pre.device).repeat_interleave(k)
    return rows, cols.reshape(-1), values.reshape(-1)


def select_batchtopk(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k·B largest positive pre-activations over the whole batch (BatchTopK), rows ascending."""
    n, d_sae = pre.shape
    values, flat = pre.reshape(-1).topk(k * n, sorted=False)
    keep = values > 0  # a ReLU'd zero carries no gradient and no reconstruction; drop it
    flat, values = flat[keep], values[keep]
    order = torch.argsort(flat)
    flat, values = flat[order], values[order]
    return flat // d_sae, flat % d_sae, values


def select_positive(pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every pair with pre > 0 (the support of ReLU codes), rows ascending."""
    rows, cols = (pre > 0).nonzero(as_tuple=True)
    return rows, cols, pre[rows, cols]


def decode_pairs(rows, cols, acts, W_dec, n_rows: int) -> torch.Tensor:
    """Σ acts·W_dec[cols] per row, as [n_rows, d_in] (no bias). Rows must be ascending."""
    counts = torch.bincount(rows, minlength=n_rows)
    offsets = torch.cumsum(counts, 0) - counts
    return F.embedding_bag(cols, W_dec, offsets, mode="sum", per_sample_weights=acts)


def to_dense(rows, cols, acts, n_rows: int, d_sae: int) -> torch.Tensor:
    """The [n_rows, d_sae] code matrix of a selection (for metrics and inference)."""
    out = torch.zeros(n_rows, d_sae, dtype=acts.dtype, device=acts.device)
    out[rows, cols] = acts
    return out


def _csr(crow, col, values, shape) -> torch.Tensor:
    with warnings.catch_warnings():  # "CSR support is in beta": the two ops used here are tested against dense
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _crow(index: torch.Tensor, size: int) -> torch.Tensor:
    counts = torch.bincount(index, minlength=size)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


class _ByLatent:
    """The pairs regrouped by latent (one stable sort), as CSR [d_sae, B] matrices sharing their structure."""

    def __init__(self, rows, cols, n_rows: int, d_sae: int):
        self.order = torch.argsort(cols, stable=True)
        self.crow, self.col = _crow(cols, d_sae), rows[self.order]
        self.shape = (d_sae, n_rows)

    def mm(self, values: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """[d_sae, B] matrix with `values` at the pairs, times dense [B, d]."""
        return _csr(self.crow, self.col, values[self.order], self.shape) @ dense


def full_precision(x: torch.Tensor):
    """Autocast off (TrainConfig.autocast lowers only the pre-activation product; these kernels mix no dtypes)."""
    return torch.autocast(x.device.type, enabled=False)


def sampled_dot(rows, cols, g, W_dec, n_rows: int) -> torch.Tensor:
    """g[rows_p]·W_dec[cols_p] for every pair, without forming g @ W_decᵀ."""
    if rows.numel() == 0:
        return g.new_zeros(0)
    pattern = _csr(_crow(rows, n_rows), cols, g.new_zeros(rows.numel()), (n_rows, W_dec.shape[0]))
    return torch.sparse.sampled_addmm(pattern, g, W_dec.t()).values()


def _bias_grads(ctx, g, grad_b_enc, W_enc):
    """∂L/∂b_dec from the output (+b_dec) and the input (xc = x − b_dec) paths."""
    grad_b_dec = g.sum(0) if ctx.output_bias else torch.zeros_like(W_enc[:, 0])
    if ctx.input_bias:
        grad_b_dec = grad_b_dec - W_enc @ grad_b_enc
    return grad_b_dec


class SparseAutoencode(torch.autograd.Function):
    """(x̂, a) for codes a = ReLU(pre) at the selected pairs; see the module doc for the backward.

    Inputs: xc [B, d_in] (data, no grad), the four parameters, the pairs (rows ascending) with their
    pre-activations, and two flags: `input_bias` (xc was x − b_dec) and `output_bias` (add b_dec to x̂)."""

    @staticmethod
    def forward(ctx, xc, W_enc, b_enc, W_dec, b_dec, rows, cols, pre_sel, input_bias: bool, output_bias: bool):
        acts = torch.relu(pre_sel)
        x_hat = decode_pairs(rows, cols, acts, W_dec, xc.shape[0])
        if output_bias:
            x_hat = x_hat + b_dec
        ctx.save_for_backward(xc, W_enc, W_dec, rows, cols, pre_sel, acts)
        ctx.input_bias, ctx.output_bias = input_bias, output_bias
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(rows, cols)
        return x_hat, acts

    @staticmethod
    def backward(ctx, g, g_acts):
        xc, W_enc, W_dec, rows, cols, pre_sel, acts = ctx.saved_tensors
        n, d_sae = xc.shape[0], W_enc.shape[1]
        g = torch.zeros_like(xc) if g is None else g.contiguous()
        grad_acts = sampled_dot(rows, cols, g, W_dec, n)
        if g_acts is not None:
            grad_acts = grad_acts + g_acts
        grad_pre = grad_acts * (pre_sel > 0)
        by_latent = _ByLatent(rows, cols, n, d_sae)
        grad_W_dec = by_latent.mm(acts, g)
        grad_W_enc = by_latent.mm(grad_pre, xc).t().contiguous()
        grad_b_enc = torch.zeros(d_sae, dtype=g.dtype, device=g.device).index_add_(0, cols, grad_pre)
        grad_b_dec = _bias_grads(ctx, g, grad_b_enc, W_enc)
        return None, grad_W_enc, grad_b_enc, grad_W_dec, grad_b_dec, None, None, None, None, None


class DenseAutoencode(torch.autograd.Function):
    """(x̂, z) for dense ReLU codes z = ReLU(pre), pre computed by the caller; no [B, d_in] gradient for xc."""

    @staticmethod
    def forward(ctx, xc, W_enc, b_enc, W_dec, b_dec, pre, input_bias: bool, output_bias: bool):
        z = torch.relu(pre)
        x_hat = torch.addmm(b_dec, z, W_dec) if output_bias else z @ W_dec
        ctx.save_for_backward(xc, W_enc, W_dec, z)
        ctx.input_bias, ctx.output_bias = input_bias, output_bias
        ctx.set_materialize_grads(False)
        return x_hat, z

    @staticmethod
    def backward(ctx, g, g_z):
        xc, W_enc, W_dec, z = ctx.saved_tensors
        g = torch.zeros_like(xc) if g is None else g.contiguous()
        grad_pre = g @ W_dec.t()
        if g_z is not None:
            grad_pre += g_z
        grad_pre.mul_(z > 0)
        grad_W_dec = z.t() @ g
        grad_W_enc = xc.t() @ grad_pre
        grad_b_enc = grad_pre.sum(0)
        grad_b_dec = _bias_grads(ctx, g, grad_b_enc, W_enc)
        return None, grad_W_enc, grad_b_enc, grad_W_dec, grad_b_dec, None, None, None
