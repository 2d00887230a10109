"""A few-second measurement of this machine, for estimates a user can trust: tokens per second of the model's
forward up to the hook (capture), of a full forward (the final evaluation splices the SAE into full forwards),
and of one SAE training step at the requested width.

Measured, not modelled: a FLOP count misses the model's non-matmul work, the TopK selection and the machine's load,
and on a 2-core CPU those are most of the error. Each probe is cached per process (keyed by model, hook depth,
context size, SAE shape, device and thread count), so Validate pays it once. On a busy machine the probe is slower,
and so will the run be: the estimate follows the machine as it is.
"""
from __future__ import annotations

import time

import torch

from .train_config import TrainConfig

_CACHE: dict[tuple, dict] = {}
PROBE_CONTEXTS = 8
SAE_PROBE_TOKENS = 1024


def _timed(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def _evaluation_forward(model, ids: torch.Tensor) -> None:
    """What the final evaluation does per forward: the full-vocabulary log-softmax in float32 and, once every
    three forwards, the KL between two of them (a plain forward misses both)."""
    from .evaluate import kl_sum, next_token_logprobs

    logprobs = next_token_logprobs(model, ids)
    kl_sum(logprobs[:, : max(1, logprobs.shape[1] // 3)], logprobs[:, : max(1, logprobs.shape[1] // 3)])


def model_rates(store, model_id: str, hook_names: list[str], context_size: int, device: str | None = None,
                dtype: str | None = None) -> dict:
    """`{capture, full}` tokens/s of this model here (loaded in `dtype`, as the job will load it), and `load_s`
    (seconds its first load took; 0 if cached)."""
    from ..model.hooks import capture, parse_hook
    from ..model.models import load_model

    key = ("model", model_id, tuple(sorted(hook_names)), context_size, device, dtype, torch.get_num_threads())
    if key in _CACHE:
        return {**_CACHE[key], "load_s": 0.0}
    t0 = time.perf_counter()
    loaded = load_model(store, model_id, device=device, dtype=dtype)
    load_s = time.perf_counter() - t0
    model = loaded.model
    for h in hook_names:
        parse_hook(model, h)
    vocab = int(getattr(model.config, "vocab_size", 1000))
    ids = torch.randint(3, max(vocab, 4), (PROBE_CONTEXTS, context_size), generator=torch.Generator().manual_seed(0))
    ids = ids.to(model.device)
    with torch.no_grad():
        capture(model, ids[:2], hook_names)  # warm-up: first-call allocations are not the steady state
        t_cap = _timed(lambda: capture(model, ids, hook_names))
        half = ids[:PROBE_CONTEXTS // 2]
        t_full = _timed(lambda: _evaluation_forward(model, half))
    rates = {"capture": ids.numel() / t_cap, "full": half.numel() / t_full}
    _CACHE[key] = rates
    return {**rates, "load_s": load_s}


def sae_rate(cfg: TrainConfig, d_in: int, device: str | None = None) -> float:
    """Training tokens/s of one SAE of this config (forward, backward, Adam, decoder renorm) here."""
    from .trainer import _Run

    d_sae = cfg.sae.d_sae or cfg.sae.expansion_factor * d_in
    key = ("sae", cfg.sae.architecture, d_in, d_sae, cfg.sae.k, device, torch.get_num_threads())
    if key in _CACHE:
        return _CACHE[key]["rate"]
    probe_cfg = TrainConfig.from_dict({**cfg.to_dict(), "batch_tokens": SAE_PROBE_TOKENS, "steps": 1000,
                                       "tokens": None, "target_l0": None, "lr_warmup_steps": 0,
                                       "lr_decay_steps": 0})
    run = _Run(0, probe_cfg.sae_config(d_in, "probe"), probe_cfg, torch.device(device or "cpu"))
    run.sync = getattr(run, "sync", None)  # one process: no torchrun gradient sync
    x = torch.randn(SAE_PROBE_TOKENS, d_in, generator=torch.Generator().manual_seed(0)).to(run.sae.device)
    run.initialise(x)
    run.step(x, 0)  # warm-up
    seconds = _timed(lambda: run.step(x, 1), repeat=3)
    rate = SAE_PROBE_TOKENS / seconds
    _CACHE[key] = {"rate": rate}
    return rate


def clear() -> None:
    """Forget measured rates (tests; or after the machine's load changed a lot)."""
    _CACHE.clear()
