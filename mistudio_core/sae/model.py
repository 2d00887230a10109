"""Sparse autoencoder: parameters, inference math, and the training-step helpers every architecture shares.

With s the activation-normalisation scale (1 once folded), xc = s·x − b_dec (b_dec subtracted only if
apply_b_dec_to_input) and pre = xc·W_enc + b_enc, codes are z = arch.encode(pre) (standard: ReLU; topk: ReLU of
each row's k largest; jumprelu, and batchtopk/matryoshka at inference: ReLU(pre)·[pre > threshold]) and
x̂ = (z·W_dec + b_dec) / s_out. `cfg.architecture` names an entry of the registry (`architectures/`), which also
owns each training loss (summed over d_in, averaged over tokens, as SAELens does).

Transcoders (`cfg.d_out` set) read one hook and reconstruct another: W_dec is [d_sae, d_out], b_dec [d_out], the
input is never centred by b_dec, the output has its own scale s_out (`norm_scale_out`), and a skip transcoder
adds W_skip·(s·x) / s_out (W_skip [d_out, d_in], zero at init): `forward` includes it, `decode(z)` does not, so a
change of codes decodes to the change of output.

How a step is computed (kernels.py): the encoder's pre-activations are the one dense product, written into a
buffer reused across steps; the active (token, latent) pairs are then decoded and differentiated sparsely, and
b_dec's gradient through xc is W_enc @ Σ_b ∂L/∂pre_b rather than a [B, d_in] product. Standard SAEs switch to
pair lists once at most kernels.SPARSE_DENSITY of their codes fire (early in training about half do: dense kernel).
Gradients equal dense autograd's (tests/sae/test_sae_model.py).
"""
from __future__ import annotations

import torch
from torch import nn

from .config import SAEConfig
from . import kernels
from .architectures import get as get_architecture

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
           "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    return _DTYPES[name]


