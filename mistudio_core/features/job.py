"""The "extract" job kind and `run_extraction`, the store-level entry point the job, CLI and tests share.

`run_extraction` resolves everything from the library: the SAE's manifest names its model and hook point, the
dataset must be tokenized for that model (otherwise `load_tokenized` raises a NotFoundError naming the models it
*is* tokenized for, and we add how to fix it), and results go to `saes/<sae_id>/features/` atomically.

Stopping: a user's cancel keeps the statistics gathered so far (marked `stopped_early` in `meta.json`), which is
useful on a long run; an app shutdown saves nothing and a resume starts the pass again (extraction keeps no
checkpoint: its state is d_sae × k slots that a restart rebuilds deterministically).
"""
from __future__ import annotations

import time
from typing import Callable

from ..platform.errors import NotFoundError, ValidationError
from ..jobs.kinds import register_job
from .extract import ExtractConfig, extract_features
from .results import FeatureResults, features_dir


def sae_model_and_hook(store, sae_id: str) -> tuple[str, str]:
    manifest = store.manifest("saes", sae_id)
    model_id, hook = manifest.get("model_id"), manifest.get("hook_name")
    if not model_id or not hook:
        raise ValidationError(f"SAE {sae_id!r} does not record its model and hook point (manifest model_id / "
                              "hook_name); re-import it with those set.")
    return model_id, hook


def load_tokens_for(store, dataset_id: str, model_id: str):
    from ..data.tokenize import load_tokenized

    try:
        return load_tokenized(store, dataset_id, model_id).tokens
    except NotFoundError as e:
        raise NotFoundError(f"{e} Extraction needs the dataset tokenized for the SAE's model {model_id!r}: "
                            f"tokenize {dataset_id!r} with {model_id!r} first (Datasets tab).") from e


def run_extraction(store, cfg: ExtractConfig, progress: Callable[[float, str], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, save_partial: Callable[[], bool] | None = None,
                   device: str | None = None, quantization: str | None = None) -> FeatureResults | None:
    """Extract features of `cfg.sae_id` on `cfg.dataset_id` and save them. If `should_stop` fires, results are
    saved only when `save_partial()` says so (default: yes); otherwise returns None. `quantization` ("8bit" /
    "4bit", CUDA only) is passed to `load_model`."""
    if not cfg.sae_id or not cfg.dataset_id:
        raise ValidationError("Choose an SAE and a dataset to extract features from.")
    from ..model.compute import resolve_model_dtype
    from ..model.models import load_model
    from ..sae.library import load_library_sae

    model_id, hook = sae_model_and_hook(store, cfg.sae_id)
    tokens = load_tokens_for(store, cfg.dataset_id, model_id)
    dtype = resolve_model_dtype(cfg.model_dtype, device) if cfg.model_dtype else None  # None: the default
    loaded = load_model(store, model_id, device=device, dtype=dtype, quantization=quantization)
    sae = load_library_sae(store, cfg.sae_id, device=str(loaded.device))
    results = extract_features(loaded, sae, tokens, cfg, progress, should_stop, hook_name=hook)
    if results.meta["stopped_early"] and save_partial is not None and not save_partial():
        return None
    results.meta.update(sae_id=cfg.sae_id, dataset_id=cfg.dataset_id, model_id=model_id)
    results.save(features_dir(store, cfg.sae_id))
    return FeatureResults.load(store, cfg.sae_id)


# What every door asks for unless told otherwise: bf16 forward and search where this machine runs them faster.
DOOR_DEFAULTS = {"model_dtype": "auto"}


def build(preset: str | None = None, store=None, **fields) -> dict:
    """The "extract" spec (`spec.build("extract", ...)`): `ExtractConfig` fields (strict; unset ones keep their
    defaults) plus an optional `quantization`; checked against the store when one is given."""
    given = {**DOOR_DEFAULTS, **{k: v for k, v in fields.items() if v is not None}}
    quantization = given.pop("quantization", None)
    spec = {**ExtractConfig.from_dict(given).to_dict(), **({"quantization": quantization} if quantization else {})}
    validate(spec, store)
    return spec


def validate(spec: dict, store=None) -> ExtractConfig:
    """The one check of an "extract" spec: its settings; with a store, the SAE (its model and hook) and the
    dataset's tokenization for that model — so a bad pick fails at submit, not after a model load."""
    cfg = ExtractConfig.from_dict({k: v for k, v in spec.items() if k != "quantization"})
    if not cfg.sae_id or not cfg.dataset_id:
        raise ValidationError("Choose an SAE and a dataset to extract features from.")
    if store is not None:
        load_tokens_for(store, cfg.dataset_id, sae_model_and_hook(store, cfg.sae_id)[0])
    return cfg


@register_job("extract", validate=validate)
def run(spec: dict, ctx) -> dict:
    """Job kind "extract": spec is an `ExtractConfig` dict, plus an optional `quantization` ("8bit"/"4bit"; the
    submitter checks it with `models.check_quantization`). Progress steps count tokens (pass 2 and the logits
    are scaled onto the same axis), so the registry's rate and ETA cover the whole job."""
    cfg = validate(spec, ctx.store)
    total = cfg.n_tokens
    t0 = time.time()

    def progress(frac: float, msg: str) -> None:
        ctx.report(int(frac * total), total, phase=msg.split(":")[0], elapsed_s=time.time() - t0)

    ctx.log(f"extracting features of {cfg.sae_id} on {cfg.dataset_id} ({cfg.n_tokens:,} tokens)")
    res = run_extraction(ctx.store, cfg, progress, ctx.should_stop, save_partial=lambda: ctx.cancelled,
                         device=cfg.device, quantization=spec.get("quantization") or None)
    if res is None:
        ctx.log("stopped before the end; nothing saved")
        return {"saved": False}
    ctx.log(f"saved {res.n_features} features over {res.n_tokens:,} tokens")
    freq = res.frequencies()
    return {"saved": True, "sae_id": cfg.sae_id, "n_tokens": res.n_tokens, "n_features": res.n_features,
            "dead": int((freq == 0).sum()), "dense": int((freq > cfg.dense_threshold).sum()),
            "stopped_early": bool(res.meta["stopped_early"])}
