"""The activation cache: a model's activations on a dataset's TRAIN contexts, captured once, replayed for many
epochs and many jobs (`activations/<key>/` in the data directory).

Why: capturing SmolLM2's layer-8 residual costs ~1,250 tokens per CPU-second, an SAE step ~5,500; re-running the
model every epoch is where a training's time goes. A cache turns that into disk reads.

What makes a cache trustworthy:
- Its identity (`cache_identity`) is the model (+ when it was registered), the tokenization (a hash of its
  config.json, which records the context size and the held-out split), which contexts were read (only TRAIN
  contexts: the held-out slice is never cached) and the skip rules (BOS/position 0, padding). A job reuses a cache
  only when every identity field matches and the cache holds all the hooks it needs (a superset is fine), so a
  cache for another model or tokenization is never silently reused.
- It is built in a hidden temporary folder and renamed into place only when complete (`Store.create`): a cancel,
  a crash or a full disk leaves nothing listed. Free space is checked before capture, and ENOSPC during capture
  removes the partial folder and says how to fix it.
- The manifest records each shard's size and SHA-256: sizes are checked when a cache is opened, hashes when a
  shard is first read by a stream; a changed or truncated file is refused with the command that deletes it.

Replaying is `CacheStream` (an `activations.ShardStream`): deterministic per-epoch shard orders and in-shard
shuffles, so `start_batch=b` resumes bit-identically.
"""
from __future__ import annotations

import errno
import hashlib
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from ..model.activations import META, ActivationStream, ShardStream
from ..platform.errors import NotFoundError, UnsupportedError, ValidationError
from ..platform.store import Store, read_json, write_json_atomic

KIND = "activations"
DTYPES = {"float32": 4, "bfloat16": 2, "float16": 2}
SHARD_TOKENS = 65_536
_MARGIN = 64 * 2**20  # keep this much disk free beyond the estimate


class CacheDamaged(ValidationError):
    """A cache file changed or was truncated since it was written."""


class _Cancelled(Exception):
    """Raised inside the build to discard the partial folder when should_stop() turns true."""


