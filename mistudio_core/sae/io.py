"""SAELens v6 on-disk format: `cfg.json`, `sae_weights.safetensors`, `sparsity.safetensors`.

Written so SAELens 6.x `SAE.load_from_disk` loads ours (checked against sae-lens 6.54.12's source): top-level
`architecture` ("standard" | "topk" | "jumprelu"), `d_in`, `d_sae`, `dtype`, `device`, `apply_b_dec_to_input`,
`normalize_activations` ("none": our normalisation is folded into the weights), `reshape_activations`, `k` and
`rescale_acts_by_decoder_norm: false` for topk, and `metadata` (with `sae_lens_version` ≥ 6, which is how SAELens
tells a v6 config from a pre-v6 flat one). Weights: W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc, b_dec,
threshold (jumprelu). BatchTopK and Matryoshka-BatchTopK SAEs are written as jumprelu with their threshold, as
SAELens does. Transcoders are written as SAELens's (skip_/jumprelu_)transcoder with `d_out`, `hook_name_out` and
W_skip (see `architectures/transcoder.py`).
Pre-v6 flat configs (model_name/hook_name at top level, `activation_fn_str`, `activation_fn_kwargs: {k}`) load too.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..platform.errors import NotFoundError, ValidationError
from ..platform.store import write_json_atomic
from .architectures import get as get_architecture
from .architectures.transcoder import parse_name, saved_name
from .config import SAEConfig
from .model import SAE

SAELENS_VERSION = "6.54.12"  # the SAELens release whose format we write (and tested loading against)
METADATA_DEFAULTS = dict(model_name=None, hook_name=None, hook_head_index=None, context_size=None,
                         prepend_bos=True, dataset_path=None, model_class_name="AutoModelForCausalLM",
                         model_from_pretrained_kwargs={}, exclude_special_tokens=False, neuronpedia_id=None,
                         sae_lens_version=SAELENS_VERSION, sae_lens_training_version=None)
_META_KEYS = set(METADATA_DEFAULTS) | {"seqpos_slice", "hook_name_out", "hook_head_index_out"}
_RENAMES = {"hook_point": "hook_name", "hook_point_head_index": "hook_head_index",
            "activation_fn_str": "activation_fn"}


def cfg_json(sae: SAE) -> dict:
    """The cfg.json dict of an SAE whose normalisation is already folded (see `SAE.folded`)."""
    c = sae.cfg
    out = dict(architecture=saved_name(c), d_in=c.d_in, d_sae=c.d_sae, dtype=c.dtype, device="cpu",
               apply_b_dec_to_input=c.apply_b_dec_to_input, normalize_activations=c.normalize_activations,
               reshape_activations="none", metadata={**METADATA_DEFAULTS, **c.metadata,
                                                     "sae_lens_version": SAELENS_VERSION})
    out.update(get_architecture(c.architecture).export_fields(c))
    if c.d_out is not None:
        out["d_out"] = c.d_out
    return out


def save_sae(sae: SAE, folder, sparsity: torch.Tensor | None = None) -> Path:
    """Write `sae` (normalisation folded, batchtopk → jumprelu) to `folder` in SAELens v6 layout.

    `sparsity` is the per-latent firing frequency (fraction of tokens); stored as log10(freq + 1e-10)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = sae.folded()
    tensors = dict(W_enc=out.W_enc, W_dec=out.W_dec, b_enc=out.b_enc, b_dec=out.b_dec, threshold=out.threshold,
                   W_skip=out.W_skip)
    weights = {k: v.detach().contiguous().cpu() for k, v in tensors.items() if v is not None}
    save_file(weights, str(folder / "sae_weights.safetensors"))
    if sparsity is None:
        sparsity = getattr(sae, "feature_frequency", None)
    if sparsity is not None:
        log_freq = torch.log10(sparsity.detach().double().cpu() + 1e-10).float()
        save_file({"sparsity": log_freq.contiguous()}, str(folder / "sparsity.safetensors"))
    write_json_atomic(folder / "cfg.json", cfg_json(out))
    return folder