class SAE(nn.Module):
    def __init__(self, cfg: SAEConfig, device=None, seed: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.arch = get_architecture(cfg.architecture)
        dtype = torch_dtype(cfg.dtype)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        # W_enc = W_dec^T with decoder rows of the architecture's norm: 1 (TopK: kept unit) or 0.1 (standard:
        # Anthropic's April-2024 init; at unit norm a short L1 run never recovers: EV -2.75 after 24 steps).
        w_dec = torch.randn(cfg.d_sae, cfg.out_width, generator=gen, dtype=torch.float64)
        w_dec = (w_dec * (self.arch.init_row_norm / w_dec.norm(dim=1, keepdim=True))).to(dtype)
        self.W_dec = nn.Parameter(w_dec.to(device))
        self.W_enc = nn.Parameter(w_dec.t().contiguous().to(device))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype, device=device))
        self.b_dec = nn.Parameter(torch.zeros(cfg.out_width, dtype=dtype, device=device))
        self.W_skip = None
        if cfg.skip_connection:
            self.W_skip = nn.Parameter(torch.zeros(cfg.out_width, cfg.d_in, dtype=dtype, device=device))
        threshold = torch.zeros(cfg.d_sae, dtype=dtype, device=device)
        if self.arch.threshold == "parameter":  # jumprelu: trained
            self.threshold = nn.Parameter(threshold)
        elif self.arch.threshold == "buffer":  # batchtopk: a batch statistic
            self.register_buffer("threshold", threshold)
        else:
            self.threshold = None
        # Input scale s of activation normalisation; 1.0 means none (or already folded into the weights).
        self.register_buffer("norm_scale", torch.ones((), dtype=torch.float32, device=device))
        if cfg.d_out is not None:  # a transcoder's output hook has its own scale
            self.register_buffer("norm_scale_out", torch.ones((), dtype=torch.float32, device=device))

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    @property
    def out_scale(self) -> torch.Tensor:
        return self.norm_scale_out if self.cfg.d_out is not None else self.norm_scale

    # ---- inference -------------------------------------------------------------------------------------
    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype) * self.norm_scale.to(self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.arch.encode(self, self.pre_acts(x))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """x̂ from codes (a skip transcoder's W_skip·x term is added by `forward`, which has x)."""
        out = codes.to(self.W_dec.dtype) @ self.W_dec + self.b_dec
        return out / self.out_scale.to(out.dtype)

    def output(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """x̂ of input x given its codes: decode, plus a skip transcoder's W_skip·x."""
        out = self.decode(codes)
        if self.W_skip is not None:
            xs = x.to(self.W_skip.dtype) * self.norm_scale.to(self.W_skip.dtype)
            out = out + (xs @ self.W_skip.t()) / self.out_scale.to(out.dtype)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(x, self.encode(x)).to(x.dtype)

    # ---- training --------------------------------------------------------------------------------------
    def training_losses(self, x: torch.Tensor, l1_coefficient: float = 0.0, dead: torch.Tensor | None = None,
                        aux_k: int = 0, aux_coefficient: float = 0.0, target: torch.Tensor | None = None,
                        **options) -> dict:
        """Losses and statistics for one batch x [B, d_in] (already scaled by norm_scale); `target` [B, d_out] is
        what is reconstructed (a transcoder's output, scaled by norm_scale_out; default x); `options` are the
        architecture's own (`Architecture.options(train_cfg)`).

        Returns a dict with `loss` (differentiable) and detached `mse`, `l1`, `aux`, `x_hat`, `fired` (per-latent
        counts of active tokens) and `l0`."""
        if not self.arch.trainable:
            raise NotImplementedError(f"{self.cfg.architecture} SAEs are inference-only here")
        opts = dict(options, l1_coefficient=l1_coefficient, dead=dead, aux_k=aux_k, aux_coefficient=aux_coefficient)
        return self.arch.losses(self, x, x if target is None else target, opts)

    def _centred(self, x):
        """xc = x − b_dec as data (no autograd): the kernels route b_dec's input-side gradient themselves."""
        return (x - self.b_dec.detach()) if self.cfg.apply_b_dec_to_input else x

    @torch.no_grad()
    def _pre_acts_buffer(self, xc):
        """pre = xc @ W_enc + b_enc into a [B, d_sae] buffer kept across steps: a fresh tensor this size costs
        a page fault per 4 KiB on every step. Valid until the next call; nothing may keep it."""
        shape = (xc.shape[0], self.cfg.d_sae)
        if torch.is_autocast_enabled(xc.device.type):  # TrainConfig.autocast: the one dense product in bf16/fp16
            low = torch.get_autocast_dtype(xc.device.type)
            return torch.addmm(self.b_enc.to(low), xc.to(low), self.W_enc.to(low))
        buf = self.__dict__.get("_pre_buf")
        if buf is None or buf.shape != shape or buf.dtype != self.W_enc.dtype or buf.device != xc.device:
            buf = torch.empty(shape, dtype=self.W_enc.dtype, device=xc.device)
            self.__dict__["_pre_buf"] = buf
        return torch.addmm(self.b_enc, xc, self.W_enc, out=buf)

    def _autoencode(self, xc, rows, cols, pre_sel, output_bias=True):
        """(x̂, a) of the selected pairs (kernels.SparseAutoencode), with a skip transcoder's term."""
        with kernels.full_precision(xc):  # the hand-written kernels mix no dtypes: fp32 even under autocast
            x_hat, acts = kernels.SparseAutoencode.apply(xc, self.W_enc, self.b_enc, self.W_dec, self.b_dec, rows,
                                                         cols, pre_sel.to(self.W_enc.dtype),
                                                         self.cfg.apply_b_dec_to_input, output_bias)
            return (self._with_skip(x_hat, xc) if output_bias else x_hat), acts

    def _with_skip(self, x_hat, xc):
        """A skip transcoder's W_skip·x (xc is x: transcoders never centre their input)."""
        return x_hat if self.W_skip is None else x_hat + xc @ self.W_skip.t()

    def _aux_loss(self, residual, xc, pre, dead, aux_k):
        """AuxK: reconstruct the residual from the top aux_k dead latents, normalised by its variance."""
        dead_idx = dead.nonzero().squeeze(1)
        rows, sub_cols, pre_sel = kernels.select_topk(pre.index_select(1, dead_idx), aux_k)  # dead columns only
        e_hat, _ = self._autoencode(xc, rows, dead_idx[sub_cols], pre_sel, output_bias=False)
        total = (residual - residual.mean(0)).pow(2).sum()
        return (e_hat - residual).pow(2).sum() / total.clamp_min(1e-12)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Drop the part of grad W_dec along each (unit) row, which the renormalisation would undo anyway."""
        grad = self.W_dec.grad
        if grad is not None:  # row-wise dots as a batched [1, d]·[d, 1] product: no [d_sae, d_in] temporary
            parallel = torch.bmm(grad.unsqueeze(1), self.W_dec.unsqueeze(2)).view(-1, 1)
            grad.addcmul_(parallel, self.W_dec, value=-1)

    @torch.no_grad()
    def folded(self) -> "SAE":
        """A copy in its saved form: normalisation scales folded into the weights (same outputs on raw
        activations), architecture as its inference runs (batchtopk and matryoshka_batchtopk → jumprelu)."""
        c = self.cfg
        arch = self.arch.saved_as
        cfg = type(c)(**{**c.to_dict(), "architecture": arch, "normalize_activations": "none",
                         "k": c.k if arch == "topk" else None, "matryoshka_prefixes": None})
        out = SAE(cfg, device=self.device)
        s_in, s_out = (t.to(self.W_enc.dtype) for t in (self.norm_scale, self.out_scale))
        out.W_enc.copy_(self.W_enc * s_in)
        out.W_dec.copy_(self.W_dec / s_out)
        out.b_dec.copy_(self.b_dec / s_out)
        out.b_enc.copy_(self.b_enc)
        if self.W_skip is not None:
            out.W_skip.copy_(self.W_skip * (s_in / s_out))
        if self.threshold is not None:
            out.threshold.copy_(self.threshold)  # pre-activations are unchanged by the fold
        return out