def _sha256(path_or_bytes) -> str:
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return hashlib.sha256(path_or_bytes).hexdigest()
    h = hashlib.sha256()
    with open(path_or_bytes, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def cache_identity(store: Store, model_id: str, dataset_id: str, context_ids=None, skip_bos: bool = True,
                   bos_token_id: int | None = None, pad_token_id: int | None = None) -> dict:
    """What a cache's activations depend on; two caches are interchangeable only if these are equal."""
    model = store.manifest("models", model_id)
    config = store.dir("datasets") / dataset_id / "tokenized" / model_id / "config.json"
    if not config.is_file():
        raise NotFoundError(f"Dataset {dataset_id!r} is not tokenized for {model_id!r}; tokenize it first.")
    ids = "all" if context_ids is None else _sha256(torch.as_tensor(context_ids).long().numpy().tobytes())[:16]
    return {"model_id": model_id, "model_created": model.get("created"), "dataset_id": dataset_id,
            "tokenization": _sha256(config)[:16], "contexts": ids,
            "skip": {"skip_bos": bool(skip_bos), "bos_token_id": bos_token_id, "pad_token_id": pad_token_id}}


def cache_key(identity: dict, hook_names: list[str], n_tokens: int, dtype: str) -> str:
    digest = _sha256(repr((sorted(identity.items()), sorted(hook_names), n_tokens, dtype)).encode())[:10]
    return f"{identity['model_id']}-{identity['dataset_id']}-{digest}"


def estimate_bytes(n_tokens: int, widths: list[int] | int, dtype: str = "bfloat16") -> int:
    """Disk a cache of `n_tokens` tokens at hooks of these widths takes (tensor bytes + ~1% headers)."""
    if dtype not in DTYPES:
        raise ValidationError(f"Cache dtype must be one of {sorted(DTYPES)} (got {dtype!r}).")
    width = sum(widths) if isinstance(widths, (list, tuple)) else int(widths)
    return int(n_tokens * width * DTYPES[dtype] * 1.01)


def check_free_space(folder: Path, needed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed + _MARGIN > free:
        raise UnsupportedError(f"Caching these activations needs ≈{needed / 2**30:.2f} GiB but only "
                               f"{free / 2**30:.2f} GiB is free in {folder}. Free disk space, train on fewer "
                               "tokens, store the cache as bfloat16/float16, or turn the cache off.")


def list_caches(store: Store) -> list[dict]:
    """Manifests of complete caches (oldest first), each with `bytes` on disk and `hook_names`, `n_tokens`."""
    return store.list(KIND)


def delete_cache(store: Store, key: str) -> None:
    store.delete(KIND, key)


def verify_sizes(store: Store, manifest: dict) -> None:
    """Cheap check on open: every shard is there with the size it was written with."""
    folder = store.path(KIND, manifest["id"])
    for shard in manifest["shards"]:
        path = folder / shard["file"]
        size = path.stat().st_size if path.is_file() else -1
        if size != shard["bytes"]:
            what = "is missing" if size < 0 else f"has {size:,} bytes, {shard['bytes']:,} were written"
            raise CacheDamaged(f"Activation cache {manifest['id']} is damaged: {shard['file']} {what}. Delete it "
                               f"(`python -m mistudio_core cache delete {manifest['id']}` or the Training tab's "
                               "cache list) and train again: a new cache is captured.")


def find_cache(store: Store, identity: dict, hook_names: list[str], n_tokens: int = 1,
               dtype: str | None = None) -> dict | None:
    """The best complete cache with this identity, all `hook_names` and at least `n_tokens` tokens (the
    largest; ties: the newest), or None."""
    fits = [m for m in list_caches(store) if m.get("identity") == identity and set(hook_names) <= set(m["hook_names"])
            and (m["n_tokens"] >= n_tokens or m.get("full_split")) and (dtype is None or m["dtype"] == dtype)]
    return max(fits, key=lambda m: (m["n_tokens"], m.get("created", 0)), default=None)


def build_cache(store: Store, model, tokens, hook_names: list[str], n_tokens: int, identity: dict,
                dtype: str = "bfloat16", context_ids=None, shard_tokens: int = SHARD_TOKENS,
                progress: Callable[[float, str], None] | None = None,
                should_stop: Callable[[], bool] | None = None, **stream_kwargs) -> dict | None:
    """Capture `n_tokens` activations (at most one pass over the chosen contexts) into a new cache; returns its
    manifest, or None if `should_stop()` turned true (nothing is kept). `tokens` is a `Tokenized` or a grid;
    `context_ids` limits capture to those rows (the training split)."""
    grid = tokens.tokens if hasattr(tokens, "tokens") else torch.as_tensor(tokens)
    bos = stream_kwargs.pop("bos_token_id", None)
    if bos is None and hasattr(tokens, "config"):
        bos = (tokens.config or {}).get("bos_token_id")
    stream = ActivationStream(model, grid, hook_names, batch_tokens=shard_tokens, device="cpu", bos_token_id=bos,
                              context_ids=context_ids, **stream_kwargs)
    n_tokens = min(int(n_tokens), stream.tokens_per_epoch)
    widths = [int(w) for w in _widths(stream)]
    need = estimate_bytes(n_tokens, widths, dtype)
    check_free_space(store.dir(KIND), need)
    key = cache_key(identity, stream.hook_names, n_tokens, dtype)
    manifest = {"identity": identity, "hook_names": stream.hook_names, "d": dict(zip(stream.hook_names, widths)),
                "dtype": dtype, "n_tokens": n_tokens, "full_split": n_tokens == stream.tokens_per_epoch,
                "seed": stream.seed, "estimated_bytes": need}
    t0 = time.perf_counter()
    try:
        with store.create(KIND, key, manifest, artifact_id=key) as tmp:
            shards = _write_shards(stream, tmp, n_tokens, dtype, progress, should_stop)
            manifest.update(shards=shards, bytes=sum(s["bytes"] for s in shards),
                            seconds=round(time.perf_counter() - t0, 2))
            write_json_atomic(tmp / META, {"hook_names": stream.hook_names, "d": manifest["d"], "dtype": dtype,
                                           "n_tokens": n_tokens, "shard_sizes": [s["n_tokens"] for s in shards],
                                           "skip_bos": stream.skip_bos, "seed": stream.seed})
    except _Cancelled:
        return None
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise UnsupportedError(f"The disk filled up while caching activations ({need / 2**30:.2f} GiB "
                                   "estimated); the partial cache was removed. Free disk space, train on fewer "
                                   "tokens, or turn the cache off.") from e
        raise
    return store.manifest(KIND, key)


def _widths(stream: ActivationStream) -> list[int]:
    from ..model.hooks import d_model

    width = d_model(stream.model)  # every supported hook site is a residual-width tensor
    return [width] * len(stream.hook_names)


def _write_shards(stream, folder: Path, n_tokens: int, dtype: str, progress, should_stop) -> list[dict]:
    shards, done, i = [], 0, 0
    while done < n_tokens:
        if should_stop and should_stop():
            raise _Cancelled()
        batch = next(stream)
        size = min(stream.batch_tokens, n_tokens - done)
        name = f"shard_{i:05d}.safetensors"
        save_file({k: v[:size].to(getattr(torch, dtype)).contiguous() for k, v in batch.items()}, str(folder / name))
        shards.append({"file": name, "n_tokens": size, "bytes": (folder / name).stat().st_size,
                       "sha256": _sha256(folder / name)})
        done, i = done + size, i + 1
        if progress:
            progress(done / n_tokens, f"capturing activations {done:,}/{n_tokens:,} tokens")
    return shards


class CacheStream(ShardStream):
    """Endless deterministic batches from a cache (see `ShardStream`), for a subset of its hooks; each shard's
    SHA-256 is checked the first time this stream reads it."""

    def __init__(self, store: Store, key: str, hook_names: list[str] | None = None, batch_tokens: int = 4096,
                 seed: int = 0, start_batch: int = 0, device=None):
        self.manifest = store.manifest(KIND, key)
        verify_sizes(store, self.manifest)
        super().__init__(store.path(KIND, key), batch_tokens=batch_tokens, seed=seed, start_batch=start_batch,
                         device=device)
        wanted = list(hook_names or self.manifest["hook_names"])
        missing = sorted(set(wanted) - set(self.manifest["hook_names"]))
        if missing:
            raise ValidationError(f"Activation cache {key} has no hooks {missing}; build a cache with them.")
        self.hook_names = wanted
        self._verified: set[int] = set()

    @property
    def epoch(self) -> float:
        """Epochs completed by the batches handed out so far (fractional)."""
        return self.batch_index * self.batch_tokens / self.tokens_per_epoch

    def _load_segment(self, i: int) -> dict[str, torch.Tensor]:
        epoch, shard = self._shard(i)
        entry = self.manifest["shards"][shard]
        data = (self.dir / entry["file"]).read_bytes()
        if shard not in self._verified:
            if len(data) != entry["bytes"] or _sha256(data) != entry["sha256"]:
                raise CacheDamaged(f"Activation cache {self.manifest['id']} is damaged: {entry['file']} changed "
                                   f"since it was written. Delete it (`python -m mistudio_core cache delete "
                                   f"{self.manifest['id']}`) and train again: a new cache is captured.")
            self._verified.add(shard)
        tensors = load_bytes(data)
        order = torch.randperm(entry["n_tokens"], generator=torch.Generator().manual_seed(
            _shard_seed(self.seed, epoch, shard)))
        return {k: tensors[k][order].to(self.device, torch.float32) for k in self.hook_names}


def _shard_seed(seed: int, epoch: int, shard: int) -> int:
    from ..model.activations import derived_seed

    return derived_seed(seed, "shard", epoch, shard)


PIN = "activation_cache.json"
MODES = ("off", "use", "build")


def ensure_cache(store: Store, model, tokens, hook_names: list[str], n_tokens: int, identity: dict,
                 mode: str = "use", dtype: str = "bfloat16", context_ids=None, run_dir: Path | None = None,
                 log: Callable[[str], None] | None = None, **build_kwargs) -> dict | None:
    """The cache a job trains on: "use" reuses a matching cache (`find_cache`) or captures one, "build" always
    captures a new one. With `run_dir`, the choice is pinned there, so a resumed job replays the very cache it
    started on (a pinned cache that is gone is captured again: same inputs, same key, same bytes).
    A cache whose files fail the size check is deleted and captured again (said in `log`). Returns its
    manifest, or None when the capture was cancelled."""
    if mode not in MODES[1:]:
        raise ValidationError(f"Cache mode must be one of {MODES} (got {mode!r}).")
    say = log or (lambda msg: None)
    pin = Path(run_dir) / PIN if run_dir else None
    found = None
    if pin is not None and pin.is_file():
        pinned = read_json(pin)  # rebuild exactly what was pinned if it is gone
        hook_names, n_tokens, dtype = pinned["hook_names"], pinned["n_tokens"], pinned["dtype"]
        found = store.manifest(KIND, pinned["key"]) if store.exists(KIND, pinned["key"]) else None
    elif mode == "use":
        found = find_cache(store, identity, hook_names, n_tokens=n_tokens, dtype=dtype)
    if found is not None:
        try:
            verify_sizes(store, found)
        except CacheDamaged as e:
            say(f"{e} Capturing it again.")
            delete_cache(store, found["id"])
            found = None
    if found is None:
        say(f"capturing {n_tokens:,} tokens of activations at {', '.join(hook_names)} into the cache")
        found = build_cache(store, model, tokens, hook_names, n_tokens, identity, dtype=dtype,
                            context_ids=context_ids, **build_kwargs)
        if found is None:
            return None
    else:
        say(f"reusing activation cache {found['id']} ({found['n_tokens']:,} tokens)")
    if pin is not None:
        write_json_atomic(pin, {"key": found["id"], "hook_names": found["hook_names"],
                                "n_tokens": found["n_tokens"], "dtype": found["dtype"]})
    return found
