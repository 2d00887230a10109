"""Batches of model activations for SAE training and feature extraction.

`ActivationStream` runs the model on token contexts (one shared forward for all requested hook points, stopped
after the deepest one), keeps the tokens worth training on, shuffles, and yields `{hook_name: [batch_tokens, d]}`
float32 batches forever (epoch after epoch).

Order, so that a resumed run sees exactly the data it would have seen::

    contexts:  epoch e visits all contexts in permutation P_e (seeded by (seed, e)); the epochs are chained
               into one endless sequence of contexts
    refill r:  contexts [r*buffer_contexts, (r+1)*buffer_contexts) of that sequence -> forward -> kept tokens,
               shuffled by a permutation seeded by (seed, r)
    batch b:   tokens [b*batch_tokens, (b+1)*batch_tokens) of the refills laid end to end

Which tokens a context keeps depends only on its token ids, so the length of every refill is known without
running the model, and `start_batch=b` jumps straight to the refill holding batch b's first token.

Kept tokens: position 0 and any BOS token are skipped by default (`skip_bos`): they act as attention sinks with
~4.6x the typical norm and would dominate an SAE's loss. Trailing pad tokens (right padding) are always skipped;
since attention is causal, right padding never changes the activations of the tokens before it, so no attention
mask is needed.

Token noise (`token_noise`, off by default): a seeded share of each refill's contexts gets a share of its kept
positions replaced by random vocabulary ids before the forward — a data augmentation for SAEs that must also
reconstruct text unlike their corpus (see `TrainConfig.token_noise_contexts`); the ids are drawn uniformly or, with a
rank offset, favouring the tokenizer's early (frequent) merges. The kept positions are decided on the
corpus's tokens, so refill lengths stay known without running the model.

`cache_activations` writes a stream to safetensors shards once; `ShardStream` replays them (same batch protocol,
same determinism: each epoch visits the shards in a seeded order and shuffles within each shard).
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from ..platform.errors import NotFoundError, ValidationError
from .hooks import capture, parse_hook, unwrap
from ..platform.store import read_json, write_json_atomic

META = "meta.json"


def derived_seed(seed: int, *parts) -> int:
    """A 63-bit seed for `(seed, *parts)`: independent streams for epochs, refills and shards."""
    digest = hashlib.sha256(":".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _perm(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


class _Batcher:
    """Cuts an endless sequence of segments (dicts of equal-length tensors) into fixed-size batches.
    Subclasses give `_segment_len(i)` (cheap) and `_load_segment(i)` (the work)."""

    def __init__(self, batch_tokens: int, start_batch: int):
        if batch_tokens < 1 or start_batch < 0:
            raise ValidationError(f"batch_tokens must be >= 1 and start_batch >= 0 "
                                  f"(got {batch_tokens}, {start_batch}).")
        self.batch_tokens = batch_tokens
        self.batch_index = start_batch
        """Index of the batch the next `next()` returns: save it to resume there."""
        offset, i = start_batch * batch_tokens, 0
        while offset >= (n := self._segment_len(i)):
            offset, i = offset - n, i + 1
        self._seg_index, self._pos, self._seg = i, offset, None

    def _segment_len(self, i: int) -> int:
        raise NotImplementedError

    def _load_segment(self, i: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        need, pieces = self.batch_tokens, []
        while need:
            if self._seg is None:
                self._seg = self._load_segment(self._seg_index)
            n = next(iter(self._seg.values())).shape[0]
            take = min(need, n - self._pos)
            pieces.append({k: v[self._pos:self._pos + take] for k, v in self._seg.items()})
            self._pos, need = self._pos + take, need - take
            if self._pos == n:
                self._seg_index, self._pos, self._seg = self._seg_index + 1, 0, None
        self.batch_index += 1
        if len(pieces) == 1:
            return {k: v.clone() for k, v in pieces[0].items()}  # never hand out a view of the whole buffer
        return {k: torch.cat([p[k] for p in pieces]) for k in pieces[0]}


def _token_ids(tokens, bos_token_id):
    """Accept a LongTensor [n, T] or a `Tokenized` (whose config knows the BOS id)."""
    if hasattr(tokens, "tokens"):
        bos_token_id = bos_token_id if bos_token_id is not None else (tokens.config or {}).get("bos_token_id")
        tokens = tokens.tokens
    tokens = torch.as_tensor(tokens)
    if tokens.dtype != torch.int32:  # int32 grids (memory-mapped tokenizations) stay int32; rows widen per refill
        tokens = tokens.long()
    if tokens.ndim != 2 or tokens.shape[0] == 0:
        raise ValidationError(f"tokens must be a [n_contexts, context_size] grid (got shape {tuple(tokens.shape)}).")
    return tokens, bos_token_id


def noise_pool(tokenizer, vocab_size: int) -> torch.Tensor:
    """Ids token noise may draw: the tokenizer's own vocabulary below `vocab_size`, less special and added tokens
    (reserved ids such as Llama-3's have untrained embeddings)."""
    added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {}) | set(tokenizer.all_special_ids or [])
    ids = torch.arange(min(int(vocab_size), len(tokenizer)))
    return ids[~torch.isin(ids, torch.tensor(sorted(added), dtype=torch.long))]


