"""Sparse autoencoder: parameters, inference math for every architecture, and the training losses.

With s the activation-normalisation scale (1 once folded), xc = s·x − b_dec (b_dec subtracted only if
apply_b_dec_to_input) and pre = xc·W_enc + b_enc:

    standard:  z = ReLU(pre)
    topk:      z = ReLU(pre) on each row's k largest pre-activations, 0 elsewhere
    jumprelu:  z = ReLU(pre) · [pre > threshold]            (batchtopk SAEs run like this at inference)
    decode:    x̂ = (z·W_dec + b_dec) / s

Training losses (summed over d_in, averaged over tokens, as SAELens does):
    standard:  ‖s·x − ŝx‖² + λ·Σ_i z_i‖W_dec[i]‖   — Anthropic's April-2024 L1: weighting by the decoder norm
               means the penalty cannot be dodged by shrinking z and growing W_dec.
    topk / batchtopk: ‖s·x − ŝx‖² + α·AuxK, AuxK = ‖e − ê_dead‖² / ‖e − ē‖² where e is the detached residual
               and ê_dead its reconstruction from the top aux_k *dead* latents (Gao et al. 2024); decoder rows
               are kept at unit norm.
How a step is computed (kernels.py): the encoder's pre-activations are the one dense product, written into a
buffer reused across steps; the active (token, latent) pairs are then decoded and differentiated sparsely, and
b_dec's gradient through xc is W_enc @ Σ_b ∂L/∂pre_b rather than a [B, d_in] product. Standard SAEs switch to
pair lists once at most SPARSE_DENSITY of their codes fire (early in training about half do: dense kernel).
Gradients equal dense autograd's (tests/test_sae_model.py).
Limits: jumprelu is inference-only here (train batchtopk instead); no gated/matryoshka variants.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import SAEConfig
from . import kernels

SPARSE_DENSITY = 0.05
"""Standard SAEs train on pair lists once at most this fraction of codes is active (measured crossover ~8%)."""
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
           "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    return _DTYPES[name]


class SAE(nn.Module):
    def __init__(self, cfg: SAEConfig, device=None, seed: int | None = None):
        super().__init__()
        self.cfg = cfg
        dtype = torch_dtype(cfg.dtype)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        # W_enc = W_dec^T with decoder rows of norm 1 (TopK: kept unit) or 0.1 (standard: Anthropic's April-2024
        # init, SAELens's decoder_init_norm; at unit norm the ~half of latents active at init sum to
        # reconstructions many times the input, and a short L1 run never recovers: EV -2.75 after 24 steps).
        w_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=gen, dtype=torch.float64)
        row_norm = 0.1 if cfg.architecture == "standard" else 1.0
        w_dec = (w_dec * (row_norm / w_dec.norm(dim=1, keepdim=True))).to(dtype)
        self.W_dec = nn.Parameter(w_dec.to(device))
        self.W_enc = nn.Parameter(w_dec.t().contiguous().to(device))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype, device=device))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, dtype=dtype, device=device))
        if cfg.architecture in ("jumprelu", "batchtopk"):
            self.register_buffer("threshold", torch.zeros(cfg.d_sae, dtype=dtype, device=device))
        else:
            self.threshold = None
        # Input scale s of activation normalisation; 1.0 means none (or already folded into the weights).
        self.register_buffer("norm_scale", torch.ones((), dtype=torch.float32, device=device))

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    # ---- inference -------------------------------------------------------------------------------------
    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype) * self.norm_scale.to(self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_acts(x)
        arch = self.cfg.architecture
        if arch == "standard":
            return torch.relu(pre)
        if arch == "topk":
            flat = pre.reshape(-1, pre.shape[-1]).contiguous()
            rows, cols, values = kernels.select_topk(flat, self.cfg.k)
            return kernels.to_dense(rows, cols, torch.relu(values), *flat.shape).view_as(pre)
        return torch.relu(pre) * (pre > self.threshold)  # jumprelu and batchtopk at inference

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        out = codes.to(self.W_dec.dtype) @ self.W_dec + self.b_dec
        return out / self.norm_scale.to(out.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)).to(x.dtype)

    # ---- training --------------------------------------------------------------------------------------
    def training_losses(self, x: torch.Tensor, l1_coefficient: float = 0.0, dead: torch.Tensor | None = None,
                        aux_k: int = 0, aux_coefficient: float = 0.0) -> dict:
        """Losses and statistics for one batch x [B, d_in] (already scaled by norm_scale).

        Returns a dict with `loss` (differentiable) and detached `mse`, `l1`, `aux`, `x_hat`, `fired` (per-latent
        counts of active tokens) and `l0`."""
        if self.cfg.architecture == "standard":
            return self._standard_losses(x, l1_coefficient)
        if self.cfg.architecture in ("topk", "batchtopk"):
            return self._topk_losses(x, dead, aux_k, aux_coefficient)
        raise NotImplementedError("jumprelu SAEs are inference-only here; train batchtopk, which saves as jumprelu")

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
        with _full_precision(xc):  # the hand-written kernels mix no dtypes: fp32 even under autocast
            return self._autoencode_fp(xc, rows, cols, pre_sel.to(self.W_enc.dtype), output_bias)

    def _autoencode_fp(self, xc, rows, cols, pre_sel, output_bias):
        return kernels.SparseAutoencode.apply(xc, self.W_enc, self.b_enc, self.W_dec, self.b_dec, rows, cols,
                                              pre_sel, self.cfg.apply_b_dec_to_input, output_bias)

    def _standard_losses(self, x, l1_coefficient):
        n = x.shape[0]
        xc = self._centred(x)
        pre = self._pre_acts_buffer(xc)
        active = pre > 0
        n_active = int(active.sum())
        norms = self.W_dec.norm(dim=1)
        if n_active <= SPARSE_DENSITY * active.numel():  # pair lists beat the 4 dense products of the decoder
            rows, cols = active.nonzero(as_tuple=True)
            x_hat, acts = self._autoencode(xc, rows, cols, pre[rows, cols])
            l1 = (acts * norms[cols]).sum() / n
            fired = torch.bincount(cols, minlength=self.cfg.d_sae)
        else:
            with _full_precision(xc):
                x_hat, z = kernels.DenseAutoencode.apply(xc, self.W_enc, self.b_enc, self.W_dec, self.b_dec,
                                                         pre.to(self.W_enc.dtype), self.cfg.apply_b_dec_to_input,
                                                         True)
            l1 = (z.sum(0) * norms).sum() / n
            fired = active.sum(0)
        mse = (x_hat - x).pow(2).sum(-1).mean()
        return dict(loss=mse + l1_coefficient * l1, mse=mse.detach(), l1=l1.detach(), aux=torch.zeros(()),
                    x_hat=x_hat.detach(), fired=fired, l0=torch.tensor(n_active / n))

    def _topk_losses(self, x, dead, aux_k, aux_coefficient):
        n = x.shape[0]
        xc = self._centred(x)
        pre = self._pre_acts_buffer(xc)  # the one dense product; everything after it is sparse (kernels)
        select = kernels.select_topk if self.cfg.architecture == "topk" else kernels.select_batchtopk
        rows, cols, pre_sel = select(pre, self.cfg.k)
        x_hat, acts = self._autoencode(xc, rows, cols, pre_sel)
        mse = (x_hat - x).pow(2).sum(-1).mean()
        loss, aux = mse, torch.zeros((), device=x.device)
        n_dead = 0 if dead is None else int(dead.sum())
        if aux_coefficient > 0 and aux_k > 0 and n_dead > 0:
            aux = self._aux_loss(x - x_hat.detach(), xc, pre, dead, min(aux_k, n_dead))
            loss = loss + aux_coefficient * aux
        acts = acts.detach()
        fired = torch.bincount(cols[acts > 0], minlength=self.cfg.d_sae)
        if self.cfg.architecture == "batchtopk":
            self._update_threshold(acts)
        return dict(loss=loss, mse=mse.detach(), l1=acts.abs().sum() / n, aux=aux.detach(),
                    x_hat=x_hat.detach(), fired=fired, l0=(acts > 0).sum().float() / n)

    def _aux_loss(self, residual, xc, pre, dead, aux_k):
        """AuxK: reconstruct the residual from the top aux_k dead latents, normalised by its variance."""
        dead_idx = dead.nonzero().squeeze(1)
        rows, sub_cols, pre_sel = kernels.select_topk(pre.index_select(1, dead_idx), aux_k)  # dead columns only
        e_hat, _ = self._autoencode(xc, rows, dead_idx[sub_cols], pre_sel, output_bias=False)
        total = (residual - residual.mean(0)).pow(2).sum()
        return (e_hat - residual).pow(2).sum() / total.clamp_min(1e-12)

    @torch.no_grad()
    def _update_threshold(self, acts):
        """BatchTopK's inference threshold: EMA of the smallest selected activation (as SAELens does)."""
        positive = acts[acts > 0]
        if positive.numel():
            lr = getattr(self, "threshold_lr", 0.01)
            self.threshold.mul_(1 - lr).add_(lr * positive.min())

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
        """A copy with the normalisation scale folded into the weights (same outputs on raw activations)."""
        import copy
        cfg = copy.deepcopy(self.cfg)
        arch = "jumprelu" if cfg.architecture == "batchtopk" else cfg.architecture
        cfg = type(cfg)(**{**cfg.to_dict(), "architecture": arch, "normalize_activations": "none",
                           "k": cfg.k if arch == "topk" else None})
        out = SAE(cfg, device=self.device)
        s = self.norm_scale.to(self.W_enc.dtype)
        out.W_enc.copy_(self.W_enc * s)
        out.W_dec.copy_(self.W_dec / s)
        out.b_dec.copy_(self.b_dec / s)
        out.b_enc.copy_(self.b_enc)
        if self.threshold is not None:
            out.threshold.copy_(self.threshold)  # pre-activations are unchanged by the fold
        return out


def _full_precision(x: torch.Tensor):
    """Autocast off for the kernels (TrainConfig.autocast lowers only the pre-activation product)."""
    return torch.autocast(x.device.type, enabled=False)
