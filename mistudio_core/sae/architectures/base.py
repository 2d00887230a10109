"""The interface every architecture module implements (see the package doc)."""
from __future__ import annotations

import torch


class Architecture:
    name: str = ""
    saved_as: str = ""
    """The SAELens architecture its inference form is written as (before any transcoder suffix)."""
    trainable: bool = True
    unit_decoder: bool = True
    """Decoder rows renormalised to 1 after each step (their parallel gradient removed first)."""
    init_row_norm: float = 1.0
    """Norm of the fresh decoder rows (W_enc = W_decᵀ)."""
    threshold: str | None = None
    """None, "buffer" (statistics, synced between ranks) or "parameter" (trained by Adam)."""

    def encode(self, sae, pre: torch.Tensor) -> torch.Tensor:
        """Codes from pre-activations at inference."""
        raise NotImplementedError

    def losses(self, sae, x: torch.Tensor, target: torch.Tensor, opts: dict) -> dict:
        """One batch: `loss` (differentiable) and detached `mse`, `l1`, `aux`, `x_hat`, `fired`, `l0`."""
        raise NotImplementedError

    def options(self, tcfg) -> dict:
        """Loss options this architecture reads from a TrainConfig (beyond λ, dead mask and AuxK)."""
        return {}

    @torch.no_grad()
    def initialise(self, sae, x: torch.Tensor, tcfg) -> None:
        """Data-dependent init from the first (scaled) batch, after b_dec."""

    @torch.no_grad()
    def after_step(self, sae) -> None:
        """Projections after the optimiser step."""

    def export_fields(self, cfg) -> dict:
        """Extra top-level cfg.json fields of the saved form."""
        return {}