def _noise_setting(token_noise) -> tuple[float, float, float] | None:
    """`token_noise` as (share of contexts, rate, rank offset), None when off; a 2-tuple draws uniformly."""
    if not token_noise or token_noise[0] <= 0:
        return None
    share, rate, *rest = token_noise
    return float(share), float(rate), float(rest[0]) if rest else 0.0


def _rank_weights(n: int, offset: float) -> torch.Tensor | None:
    """Draw weights ∝ 1/(rank + offset) over a pool of n ids in vocabulary order; None (uniform) for offset 0."""
    return None if not offset else 1.0 / (torch.arange(n, dtype=torch.float64) + offset)


def _context_ids(ids, n: int) -> torch.Tensor:
    """`context_ids` as a LongTensor of valid, distinct rows (None: all n rows, in order)."""
    if ids is None:
        return torch.arange(n)
    ids = torch.as_tensor(ids).long().reshape(-1)
    if len(ids) == 0 or int(ids.min()) < 0 or int(ids.max()) >= n or len(torch.unique(ids)) != len(ids):
        raise ValidationError(f"context_ids must be distinct row indices in 0..{n - 1}, at least one (got "
                              f"{len(ids)} ids); pass the train split of the tokenization (tokenize.split_ids).")
    return ids


def _config_pad(cfg) -> int | None:
    # Many tokenizers reuse EOS as PAD; packed contexts hold real EOS separators, so only a distinct pad id
    # is treated as padding unless the caller names one.
    pad = getattr(cfg, "pad_token_id", None)
    eos = getattr(cfg, "eos_token_id", None)
    return None if pad is None or pad == eos or (isinstance(eos, list) and pad in eos) else pad


