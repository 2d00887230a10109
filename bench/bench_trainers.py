"""The four trainers bench_train.py races, each as its authors train an SAE, fed the same batches in the same order.

Shared by all: d_in 576, 8× (4608 latents), TopK k=32 or ReLU+L1 with λ, batch 4096, Adam lr 3e-4 (betas 0.9/0.999),
b_dec started at the first batch's mean, a latent dead after 15 steps (61,440 tokens) without firing.
Each tool keeps its own defaults otherwise (init, normalisation, AuxK weight, clipping):

- plain: the plainest correct dense loop (dense codes, dense matmuls, autograd, foreach Adam, decoder renorm).
- mistudio: `mistudio_core.sae.trainer.train_saes` with its defaults (inputs scaled to mean norm sqrt(d_in)).
- sparsify: `SparseCoder` stepped exactly as sparsify's `Trainer` steps it (its Trainer needs a live model to hook,
  so the loop is reproduced: unit-norm decoder, fvu + 1/32·AuxK, parallel grad removed, Adam). eai-sparsify 1.3.3.
- saelens: sae-lens's own `SAETrainer.fit` over a data provider of these batches (TopKTrainingSAE or
  StandardTrainingSAE, their defaults: decoder_init_norm 0.1, grad-norm clipping at 1; TopK's
  use_sparse_activations=True fails in backward on torch 2.13 CPU — 'aten::view' has no SparseCPU kernel — so
  its dense default runs). sae-lens 6.54.12.

`train(tool, arch, batches, steps, l1, clock)` returns `(encode, decode)` on raw activations; `clock()` is called each
time a trainer pulls a batch, which is when the previous step has finished.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch

D_IN, WIDTH, K, BATCH, LR = 576, 8 * 576, 32, 4096, 3e-4
DEAD_STEPS = 15
HOOK = "blocks.8.hook_resid_post"


def _feed(batches: list[torch.Tensor], clock: Callable[[], None]) -> Iterator[torch.Tensor]:
    s = 0
    while True:
        clock()
        yield batches[s % len(batches)]
        s += 1


def plain(arch, batches, steps, l1, clock):
    torch.manual_seed(0)
    W_dec = torch.randn(WIDTH, D_IN)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    p = torch.nn.ParameterDict(dict(W_enc=W_dec.t().clone(), W_dec=W_dec, b_enc=torch.zeros(WIDTH),
                                    b_dec=batches[0].mean(0)))
    opt = torch.optim.Adam(p.parameters(), lr=LR)

    def codes(x):
        pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
        if arch == "standard":
            return torch.relu(pre)
        v, i = pre.topk(K, dim=1)
        return torch.zeros_like(pre).scatter(1, i, torch.relu(v))

    feed = _feed(batches, clock)
    for _ in range(steps):
        x = next(feed)
        z = codes(x)
        loss = ((z @ p["W_dec"] + p["b_dec"]) - x).pow(2).sum(-1).mean()
        if arch == "standard":
            loss = loss + l1 * (z * p["W_dec"].norm(dim=1)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if arch == "topk":
            with torch.no_grad():
                p["W_dec"] /= p["W_dec"].norm(dim=1, keepdim=True)
    clock()
    return codes, lambda z: z @ p["W_dec"] + p["b_dec"]


def mistudio(arch, batches, steps, l1, clock):
    from mistudio_core.sae.train_config import TrainConfig
    from mistudio_core.sae.trainer import train_saes

    cfg = TrainConfig.of(architecture=arch, d_sae=WIDTH, k=K, steps=steps, batch_tokens=BATCH, lr=LR,
                      l1_coefficient=l1, metrics_every=10**6, dead_feature_window=DEAD_STEPS * BATCH)
    feed = _feed(batches, clock)
    sae = train_saes(lambda start: ({HOOK: x} for x in feed), [cfg.sae_config(D_IN, HOOK)], cfg)[0]
    clock()
    folded = sae.folded()
    return folded.encode, folded.decode


def sparsify(arch, batches, steps, l1, clock):
    from sparsify import SparseCoder, SparseCoderConfig

    assert arch == "topk", "sparsify trains TopK SAEs only"
    torch.manual_seed(0)
    sae = SparseCoder(D_IN, SparseCoderConfig(expansion_factor=8, k=K), device="cpu")
    opt = torch.optim.Adam(sae.parameters(), lr=LR)
    since = torch.zeros(WIDTH, dtype=torch.long)
    feed = _feed(batches, clock)
    for s in range(steps):
        x = next(feed)
        if s == 0:
            sae.b_dec.data = x.mean(0)
        sae.set_decoder_norm_to_unit_norm()
        out = sae(x, dead_mask=since > DEAD_STEPS * BATCH)
        (out.fvu + out.auxk_loss / 32).backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            since += x.shape[0]
            since[out.latent_indices.flatten()] = 0
    clock()

    def encode(x):
        top = sae.encode(x)
        return torch.zeros(x.shape[0], WIDTH).scatter_(1, top.top_indices, top.top_acts)

    return encode, lambda z: z @ sae.W_dec + sae.b_dec


def saelens(arch, batches, steps, l1, clock):
    import os
    os.environ.setdefault("TQDM_DISABLE", "1")
    from sae_lens import SAETrainer
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(0)
    if arch == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=WIDTH, k=K))
    else:
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=D_IN, d_sae=WIDTH, l1_coefficient=l1))
    with torch.no_grad():
        sae.b_dec.copy_(batches[0].mean(0))
    cfg = SAETrainerConfig(total_training_samples=steps * BATCH, train_batch_size_samples=BATCH, lr=LR, lr_end=LR,
                           dead_feature_window=DEAD_STEPS, feature_sampling_window=10**6, device="cpu")
    SAETrainer(cfg, sae, data_provider=_feed(batches, clock)).fit()
    clock()
    sae.eval()

    def encode(x):
        z = sae.encode(x)
        return z.to_dense() if z.is_sparse else z

    return encode, sae.decode


TRAINERS = {"plain": plain, "mistudio": mistudio, "sparsify": sparsify, "saelens": saelens}


def train(tool: str, arch: str, batches, steps: int, l1: float, clock):
    return TRAINERS[tool](arch, batches, steps, l1, clock)
