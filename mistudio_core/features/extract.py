"""Feature extraction: one streaming pass over a tokenized dataset.

For each batch of contexts, run the model up to the SAE's hook (`hooks.capture` stops the forward there), encode
with the SAE to its nonzero codes (`sparse_encode`: a TopK SAE's k per token, never the dense codes), and feed
them to `FeatureAccumulator` (counts, sums, maxima, log-binned histograms, running
top-k contexts, a random reservoir for quantile examples, and each kept example's window of activations, cut
from the batch when the example is taken). Nothing per token is kept, and no context is run twice: the old
second pass that re-encoded every example context cost as much as the first on wide SAEs.
Contexts are visited in a seeded random order, so `n_tokens` smaller than the dataset is a fair sample of it.

Memory: the batch is encoded in chunks of contexts of at most MAX_CODE_ELEMENTS pre-activations, so the working
set does not grow with the SAE's width; what does is the output itself (F × (top_k + reservoir) slots and windows).
Tokens may be an int32 (memory-mapped) grid: only the batch's rows are read and widened to int64.

Dtypes: the model computes in whatever dtype it was loaded in (`run_extraction` loads it in
`compute.resolve_model_dtype(cfg.model_dtype)`: bf16 where that is faster); a TopK SAE's search runs in
`resolve_search_dtype` (bf16 candidates, fp32-rescored values: `sparse_encode.py`). `meta["dtypes"]` records
both, so saved results say how they were computed.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from ..model.compute import CHOICES, MIN_SPEEDUP, cpu_bf16_speedup
from ..platform.errors import ValidationError
from ..platform.records import from_dict
from .bookkeeping import FeatureAccumulator
from .logits import decoder_logits
from .results import FeatureResults
from .scores import LENS_TOKENS, extraction_scores
from .sparse_encode import prepare_search, sparse_codes
from .token_filters import eligible, excluded_vocab, special_ids, validate_filters, vocab_strings

Progress = Callable[[float, str], None]
HIST_BINS, HIST_MIN, HIST_MAX = 80, 1e-4, 1e4  # 10 log bins per decade over 8 decades
MAX_CODE_ELEMENTS = 1 << 24  # dense codes per encode call (64 MB fp32), so memory does not grow with d_sae


@dataclass
class ExtractConfig:
    sae_id: str = ""
    """Library id of the SAE (`saes/<id>`); its manifest names the model and hook point."""
    dataset_id: str = ""
    """Dataset to read; it must be tokenized for the SAE's model."""
    n_tokens: int = 1_000_000
    """Tokens to process (whole contexts, drawn in a seeded random order); capped at the dataset's size."""
    top_k: int = 100
    """Top examples kept per feature (one per context, at the context's peak), 1..1000."""
    threshold: float = 0.0
    """A feature fires at a token when its activation is above this."""
    window_before: int = 16
    """Tokens shown before the peak in each example."""
    window_after: int = 8
    """Tokens shown after the peak in each example."""
    n_quantiles: int = 4
    """Quantile groups for the quantile examples (random contexts outside the top-k, lowest group first)."""
    quantile_examples: int = 5
    """Examples per quantile group."""
    filters: list[str] = field(default_factory=lambda: ["special"])
    """Token classes that never count as firing: special, single_char, punctuation, numbers, stop_words."""
    dense_threshold: float = 0.1
    """A feature firing on more than this fraction of tokens is flagged dense."""
    n_logits: int = 10
    """Top and bottom logits kept per feature."""
    cooc_features: int = 256
    """Co-occurrence counts are kept among this many of the most frequent features (0 = off)."""
    batch_contexts: int = 32
    """Contexts per forward pass."""
    seed: int = 0
    """Seed of the context order and of the quantile sampling."""
    autocast: bool = False
    """Run the model and SAE under bf16 autocast on CUDA (faster; ~3 significant digits); ignored on CPU."""
    model_dtype: str | None = None
    """Dtype the model computes in: "auto" (bfloat16 on a GPU, or on a CPU where bf16 matmuls are measurably
    faster, `compute.py`), "float32" or "bfloat16". None: the model's default (float32 on a CPU), and an fp32
    search (jobs from before this option keep their numbers). New jobs from the app and the CLI ask for "auto"."""
    search_dtype: str = "auto"
    """Dtype of a TopK SAE's top-k search (values are always rescored in fp32, `sparse_encode.py`): "auto" is
    bfloat16 when the model computes in bf16 or this CPU's bf16 matmuls are ≥ 1.5× faster (float32 when
    model_dtype is None); "float32" is the exact fp32 search. Other architectures always encode in fp32."""
    device: str | None = None
    """Device for the model and the SAE; None: CUDA if available, else CPU."""
    scores: bool = True
    """Compute each feature's input and output scores (`features/scores.py`: does it read the tokens it writes,
    does adding it make the model write them); off skips them and the results say "not computed"."""

    def __post_init__(self):
        checks = [
            (self.n_tokens >= 1, "n_tokens must be at least 1"),
            (1 <= self.top_k <= 1000, "top_k must be between 1 and 1000"),
            (self.threshold >= 0, "threshold must be >= 0"),
            (self.window_before >= 0 and self.window_after >= 0, "window_before/after must be >= 0"),
            (self.n_quantiles >= 0 and self.quantile_examples >= 0, "quantile settings must be >= 0"),
            (0 < self.dense_threshold <= 1, "dense_threshold must be in (0, 1]"),
            (self.n_logits >= 1 and self.batch_contexts >= 1, "n_logits and batch_contexts must be >= 1"),
            (self.cooc_features >= 0, "cooc_features must be >= 0"),
            (self.model_dtype is None or self.model_dtype in CHOICES,
             f"model_dtype must be one of {', '.join(CHOICES)} or empty (got {self.model_dtype!r})"),
            (self.search_dtype in CHOICES, f"search_dtype must be one of {', '.join(CHOICES)} "
                                           f"(got {self.search_dtype!r})"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValidationError(f"Invalid extraction setting: {msg}.")
        self.filters = validate_filters(self.filters)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ExtractConfig":
        return from_dict(cls, d, "extraction settings")


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when asked (a no-op elsewhere: on CPUs without AMX bf16 matmuls are slower)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def resolve_search_dtype(cfg: ExtractConfig, model_dtype: torch.dtype, device: torch.device) -> str:
    """The dtype of the TopK search this extraction runs (`ExtractConfig.search_dtype`): bf16 where it is the
    faster product — the model already computes in bf16 (a GPU, or "auto" on an AMX CPU), or this CPU's bf16
    matmuls are at least `compute.MIN_SPEEDUP` faster — since the fp32 rescore keeps the values exact."""
    if cfg.search_dtype != "auto":
        return cfg.search_dtype
    if cfg.model_dtype is None:
        return "float32"
    if model_dtype == torch.bfloat16:
        return "bfloat16"
    return "bfloat16" if device.type == "cpu" and cpu_bf16_speedup() >= MIN_SPEEDUP else "float32"


def _clock() -> tuple[float, float]:
    """(wall, CPU) seconds now; CPU = this process's, all threads (the fair measure on a shared machine)."""
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    now = _clock()
    return now[0] - t0[0], now[1] - t0[1]


def _main_pass(model, sae, hook, tokens, order, excluded, acc, cfg, progress, should_stop,
               search=None) -> tuple[int, tuple[float, float]]:
    """Pass 1: capture B contexts at a time, encode them to their nonzero codes (chunks of contexts small enough
    that a chunk's pre-activations stay under MAX_CODE_ELEMENTS whatever the SAE's width), account the batch.
    Returns (contexts done, (wall, CPU) seconds of the first batch: it also fills every feature's empty slots, a
    fixed cost)."""
    from ..model.hooks import capture

    B, T, t0 = cfg.batch_contexts, tokens.shape[1], time.time()
    sae_param = next(sae.parameters())
    dev, done, first_s = _device_of(model), 0, (0.0, 0.0)
    for s in range(0, len(order), B):
        if should_stop and should_stop():
            break
        t_batch = _clock()
        ids = order[s:s + B]
        batch = tokens[ids].long()  # rows read on demand from the (int32, memory-mapped) grid
        keep = eligible(batch, excluded)
        with torch.no_grad(), _autocast(dev, cfg.autocast):
            acts = capture(model, batch.to(dev), [hook])[hook].to(sae_param.device, sae_param.dtype)
            tok, feat, vals = sparse_codes(sae, acts, MAX_CODE_ELEMENTS, search)
        acc.update_sparse(tok, feat, vals, len(ids), T, ids, keep)
        if s == 0:
            first_s = _since(t_batch)
        done = s + len(ids)
        if progress:
            rate = done * T / max(time.time() - t0, 1e-9)
            eta = (len(order) - done) * T / max(rate, 1e-9)
            progress(0.95 * done / len(order),
                     f"{done * T:,}/{len(order) * T:,} tokens · {rate:,.0f} tok/s · ETA {eta:,.0f}s")
    return done, first_s


def extract_features(loaded_model, sae, tokens: torch.Tensor, cfg: ExtractConfig, progress: Progress | None = None,
                     should_stop: Callable[[], bool] | None = None, hook_name: str | None = None) -> FeatureResults:
    """Run the pass and the decoder-logit lists; returns in-memory `FeatureResults` (call `.save(folder)`).
    `meta["seconds"]` splits the time: setup (vocabulary strings), pass (first_batch of it apart), logits and
    finish (quantile picks, sorting) — all but the pass after its first batch are fixed costs per SAE;
    `meta["cpu_seconds"]` is the same split in CPU seconds of this process (the fair one on a busy machine)."""
    t_setup = _clock()
    model, tokenizer = loaded_model.model, loaded_model.tokenizer
    hook = hook_name or (getattr(sae.cfg, "metadata", None) or {}).get("hook_name")
    if not hook:
        raise ValidationError("The SAE does not say which hook point it reads; pass hook_name (e.g. "
                              "blocks.8.hook_resid_post) or set cfg.metadata['hook_name'].")
    tokens = tokens if isinstance(tokens, torch.Tensor) else torch.as_tensor(tokens)  # int32 stays int32
    n_ctx_all, T = tokens.shape
    W = min(cfg.window_before + cfg.window_after + 1, T)
    vocab = vocab_strings(tokenizer, model.get_output_embeddings().weight.shape[0])
    excluded = excluded_vocab(vocab, special_ids(tokenizer), cfg.filters)
    n_ctx = min(n_ctx_all, math.ceil(cfg.n_tokens / T))
    order = torch.randperm(n_ctx_all, generator=torch.Generator().manual_seed(cfg.seed))[:n_ctx]
    sae_dev = next(sae.parameters()).device
    d_sae = sae.W_dec.shape[0]
    reservoir = max(64, 2 * cfg.n_quantiles * cfg.quantile_examples)
    acc = FeatureAccumulator(d_sae, cfg.top_k, cfg.threshold, reservoir, HIST_BINS, HIST_MIN, HIST_MAX,
                             cfg.cooc_features, cfg.seed, sae_dev, window=W, window_before=cfg.window_before)
    model_dtype = next(model.parameters()).dtype
    search_dtype = resolve_search_dtype(cfg, model_dtype, _device_of(model))
    search = prepare_search(sae, search_dtype)  # None: the plain encode (fp32 search, or not a TopK SAE)
    dtypes = {"model": str(model_dtype).removeprefix("torch."), "search": "float32" if search is None else
              search_dtype, "values": "float32", "search_margin": 0 if search is None else search.margin,
              "logits_search": str(search_dtype).removeprefix("torch.")}
    t_setup, t_pass = _since(t_setup), _clock()
    done, t_first = _main_pass(model, sae, hook, tokens, order, excluded, acc, cfg, progress, should_stop, search)
    del search
    t_pass, t_finish = _since(t_pass), _clock()
    quant = acc.quantile_picks(cfg.n_quantiles, cfg.quantile_examples)
    top = acc.sorted_top()
    ctx = torch.cat([top.ctx, quant.ctx], 1)
    start = (torch.cat([top.pos, quant.pos], 1) - cfg.window_before).clamp(0, max(T - W, 0))
    acts = torch.cat([top.win, quant.win], 1).cpu()
    if progress:
        progress(0.97, "decoder logits")
    t_finish, t_logits = _since(t_finish), _clock()
    n_logits = max(cfg.n_logits, LENS_TOKENS) if cfg.scores else cfg.n_logits  # one search serves both lists
    logit_t = decoder_logits(model, sae.W_dec, n_logits, search_dtype=search_dtype)
    t_logits, t_scores = _since(t_logits), _clock()
    if progress and cfg.scores:
        progress(0.98, "input and output scores")
    peaks = tokens[top.ctx.clamp_min(0).cpu(), top.pos.cpu()].long().masked_fill(top.ctx.cpu() < 0, -1)
    score_t, score_meta = extraction_scores(loaded_model, sae, hook, logit_t[0][:, :LENS_TOKENS], peaks,
                                            acc.max.float().cpu(), cfg.scores, done < n_ctx, should_stop)
    t_scores = _since(t_scores)
    logit_t = [t[:, :cfg.n_logits] for t in logit_t]
    used = torch.unique(ctx[ctx >= 0].cpu())
    k = cfg.top_k
    tensors = {
        "count": acc.count, "sum": acc.sum, "max": acc.max, "hist": acc.histogram().int(), "hist_edges": acc.edges(),
        "top_val": top.values, "top_ctx": top.ctx, "top_pos": top.pos, "top_start": start[:, :k],
        "quant_val": quant.values, "quant_ctx": quant.ctx, "quant_pos": quant.pos, "quant_start": start[:, k:],
        "top_logit_ids": logit_t[0], "top_logit_vals": logit_t[1],
        "bottom_logit_ids": logit_t[2], "bottom_logit_vals": logit_t[3],
        "ctx_ids": used, "ctx_tokens": tokens[used].int(), **score_t,
    }
    if acc.cooc is not None:
        tensors.update(cooc_ids=acc.cooc_ids, cooc=acc.cooc)
    meta = {"config": cfg.to_dict(), "hook_name": hook, "d_sae": d_sae, "n_tokens": acc.n_tokens,
            "n_contexts": done, "pass2_contexts": 0, "stopped_early": done < n_ctx, "window": W,
            "n_quantiles": cfg.n_quantiles, "quantile_examples": cfg.quantile_examples,
            "model_id": getattr(loaded_model, "model_id", None), "created": time.time(), "dtypes": dtypes,
            "scores": score_meta,
            **{key: {"setup": round(t_setup[i], 3), "pass": round(t_pass[i], 3), "first_batch": round(t_first[i], 3),
                     "logits": round(t_logits[i], 3), "scores": round(t_scores[i], 3),
                     "finish": round(t_finish[i], 3)}
               for i, key in enumerate(("seconds", "cpu_seconds"))}}
    windows = {"top_acts": acts[:, :k].contiguous(), "quant_acts": acts[:, k:].contiguous()}
    if progress:
        progress(1.0, f"done: {acc.n_tokens:,} tokens")
    return FeatureResults(meta, {n: t.cpu().contiguous() for n, t in tensors.items()}, vocab, windows)
