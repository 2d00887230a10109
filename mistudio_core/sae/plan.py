"""Before a training starts: validation against the library and estimates of time, memory and disk; while it
runs: quality warnings from its metric history. UI-free, so the Training tab, the CLI and tests share it.

Time is estimated from a few-second probe of this machine (`sae/probe.py`: capture, full forward and SAE-step
tokens per second, measured once per process) times the work the job will do:

    seconds = model load + capture tokens / capture rate + training tokens × SAEs / SAE-step rate
              + evaluation contexts × context size × (1 / capture rate + 3 / full-forward rate)

where capture tokens are the cache to capture (0 when a matching cache exists) or, without a cache, every training
token. Memory = SAE parameters + Adam + gradients + the step's dense pre-activations + model weights. Disk = the
activation cache to capture + a checkpoint + the saved SAE. Without a probe (`probe=False`, or the model failed to
load) the time falls back to FLOP counts at an assumed throughput and is labelled rough.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..platform.errors import MistudioError, ValidationError
from ..platform.store import Store, read_json
from .train_config import TrainConfig

ASSUMED_FLOPS = {"cpu": 1.5e11, "cuda": 5e13}
EVAL_CONTEXTS = 64


@dataclass
class Plan:
    d_in: int
    """Width of the hooked activations (the model's d_model)."""
    d_sae: int
    """Latents per SAE."""
    n_saes: int
    """SAEs trained in this job (one per hook point)."""
    tokens: int
    """Training tokens (steps × batch_tokens)."""
    memory_bytes: int
    """Estimated peak memory: model weights + every SAE's parameters, Adam state, gradients and step buffers."""
    seconds: float
    """Estimated wall time: load + capture + training + final evaluation."""
    disk_bytes: int = 0
    """Disk the job writes: the activation cache it captures (if any), a checkpoint and the saved SAEs."""
    capture_tokens: int = 0
    """Tokens the model runs on for training (the cache to capture, or every training token without a cache)."""
    epochs: float = 1.0
    """Passes over the training data (over the cache when there is one, else over the train split)."""
    breakdown: dict = field(default_factory=dict)
    """Seconds per phase: load, capture, train, evaluate."""
    calibrated: bool = False
    """True when the rates were measured on this machine (probe), False for the FLOP-count fallback."""
    cache_note: str = ""
    """What happens with the activation cache (reused, captured, or none)."""
    advice: list = field(default_factory=list)
    """Warnings about the settings (e.g. an L1 coefficient far outside its useful range)."""

    def summary(self) -> str:
        parts = ", ".join(f"{k} {_duration(v)}" for k, v in self.breakdown.items() if v >= 0.5)
        how = "measured on this machine" if self.calibrated else "rough: FLOP count"
        epochs = f", {self.epochs:.1f} epochs" if self.epochs >= 1.05 else ""
        return (f"{self.n_saes} SAE(s) of {self.d_in}→{self.d_sae} latents on {self.tokens:,} tokens{epochs}; "
                f"{self.cache_note}≈{self.memory_bytes / 2**30:.2f} GiB memory, ≈{_bytes(self.disk_bytes)} disk, "
                f"≈{_duration(self.seconds)} ({parts}; {how}).")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _layer(hook: str) -> int:
    m = re.match(r"blocks\.(\d+)\.", hook)
    return int(m.group(1)) if m else 0


def l1_advice(cfg: TrainConfig, d_in: int) -> str | None:
    """A warning when a standard SAE's λ is far from its useful range on this input scale (None if fine)."""
    if cfg.sae.architecture != "standard" or cfg.sae.target_l0 is not None:
        return None
    if cfg.sae.normalize_activations != "expected_average_only_in":
        return ("λ's useful range depends on your activations' scale when normalize_activations is 'none'; "
                "consider target L0 mode, which finds λ for you.")
    ref = 2.0 * math.sqrt(d_in / 576)
    if 0.2 * ref <= cfg.optim.l1_coefficient <= 10 * ref:
        return None
    side = "below" if cfg.optim.l1_coefficient < ref else "above"
    effect = "the SAE will not be sparse (L0 in the hundreds or more)" if side == "below" else \
        "most latents will die (L0 near 0)"
    return (f"L1 coefficient {cfg.optim.l1_coefficient:g} is far {side} the useful range here (≈{0.2 * ref:.2g}–"
            f"{10 * ref:.2g}, typical {ref:.2g} for d_in {d_in}): {effect}. λ here weighs Σ z·‖W_dec‖ against the "
            "squared error summed over d_in on inputs scaled to mean norm √d_in, so values like 0.001 from other "
            "tools do not carry over. Use target L0 mode, or λ ≈ " + f"{ref:.2g}.")


def _tokenization(store: Store, dataset_id: str, model_id: str, role: str = "trained on") -> tuple[dict, dict]:
    """(config, stats) of a tokenization, read from its JSON files (the token grid is not loaded)."""
    from ..data.tokenize import tokenized_dir

    folder = tokenized_dir(store, dataset_id, model_id)
    if not (folder / "config.json").is_file():
        others = store.manifest("datasets", dataset_id).get("tokenizations") or []
        raise ValidationError(f"Dataset {dataset_id!r} is not tokenized for {model_id!r}"
                              + (f" (only for {others})" if others else "")
                              + f", so it cannot be {role}. Tokenize it with this model's tokenizer in the Datasets "
                              "tab first.")
    stats = read_json(folder / "stats.json") if (folder / "stats.json").is_file() else {}
    return read_json(folder / "config.json"), stats


def _split(store: Store, s) -> tuple[dict, int, int, int, int]:
    """(tokenization config, context size, contexts, train contexts, usable training tokens) of the spec's
    dataset, from its JSON files."""
    from ..data.tokenize import heldout_of

    config, stats = _tokenization(store, s.dataset_id, s.model_id)
    ctx_size = int(config.get("context_size") or stats.get("context_size") or 128)
    n_contexts = int(stats.get("n_contexts") or 0)
    train_contexts = heldout_of(config, n_contexts)["first_context"] if n_contexts else 0
    return config, ctx_size, n_contexts, train_contexts, train_contexts * (ctx_size - 1)  # position 0 skipped


def check_library(store: Store, s, cfg: TrainConfig) -> None:
    """The library side of validating a "train" spec `s` (a `TrainJobSpec`): the model, its hooks, the
    tokenizations, the SAE width, enough training tokens and held-out contexts. Raises with the fix."""
    from ..model.hooks import is_extra_hook  # hook_mlp_in (transcoders) is valid but not listed
    from .config import resolve_hook_out

    model = store.manifest("models", s.model_id)
    valid = model.get("hook_points") or []
    wanted = list(s.hook_names)
    if cfg.sae.hook_out:  # a transcoder also captures the hook it reconstructs: refuse a wrong one now, not at start
        wanted += [resolve_hook_out(h, cfg.sae.hook_out) for h in s.hook_names]
    bad = [h for h in dict.fromkeys(wanted) if valid and h not in valid
           and not is_extra_hook(h, model.get("n_layers", 0))]
    if bad:
        raise ValidationError(f"Hook point(s) {bad} do not exist on {s.model_id}. Valid: {', '.join(valid[:8])} … "
                              f"({len(valid)} in all, blocks.0 to blocks.{model.get('n_layers', 1) - 1}).")
    d_in = int(model["d_model"])
    d_sae = cfg.sae.d_sae or cfg.sae.expansion_factor * d_in
    if cfg.sae.architecture in ("topk", "batchtopk", "matryoshka_batchtopk") and cfg.sae.k > d_sae:
        raise ValidationError(f"k={cfg.sae.k} is larger than the SAE width d_sae={d_sae}; lower k or widen the SAE.")
    config, ctx_size, n_contexts, train_contexts, usable = _split(store, s)
    if usable < cfg.optim.batch_tokens:
        raise ValidationError(f"Dataset {s.dataset_id!r} has {usable:,} usable training tokens, fewer than one batch "
                              f"of {cfg.optim.batch_tokens:,}. Lower batch_tokens or add text.")
    for dataset_id in s.eval_datasets:
        _tokenization(store, dataset_id, s.model_id, role="also evaluated on")
    held = n_contexts - train_contexts
    if s.eval_contexts and n_contexts and s.eval_contexts > held:
        raise ValidationError(f"eval_contexts {s.eval_contexts} is more than the {held} held-out contexts of "
                              f"{s.dataset_id!r}; lower it (or leave it empty for up to {EVAL_CONTEXTS}).")


def estimate_plan(store: Store, s, cfg: TrainConfig, probe: bool = True) -> Plan:
    """Time per phase, memory and disk of the validated "train" spec `s` (see the module doc)."""
    from ..model.compute import resolve_model_dtype

    model = store.manifest("models", s.model_id)
    config, ctx_size, n_contexts, train_contexts, usable = _split(store, s)
    d_in = int(model["d_model"])
    d_sae = cfg.sae.d_sae or cfg.sae.expansion_factor * d_in
    device = s.device or "cpu"
    dtype = resolve_model_dtype(s.model_dtype, device)
    work = _work(store, s, cfg, usable, train_contexts, config.get("bos_token_id"), dtype)
    eval_contexts = min(s.eval_contexts or EVAL_CONTEXTS, max(n_contexts - train_contexts, 0))
    plan = _estimate(store, model, d_in, d_sae, s.hook_names, cfg, device, ctx_size, work, probe,
                     eval_contexts * (1 + len(s.eval_datasets)), dtype, s.eval_downstream)
    plan.advice = [a for a in [l1_advice(cfg, d_in)] if a]
    return plan


def _work(store, s, cfg, usable: int, train_contexts: int, bos: int | None, model_dtype: str = "float32") -> dict:
    """What the job will run the model on: capture tokens, epochs, and a line about the cache."""
    import torch

    from ..actcache import cache as actcache
    from ..actcache.job import cache_options, job_identity

    tokens = cfg.optim.total_steps * cfg.optim.batch_tokens
    cache = cache_options(s.cache)
    if cache["mode"] == "off":
        return {"capture": tokens, "epochs": tokens / usable, "note": "", "cache_bytes": 0}
    want = min(int(cache["tokens"] or tokens), usable)
    dtype = cache["dtype"]
    if cache["mode"] == "use":
        ident = job_identity(store, s, cfg, torch.arange(train_contexts), bos, model_dtype)  # the job's own
        found = actcache.find_cache(store, ident, s.hook_names, want, dtype)
        if found:
            return {"capture": 0, "epochs": tokens / found["n_tokens"], "cache_bytes": 0,
                    "note": f"reuses activation cache {found['id']} ({found['n_tokens']:,} tokens); "}
    size = actcache.estimate_bytes(want, [int(store.manifest('models', s.model_id)['d_model'])] * len(s.hook_names),
                                   dtype)
    return {"capture": want, "epochs": tokens / want, "cache_bytes": size,
            "note": f"captures {want:,} tokens into an activation cache ({_bytes(size)}, {dtype}); "}


def _estimate(store, model: dict, d_in: int, d_sae: int, hook_names: list[str], cfg: TrainConfig, device: str,
              ctx_size: int, work: dict, probe: bool, eval_contexts: int, model_dtype: str = "float32",
              downstream: bool = True) -> Plan:
    n_saes, tokens = len(hook_names), cfg.optim.total_steps * cfg.optim.batch_tokens
    sae_params = 2 * d_in * d_sae + d_sae + d_in
    # params + grads + 2 Adam moments, plus the step's dense pre-activations (x2 for the top-k selection)
    sae_bytes = n_saes * (4 * sae_params * 4 + 2 * cfg.optim.batch_tokens * d_sae * 4)
    model_bytes = int(model.get("n_params") or 0) * 4
    disk = work["cache_bytes"] + n_saes * sae_params * 4 * 5  # checkpoint (params + 2 moments + ...) + saved SAE
    eval_tokens = eval_contexts * ctx_size * n_saes
    rates = _rates(store, model, hook_names, cfg, d_in, device, ctx_size, model_dtype) if probe else None
    if rates:
        breakdown = {"load": rates["load_s"], "capture": work["capture"] / rates["capture"],
                     "training": tokens * n_saes / rates["sae"] * 1.03,  # +3%: reading the cache, reports
                     "evaluation": eval_tokens * (1 / rates["capture"] + 3 * downstream / rates["full"])}
    else:
        flops = ASSUMED_FLOPS.get(device, ASSUMED_FLOPS["cpu"])
        layer = max(_layer(h) for h in hook_names)
        per_token_model = 2 * int(model.get("n_params") or 0) / max(int(model.get("n_layers") or 1), 1)
        sae_flop = (6 if cfg.sae.architecture == "standard" else 3) * 2 * d_in * d_sae
        breakdown = {"capture": work["capture"] * per_token_model * (layer + 1) / flops,
                     "training": tokens * n_saes * sae_flop / flops}
    return Plan(d_in, d_sae, n_saes, tokens, sae_bytes + model_bytes, sum(breakdown.values()), disk,
                work["capture"], work["epochs"], breakdown, bool(rates), work["note"])


def _rates(store, model, hook_names, cfg, d_in, device, ctx_size, model_dtype: str = "float32") -> dict | None:
    from . import probe

    try:
        rates = probe.model_rates(store, model["id"], hook_names, ctx_size, device, dtype=model_dtype)
        return {**rates, "sae": probe.sae_rate(cfg, d_in, device)}
    except (MistudioError, OSError, RuntimeError):
        return None  # e.g. a model that cannot load here: the FLOP-count estimate stands in


def training_warnings(history: list[dict], d_sae: int | None = None) -> list[str]:
    """Live quality warnings from a job's metric rows (oldest first)."""
    rows = [r for r in history if "loss" in r]
    if len(rows) < 3:
        return []
    out, last = [], rows[-1]
    dead = [r.get("dead_fraction", 0.0) for r in rows]
    if dead[-1] > 0.3 and dead[-1] > dead[len(dead) // 2] + 0.05:
        out.append(f"Dead latents rising: {dead[-1]:.0%} have not fired recently. Lower lr, raise aux_coefficient "
                   "(topk) or lower l1_coefficient (standard).")
    l0 = last.get("l0")
    if l0 is not None and l0 < 1.0:
        out.append(f"L0 collapsing toward zero ({l0:.2f} active latents per token): lower l1_coefficient.")
    if l0 is not None and d_sae and l0 > 0.25 * d_sae:
        out.append(f"L0 exploding ({l0:.0f} of {d_sae} latents active per token): raise l1_coefficient.")
    best = min(r["loss"] for r in rows)
    if last["loss"] != last["loss"] or last["loss"] > 3 * best + 1e-9:
        out.append(f"Loss diverging ({last['loss']:.4g} vs best {best:.4g}): lower lr or add warm-up.")
    return out
