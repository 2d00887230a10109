"""Linear probes in torch: L2-regularised logistic regression (one output or several one-vs-rest outputs),
latent selection by class-mean difference, and balanced subsampling.

    p(y=1 | x) = σ(w·((x − μ)/σ_x) + b),  minimise  mean BCE + l2·‖w‖²   (full batch, L-BFGS)

Features are standardised with the training set's mean and spread (SAE latents differ in scale by orders of
magnitude; an unscaled L2 penalty would favour the large ones), and `Probe.direction` maps the weights back to
the raw feature space, where the absorption metric projects activations onto them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Probe:
    weight: torch.Tensor
    """[C, d] weights on standardised features (C one-vs-rest outputs)."""
    bias: torch.Tensor
    """[C] biases."""
    mean: torch.Tensor
    """[d] feature means of the training set."""
    scale: torch.Tensor
    """[d] feature spreads of the training set (1 where a feature is constant)."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C] decision values (> 0: the probe says the class is present)."""
        return ((x.float() - self.mean) / self.scale) @ self.weight.T + self.bias

    @property
    def direction(self) -> torch.Tensor:
        """[C, d] the weights in raw feature space (the gradient of each logit with respect to x)."""
        return self.weight / self.scale


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-3, max_iter: int = 100) -> Probe:
    """Logistic regression of `y` ([N] or [N, C] in {0, 1}) on `x` [N, d]; several columns are fitted as
    independent one-vs-rest probes in one L-BFGS run (their losses do not interact)."""
    x = x.float()
    y = y.float().reshape(len(x), -1)
    mean = x.mean(0)
    scale = x.std(0, unbiased=False)
    scale = torch.where(scale > 1e-8, scale, torch.ones_like(scale))
    xs = (x - mean) / scale
    weight = torch.zeros(y.shape[1], x.shape[1], requires_grad=True)
    bias = torch.zeros(y.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(xs @ weight.T + bias, y) + l2 * (weight ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return Probe(weight.detach(), bias.detach(), mean, scale)


def accuracy(probe: Probe, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose one-output prediction (logit > 0) equals `y` [N]."""
    pred = probe.logits(x)[:, 0] > 0
    return float((pred == y.bool()).float().mean())


def top_mean_difference(z: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the `k` features whose class means differ most (|mean(z | y=1) − mean(z | y=0)|), largest
    first: the selection SAEBench's k-sparse probing uses."""
    y = y.bool()
    diff = (z[y].float().mean(0) - z[~y].float().mean(0)).abs()
    return torch.topk(diff, min(k, z.shape[1])).indices


def balanced(y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Row indices with as many positives as negatives (the majority class subsampled at random), sorted."""
    y = y.bool()
    pos, neg = torch.nonzero(y).flatten(), torch.nonzero(~y).flatten()
    n = min(len(pos), len(neg))
    keep = [idx[torch.randperm(len(idx), generator=generator)[:n]] for idx in (pos, neg)]
    return torch.sort(torch.cat(keep)).values