class ActivationStream(_Batcher):
    """Endless, deterministic, shuffled batches of activations at `hook_names` (see the module docstring)."""

    def __init__(self, model, tokens, hook_names, batch_tokens: int = 4096, contexts_per_forward: int = 32,
                 buffer_contexts: int = 512, skip_bos: bool = True, seed: int = 0, start_batch: int = 0,
                 device=None, bos_token_id: int | None = None, pad_token_id: int | None = None,
                 context_ids=None, token_noise: tuple[float, float] | None = None, noise_pool=None):
        self.model = unwrap(model)
        self.hook_names = [hook_names] if isinstance(hook_names, str) else list(dict.fromkeys(hook_names))
        for name in self.hook_names:
            parse_hook(self.model, name)
        self.tokens, bos = _token_ids(tokens, bos_token_id)
        cfg = self.model.config
        self.bos_token_id = bos if bos is not None else getattr(cfg, "bos_token_id", None)
        self.pad_token_id = pad_token_id if pad_token_id is not None else _config_pad(cfg)
        if contexts_per_forward < 1 or buffer_contexts < 1:
            raise ValidationError("contexts_per_forward and buffer_contexts must be at least 1.")
        self.contexts_per_forward, self.buffer_contexts = contexts_per_forward, buffer_contexts
        self.skip_bos, self.seed = skip_bos, seed
        self.device = torch.device(device) if device is not None else self.model.device
        self.context_ids = _context_ids(context_ids, self.tokens.shape[0])
        """The only rows of `tokens` this stream ever reads (training passes the train split's ids)."""
        self._kept = torch.cat([self.keep_mask(self.tokens[i:i + 65536]).sum(1)  # in slices: no full-grid masks
                                for i in range(0, self.tokens.shape[0], 65536)])
        self.tokens_per_epoch = int(self._kept[self.context_ids].sum())
        if self.tokens_per_epoch == 0:
            raise ValidationError("No tokens left to train on after skipping BOS/position 0 and padding; "
                                  "use longer contexts or skip_bos=False.")
        self._perms: dict[int, torch.Tensor] = {}
        self.token_noise = _noise_setting(token_noise)
        """(share of contexts, share of their tokens, rank offset) replaced by random vocabulary ids
        (`TrainConfig.data.token_noise`; offset 0: uniform draws)."""
        self.noise_pool = self._pool(noise_pool) if self.token_noise else None
        self._noise_weights = _rank_weights(len(self.noise_pool), self.token_noise[2]) if self.token_noise else None
        super().__init__(batch_tokens, start_batch)

    def _pool(self, pool) -> torch.Tensor:
        """Token ids noise may draw (default: the model's vocabulary less its BOS/EOS/pad ids)."""
        if pool is not None:
            return torch.as_tensor(pool).long()
        cfg = self.model.config
        special = [getattr(cfg, name, None) for name in ("bos_token_id", "eos_token_id", "pad_token_id")]
        special += [self.bos_token_id, self.pad_token_id]
        flat = [i for v in special for i in (v if isinstance(v, (list, tuple)) else [v]) if isinstance(i, int)]
        ids = torch.arange(int(cfg.vocab_size))
        return ids[~torch.isin(ids, torch.tensor(flat, dtype=torch.long))]

    def _noised(self, tokens: torch.Tensor, keep: torch.Tensor, r: int) -> torch.Tensor:
        """Refill r's contexts with token_noise applied (seeded by (seed, r): a resumed run draws the same)."""
        share, rate, _ = self.token_noise
        g = torch.Generator().manual_seed(derived_seed(self.seed, "noise", r))
        rows = torch.rand(tokens.shape[0], generator=g) < share
        where = (torch.rand(tokens.shape, generator=g) < rate) & rows[:, None] & keep
        n, out = int(where.sum()), tokens.clone()
        if self._noise_weights is None:
            picks = torch.randint(len(self.noise_pool), (n,), generator=g)
        else:
            picks = torch.multinomial(self._noise_weights, n, replacement=True, generator=g) if n else \
                torch.zeros(0, dtype=torch.long)
        out[where] = self.noise_pool[picks]
        return out

    def keep_mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """Which positions of `tokens` [n, T] become training tokens."""
        keep = torch.ones_like(tokens, dtype=torch.bool)
        if self.skip_bos:
            keep[:, 0] = False
            if self.bos_token_id is not None:
                keep &= tokens != self.bos_token_id
        if self.pad_token_id is not None and self.pad_token_id != self.bos_token_id:
            trailing_pad = (tokens == self.pad_token_id).flip(1).cumprod(1).flip(1).bool()
            keep &= ~trailing_pad
        return keep

    def _contexts(self, r: int) -> torch.Tensor:
        """Context indices of refill r: a window of the endless chain of per-epoch permutations of `context_ids`."""
        n = len(self.context_ids)
        start, stop = r * self.buffer_contexts, (r + 1) * self.buffer_contexts
        parts = []
        for epoch in range(start // n, (stop - 1) // n + 1):
            if epoch not in self._perms:
                if len(self._perms) > 2:
                    self._perms.pop(min(self._perms))
                self._perms[epoch] = _perm(n, derived_seed(self.seed, "epoch", epoch))
            lo, hi = max(start - epoch * n, 0), min(stop - epoch * n, n)
            parts.append(self._perms[epoch][lo:hi])
        return self.context_ids[torch.cat(parts)]

    def _segment_len(self, r: int) -> int:
        return int(self._kept[self._contexts(r)].sum())

    def _load_segment(self, r: int) -> dict[str, torch.Tensor]:
        tokens = self.tokens[self._contexts(r)].long()
        keep = self.keep_mask(tokens)  # of the corpus's tokens: noise never turns a kept position into a skipped one
        if self.token_noise:
            tokens = self._noised(tokens, keep, r)
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in self.hook_names}
        for i in range(0, tokens.shape[0], self.contexts_per_forward):
            chunk, mask = tokens[i:i + self.contexts_per_forward], keep[i:i + self.contexts_per_forward]
            acts = capture(self.model, chunk, self.hook_names)
            for name, act in acts.items():
                parts[name].append(act[mask.to(act.device)].to(self.device, torch.float32))
        order = _perm(int(keep.sum()), derived_seed(self.seed, "refill", r)).to(self.device)
        return {name: torch.cat(p)[order] for name, p in parts.items()}