def parse_cfg(raw: dict, where: str = "cfg.json") -> SAEConfig:
    """SAEConfig from a v6 or pre-v6 SAELens cfg dict."""
    is_v6 = "metadata" in raw and "architecture" in raw
    cfg = dict(raw) if is_v6 else _from_pre_v6(raw)
    meta = dict(cfg.get("metadata") or {})
    arch, transcoder, skip = parse_name(cfg.get("architecture", "standard"))
    if arch == "matryoshka_batchtopk":  # a SAELens training config: its inference form is batchtopk's
        arch = "batchtopk"
    if arch not in ("standard", "topk", "jumprelu", "batchtopk"):
        raise ValidationError(f"{where}: architecture {arch!r} is not supported (standard, topk, jumprelu, "
                              f"batchtopk, and their transcoders).")
    if transcoder and cfg.get("hook_name_out") and "hook_name_out" not in meta:
        meta["hook_name_out"] = cfg["hook_name_out"]
    if cfg.get("reshape_activations", "none") != "none":
        raise ValidationError(f"{where}: reshape_activations={cfg['reshape_activations']!r} (hook_z SAEs) is not "
                              f"supported; use an SAE on a residual, MLP or attention-output hook.")
    norm = cfg.get("normalize_activations") or "none"
    if norm not in ("none", "expected_average_only_in"):
        raise ValidationError(f"{where}: normalize_activations={norm!r} is not supported; fold it into the "
                              f"weights before export.")
    try:
        k = cfg.get("k") if arch in ("topk", "batchtopk") else None
        return SAEConfig(arch, int(cfg["d_in"]), int(cfg["d_sae"]), k=int(k) if k is not None else None,
                         dtype=str(cfg.get("dtype", "float32")).replace("torch.", ""),
                         apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", not transcoder)),
                         normalize_activations="none", metadata=meta,
                         d_out=int(cfg.get("d_out") or cfg["d_in"]) if transcoder else None, skip_connection=skip)
    except KeyError as e:
        raise ValidationError(f"{where} lacks {e.args[0]!r}; it is not an SAELens cfg.json.") from None


def _from_pre_v6(raw: dict) -> dict:
    cfg = {_RENAMES.get(k, k): v for k, v in raw.items()}
    arch = cfg.get("architecture", "standard")
    if cfg.get("activation_fn") == "topk" or (cfg.get("activation_fn_kwargs") or {}).get("k"):
        arch, cfg["k"] = "topk", (cfg.get("activation_fn_kwargs") or {}).get("k", cfg.get("k"))
    if isinstance(cfg.get("normalize_activations"), bool):
        cfg["normalize_activations"] = "expected_average_only_in" if cfg["normalize_activations"] else "none"
    cfg["architecture"] = arch
    cfg["metadata"] = {k: v for k, v in cfg.items() if k in _META_KEYS}
    return cfg


def _fold_decoder_norms(sae: SAE) -> None:
    """SAELens TopK with rescale_acts_by_decoder_norm (its training default) encodes (x·W_enc + b_enc)·‖W_dec[i]‖
    and decodes Σ z_i·W_dec[i]/‖W_dec[i]‖: scaling W_enc's columns and b_enc by the norms and W_dec's rows by their
    inverse gives a plain TopK SAE with the same codes and reconstructions (SAELens's own fold_W_dec_norm)."""
    n = sae.W_dec.norm(dim=1).clamp_min(1e-12)
    sae.W_enc.mul_(n)
    sae.b_enc.mul_(n)
    sae.W_dec.div_(n[:, None])


def load_sae(folder, device=None) -> SAE:
    """Load an SAELens-format folder (v6 or pre-v6 cfg). Shape mismatches name both shapes and the file."""
    folder = Path(folder)
    cfg_path, weights_path = folder / "cfg.json", folder / "sae_weights.safetensors"
    for p in (cfg_path, weights_path):
        if not p.is_file():
            raise NotFoundError(f"{p} does not exist; an SAELens SAE folder needs cfg.json and "
                                f"sae_weights.safetensors.")
    try:
        raw = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValidationError(f"{cfg_path} is not valid JSON ({e}); re-export the SAE.") from None
    cfg = parse_cfg(raw, str(cfg_path))
    weights = load_file(str(weights_path))
    if cfg.architecture == "jumprelu" and "threshold" not in weights and "log_threshold" in weights:
        weights["threshold"] = weights.pop("log_threshold").exp()
    sae = SAE(cfg, device=device)
    with torch.no_grad():
        for name, param in dict([("threshold", sae.threshold), *sae.named_parameters()]).items():
            if param is None:
                continue
            if name not in weights:
                raise ValidationError(f"{weights_path} has no {name!r} tensor (has {sorted(weights)}); the cfg.json "
                                      f"says {cfg.architecture} with d_in={cfg.d_in}, d_sae={cfg.d_sae}.")
            t = weights[name]
            if tuple(t.shape) != tuple(param.shape):
                raise ValidationError(f"{weights_path}: {name} has shape {tuple(t.shape)} but {cfg_path} "
                                      f"(d_in={cfg.d_in}, d_sae={cfg.d_sae}) needs {tuple(param.shape)}; the "
                                      f"config and weights do not belong together.")
            param.copy_(t.to(param.dtype))
        if cfg.architecture == "topk" and raw.get("rescale_acts_by_decoder_norm"):
            _fold_decoder_norms(sae)
        if raw.get("normalize_activations") in ("expected_average_only_in", True):
            scale = raw.get("norm_scaling_factor") or (raw.get("metadata") or {}).get("norm_scaling_factor")
            if scale:  # SAELens stores the factor beside the cfg when it did not fold it
                sae.norm_scale.fill_(float(scale))
    sparsity = folder / "sparsity.safetensors"
    if sparsity.is_file():
        log_freq = load_file(str(sparsity)).get("sparsity")
        if log_freq is not None and log_freq.shape == (cfg.d_sae,):
            sae.feature_frequency = (10 ** log_freq.double()).clamp_min(0) - 1e-10
    return sae
