"""Bring community SAEs into the library: SAELens folders (v6 and pre-v6), Gemma Scope `params.npz`, EleutherAI
sparsify folders; from a local folder, an uploaded archive, or the Hugging Face Hub.

Formats, as each project defines its encoder (x the raw activation):
- SAELens: our own format (see `sae/io.py`).
- Gemma Scope (JumpReLU): pre = x·W_enc + b_enc; z = pre·[pre > threshold]; x̂ = z·W_dec + b_dec. The input is
  *not* centred by b_dec, so it imports with `apply_b_dec_to_input=False`. The config comes from the path:
  `layer_20/width_16k/average_l0_71` of `google/gemma-scope-2b-pt-res` → `blocks.20.hook_resid_post`, d_sae 16384.
- sparsify (TopK): pre = ReLU((x − b_dec)·encoder.weightᵀ + encoder.bias); keep the k largest;
  x̂ = z·W_dec + b_dec. `cfg.json` gives k; `sae.safetensors` holds encoder.weight [d_sae, d_in], encoder.bias,
  W_dec [d_sae, d_in], b_dec. Transcoders (`transcode: true`) do not centre their input and, trained on module
  `layers.L.mlp`, read its input and write its output: blocks.L.hook_mlp_in → blocks.L.hook_mlp_out; a skip
  connection adds x·W_skipᵀ (W_skip [d_in, d_in]), which is our skip transcoder's term as is.
"""
from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

import torch

from ..platform.errors import NotFoundError, ValidationError
from ..sae.config import SAEConfig
from ..sae.io import load_sae
from ..sae.library import register_sae
from ..sae.model import SAE
from ..platform.store import Store
from .safefiles import extract_archive, load_tensors
from .validate import check_archive, check_sae, read_guarded

_GEMMA_PATH = re.compile(r"layer_(\d+)/width_(\d+)([km]?)/")
_GEMMA_SITES = {"res": "hook_resid_post", "mlp": "hook_mlp_out", "att": "hook_attn_out"}
_GEMMA_MODELS = {"2b-pt": "gemma-2-2b", "9b-pt": "gemma-2-9b", "27b-pt": "gemma-2-27b", "2b-it": "gemma-2-2b-it",
                 "9b-it": "gemma-2-9b-it"}


def published_width(number: int, unit: str) -> int:
    """A width as Gemma Scope writes it in paths: '16k' is 16384 and '65k' 65536 (the power of two nearest the
    rounded number), '1m' is 1048576; a number that is no rounded power of two is taken as written (k = 1000)."""
    value = number * {"": 1, "k": 1000, "m": 1000 ** 2}[unit]
    if not unit:
        return value
    power = 1 << max(round(math.log2(value)), 0)
    return power if abs(power - value) <= 0.05 * value else value


def gemma_scope_config(repo_id: str, path_in_repo: str) -> dict:
    """Hook name, d_sae and model name derived from a Gemma Scope repo id and path."""
    m = _GEMMA_PATH.search(path_in_repo.strip("/") + "/")
    if not m:
        raise ValidationError(f"Cannot read layer and width from {path_in_repo!r}; expected a Gemma Scope path like "
                              "'layer_20/width_16k/average_l0_71'.")
    layer, width, unit = int(m.group(1)), int(m.group(2)), m.group(3)
    d_sae = published_width(width, unit)
    site = next((s for key, s in _GEMMA_SITES.items() if repo_id.rstrip("/").endswith(f"-{key}")), "hook_resid_post")
    model = next((name for key, name in _GEMMA_MODELS.items() if f"-{key}-" in repo_id + "-"), None)
    return {"hook_name": f"blocks.{layer}.{site}", "d_sae": d_sae, "model_name": model, "layer": layer}


def _build_sae(cfg: SAEConfig, tensors: dict[str, torch.Tensor], source: str) -> SAE:
    sae = SAE(cfg)
    with torch.no_grad():
        for name in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold", "W_skip"):
            param = getattr(sae, name)
            if param is None:
                continue
            if name not in tensors:
                raise ValidationError(f"{source} has no {name!r} (has {sorted(tensors)}).")
            t = tensors[name]
            if tuple(t.shape) != tuple(param.shape):
                raise ValidationError(f"{source}: {name} has shape {tuple(t.shape)}, expected {tuple(param.shape)} "
                                      f"for d_in={cfg.d_in}, d_sae={cfg.d_sae}.")
            if not t.dtype.is_floating_point:
                raise ValidationError(f"{source}: {name} has dtype {t.dtype}; SAE weights must be floating point.")
            param.copy_(t.to(param.dtype))
    return sae


def read_gemma_scope(params_file: Path, repo_id: str, path_in_repo: str) -> SAE:
    info = gemma_scope_config(repo_id, path_in_repo)
    tensors = load_tensors(params_file)
    if "W_enc" not in tensors:
        raise ValidationError(f"{params_file} has no W_enc; a Gemma Scope params.npz has W_enc, W_dec, b_enc, "
                              f"b_dec, threshold.")
    d_in, d_sae = tensors["W_enc"].shape
    if d_sae != info["d_sae"]:
        raise ValidationError(f"{params_file}: W_enc is {tuple(tensors['W_enc'].shape)} but the path "
                              f"{path_in_repo!r} says width {info['d_sae']}.")
    meta = {"model_name": info["model_name"], "hook_name": info["hook_name"], "hf_repo_id": repo_id,
            "hf_path": path_in_repo, "prepend_bos": True}
    cfg = SAEConfig("jumprelu", int(d_in), int(d_sae), apply_b_dec_to_input=False, metadata=meta)
    return _build_sae(cfg, tensors, str(params_file))