def cache_activations(model, tokens, hook_names, out_dir, n_tokens: int, shard_tokens: int = 65_536,
                      dtype: str = "float32", progress: Callable[[float, str], None] | None = None,
                      should_stop: Callable[[], bool] | None = None, **stream_kwargs) -> dict:
    """Write `n_tokens` activations of an `ActivationStream` to `out_dir` as safetensors shards (keys: hook
    names) plus `meta.json`, written last so a folder without it is an unfinished cache."""
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValidationError(f"dtype must be float32, bfloat16 or float16 (got {dtype!r}).")
    if n_tokens < 1:
        raise ValidationError(f"n_tokens must be at least 1 (got {n_tokens}).")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META).unlink(missing_ok=True)
    stream = ActivationStream(model, tokens, hook_names, batch_tokens=shard_tokens, device="cpu", **stream_kwargs)
    sizes: list[int] = []
    for i in range(math.ceil(n_tokens / shard_tokens)):
        if should_stop and should_stop():
            break
        batch = next(stream)
        size = min(shard_tokens, n_tokens - sum(sizes))
        save_file({k: v[:size].to(getattr(torch, dtype)).contiguous() for k, v in batch.items()},
                  str(out_dir / f"shard_{i:05d}.safetensors"))
        sizes.append(size)
        if progress:
            progress(sum(sizes) / n_tokens, f"cached {sum(sizes):,}/{n_tokens:,} tokens")
    d = {name: int(batch[name].shape[1]) for name in stream.hook_names} if sizes else {}
    meta = {"hook_names": stream.hook_names, "d": d, "n_tokens": sum(sizes), "shard_sizes": sizes,
            "dtype": dtype, "skip_bos": stream.skip_bos, "seed": stream.seed}
    write_json_atomic(out_dir / META, meta)
    return meta


class ShardStream(_Batcher):
    """Endless shuffled batches from a `cache_activations` folder: epoch e visits the shards in a permutation
    seeded by (seed, e) and shuffles each shard with a seed of its own; `start_batch` resumes exactly."""

    def __init__(self, out_dir, batch_tokens: int = 4096, seed: int = 0, start_batch: int = 0, device=None):
        self.dir = Path(out_dir)
        if not (self.dir / META).is_file():
            raise NotFoundError(f"No finished activation cache in {self.dir} (meta.json missing). "
                                "Run cache_activations into it first.")
        self.meta = read_json(self.dir / META)
        self.sizes = self.meta["shard_sizes"]
        if not self.sizes:
            raise ValidationError(f"The activation cache in {self.dir} is empty; cache it again.")
        self.hook_names, self.seed = self.meta["hook_names"], seed
        self.device = torch.device(device or "cpu")
        self.tokens_per_epoch = int(self.meta["n_tokens"])
        super().__init__(batch_tokens, start_batch)

    def _shard(self, i: int) -> tuple[int, int]:
        epoch, j = divmod(i, len(self.sizes))
        return epoch, int(_perm(len(self.sizes), derived_seed(self.seed, "shards", epoch))[j])

    def _segment_len(self, i: int) -> int:
        return self.sizes[self._shard(i)[1]]

    def _load_segment(self, i: int) -> dict[str, torch.Tensor]:
        epoch, shard = self._shard(i)
        tensors = load_file(str(self.dir / f"shard_{shard:05d}.safetensors"))
        order = _perm(self.sizes[shard], derived_seed(self.seed, "shard", epoch, shard))
        return {k: tensors[k][order].to(self.device, torch.float32) for k in self.hook_names}
