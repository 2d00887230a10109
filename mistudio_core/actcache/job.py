"""The training job's side of the activation cache: pick or capture the cache a job trains on, and say what the
job is doing in its record's `message` (the line the Training tab's card shows: loading, capturing x/y, training on
N tokens for E epochs, evaluating).

Spec field `cache` (all optional)::

    {"mode": "off" | "use" | "build", "dtype": "bfloat16" | "float16" | "float32", "tokens": n}

"off" (default) streams from the model every epoch; "use" reuses a matching cache or captures one; "build" always
captures a new one. `tokens` is how many TRAIN-split tokens to capture (default: what the run trains on, capped by
the split); a run longer than that replays the cache for several epochs. The chosen cache is pinned in the run
folder, so a resumed job replays the same bytes from the same batch and ends bit-identical.
"""
from __future__ import annotations

import time

from . import cache as actcache
from ..platform.errors import ValidationError

DEFAULTS = {"mode": "off", "dtype": "bfloat16", "tokens": None}


def cache_options(raw: dict | None) -> dict:
    """The spec's `cache` dict with defaults filled in and checked."""
    opts = {**DEFAULTS, **(raw or {})}
    unknown = sorted(set(opts) - set(DEFAULTS))
    if unknown:
        raise ValidationError(f"Unknown cache options {unknown}; valid: {sorted(DEFAULTS)}.")
    if opts["mode"] not in actcache.MODES:
        raise ValidationError(f"cache.mode must be one of {actcache.MODES} (got {opts['mode']!r}).")
    if opts["dtype"] not in actcache.DTYPES:
        raise ValidationError(f"cache.dtype must be one of {sorted(actcache.DTYPES)} (got {opts['dtype']!r}).")
    if opts["tokens"] is not None and (not isinstance(opts["tokens"], int) or opts["tokens"] < 1):
        raise ValidationError(f"cache.tokens must be a whole number >= 1 or empty (got {opts['tokens']!r}).")
    return opts


def say(ctx, text: str) -> None:
    """One human line on the job's record (the card shows it) and in its log."""
    ctx.log(text)
    try:
        ctx.registry.update(ctx.job_id, message=text)
    except AttributeError:  # a bare context (tests) without a registry
        pass


def prepare(ctx, spec, loaded, tok, tcfg) -> dict | None:
    """The cache manifest the job trains on, None for a live stream (mode "off"); raises `Stopped` when the
    capture was cancelled."""
    opts = cache_options(getattr(spec, "cache", None))
    if opts["mode"] == "off":
        say(ctx, "training: activations streamed from the model (no cache)")
        return None
    stream_opts = dict(spec.stream or {})
    train_ids, _ = tok.split_ids()
    identity = job_identity(ctx.store, spec, tcfg, train_ids, tok.config.get("bos_token_id"), loaded.dtype)
    if tcfg.data.token_noise:
        stream_opts.update(noise_options(tcfg, loaded))
    n_tokens = opts["tokens"] or tcfg.optim.total_steps * tcfg.optim.batch_tokens
    last = [0.0]

    def progress(frac: float, msg: str) -> None:
        if time.time() - last[0] >= 1.0 or frac >= 1.0:
            last[0] = time.time()
            say(ctx, f"{msg} ({frac:.0%})")

    manifest = actcache.ensure_cache(ctx.store, loaded.model, tok, spec.hook_names, n_tokens, identity,
                                     mode=opts["mode"], dtype=opts["dtype"], context_ids=train_ids,
                                     run_dir=ctx.run_dir, log=lambda m: say(ctx, m), progress=progress,
                                     should_stop=ctx.should_stop, **stream_opts)
    if manifest is None:
        raise Stopped()
    epochs = tcfg.optim.total_steps * tcfg.optim.batch_tokens / manifest["n_tokens"]
    say(ctx, f"training on cached activations {manifest['id']} ({manifest['n_tokens']:,} tokens, "
             f"{epochs:.1f} epochs)")
    return manifest


def job_identity(store, spec, tcfg, train_ids, bos_token_id: int | None, model_dtype: str) -> dict:
    """The identity of the cache a training job trains on — the one definition the job and its estimate share
    (`sae/train_spec.estimate` looks for the same cache the job will use)."""
    stream_opts = spec.stream or {}
    identity = actcache.cache_identity(store, spec.model_id, spec.dataset_id, context_ids=train_ids,
                                       skip_bos=stream_opts.get("skip_bos", True), bos_token_id=bos_token_id,
                                       pad_token_id=stream_opts.get("pad_token_id"))
    if model_dtype != "float32":  # a bf16 model's activations are not an fp32 model's: never mix the two
        identity["model_dtype"] = model_dtype
    if tcfg.data.token_noise:  # noised contexts are other activations too
        identity["token_noise"] = list(tcfg.data.token_noise)
    return identity


def stream(ctx, spec, manifest: dict, loaded, start_batch: int, batch_tokens: int):
    """A `CacheStream` over the job's hooks of the pinned cache, from batch `start_batch`."""
    return actcache.CacheStream(ctx.store, manifest["id"], spec.hook_names, batch_tokens=batch_tokens,
                                seed=(spec.stream or {}).get("seed", 0), start_batch=start_batch,
                                device=loaded.model.device)


def noise_options(tcfg, loaded) -> dict:
    """ActivationStream kwargs for the train config's token noise ({} when off)."""
    if not tcfg.data.token_noise:
        return {}
    from ..model.activations import noise_pool
    return {"token_noise": tcfg.data.token_noise,
            "noise_pool": noise_pool(loaded.tokenizer, loaded.model.config.vocab_size)}


class Stopped(Exception):
    """The capture saw should_stop(): the job returns {"stopped": True}."""