def read_sparsify(folder: Path, hook_name: str | None = None) -> SAE:
    folder = Path(folder)
    raw = json.loads((folder / "cfg.json").read_text())
    tensors = load_tensors(folder / "sae.safetensors")
    if "encoder.weight" not in tensors:
        raise ValidationError(f"{folder / 'sae.safetensors'} has no encoder.weight; not a sparsify SAE.")
    transcode, skip = bool(raw.get("transcode")), bool(raw.get("skip_connection"))
    if skip and not transcode:
        raise ValidationError(f"{folder}: a sparsify skip connection on an autoencoder (not a transcoder) is not "
                              "supported; import its transcoders, or SAEs without skip_connection.")
    d_sae, d_in = tensors["encoder.weight"].shape
    mapped = {"W_enc": tensors["encoder.weight"].t().contiguous(), "b_enc": tensors["encoder.bias"],
              "W_dec": tensors["W_dec"], "b_dec": tensors["b_dec"]}
    meta = {"hook_name": hook_name or _sparsify_hook(folder.name), "sparsify_cfg": raw}
    extra = {}
    if transcode:
        layer = re.fullmatch(r"(?:.*\.)?layers\.(\d+)\.mlp", folder.name)
        meta["hook_name"] = hook_name or (f"blocks.{layer.group(1)}.hook_mlp_in" if layer else None)
        meta["hook_name_out"] = f"blocks.{layer.group(1)}.hook_mlp_out" if layer else None
        extra = dict(d_out=int(d_in), skip_connection=skip)
        if skip:
            mapped["W_skip"] = tensors["W_skip"]
    cfg = SAEConfig("topk", int(d_in), int(d_sae), k=int(raw["k"]), apply_b_dec_to_input=not transcode,
                    metadata=meta, **extra)
    return _build_sae(cfg, mapped, str(folder))


def _sparsify_hook(folder_name: str) -> str | None:
    """sparsify names folders after the module (`layers.8`); map to the residual stream after that layer."""
    m = re.fullmatch(r"(?:.*\.)?layers\.(\d+)", folder_name)
    return f"blocks.{m.group(1)}.hook_resid_post" if m else None


def detect_format(folder: Path) -> str:
    folder = Path(folder)
    if (folder / "sae_weights.safetensors").is_file() and (folder / "cfg.json").is_file():
        return "saelens"
    if (folder / "sae.safetensors").is_file() and (folder / "cfg.json").is_file():
        return "sparsify"
    if (folder / "params.npz").is_file():
        return "gemma_scope"
    pickled = {".pt", ".pkl", ".pth", ".bin"}
    bad = sorted(p.name for p in folder.iterdir() if p.suffix in pickled) if folder.is_dir() else []
    hint = f" Found {bad}: pickle-based weights are not imported; convert them to safetensors." if bad else ""
    raise ValidationError(f"{folder} is not an SAE folder miStudio can read: expected cfg.json + "
                          f"sae_weights.safetensors (SAELens), cfg.json + sae.safetensors (sparsify) or params.npz "
                          f"(Gemma Scope).{hint}")


def read_folder(folder: Path, repo_id: str = "", path_in_repo: str = "", hook_name: str | None = None) -> SAE:
    """Read any supported SAE folder into an SAE (nothing is written)."""
    kind = detect_format(folder)
    if kind == "saelens":
        return load_sae(folder)
    if kind == "sparsify":
        return read_sparsify(folder, hook_name)
    return read_gemma_scope(Path(folder) / "params.npz", repo_id, path_in_repo or str(folder))


def import_sae(store: Store, source: Path | str, model_id: str | None = None, name: str | None = None,
               hook_name: str | None = None, repo_id: str = "", path_in_repo: str = "") -> dict:
    """Import a folder or archive (zip/tar) into the library; returns the new manifest. Everything is checked
    before anything is registered (`validate.check_archive`, `validate.check_sae`); a failure leaves nothing."""
    source = Path(source)
    if not source.exists():
        raise NotFoundError(f"{source} does not exist.")
    # A registered model is checked against (hooks, width); an unregistered name (a catalog entry's model, not
    # added yet) is kept as provenance only. A malformed id is refused by `store.exists`.
    model = store.manifest("models", model_id) if model_id and store.exists("models", model_id) else None
    with tempfile.TemporaryDirectory(dir=store.home, prefix=".tmp-import-") as tmp:
        if not source.is_dir():
            check_archive(source)
        folder = source if source.is_dir() else extract_archive(source, Path(tmp) / "unpacked")
        folder = _single_subfolder(folder)
        sae = read_guarded(lambda: read_folder(folder, repo_id, path_in_repo, hook_name), folder,
                           source.name if not source.is_dir() else "")
    meta = sae.cfg.metadata
    if hook_name:
        meta["hook_name"] = hook_name
    check_sae(sae, meta.get("hook_name"), model, source.name)
    provenance = {"model_id": model_id or meta.get("model_name"), "hook_name": meta.get("hook_name"),
                  "source": "imported", "origin": repo_id or str(source), "path_in_repo": path_in_repo}
    return register_sae(store, sae, name or _default_name(repo_id, path_in_repo, source), provenance)


def _single_subfolder(folder: Path) -> Path:
    """Archives often wrap everything in one top folder; look inside it."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder


def _default_name(repo_id: str, path_in_repo: str, source: Path) -> str:
    parts = [p for p in (repo_id.split("/")[-1] if repo_id else "", path_in_repo.strip("/").replace("/", "-")) if p]
    return "-".join(parts) or source.stem
