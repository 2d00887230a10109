"""Tokenize a dataset with a registered model's tokenizer into fixed-length contexts.

Layout of one context (`prepend_bos=True`, `pack=True`): `[BOS, t1, t2, ..., t_{C-1}]`, where the body
`t1..t_{C-1}` is the next slice of one long stream `doc1 EOS doc2 EOS doc3 ...`. Every context starts with BOS
because the model (and SAELens' `prepend_bos`) expects it, and packing wastes no padding: only the stream's tail
shorter than one body is left out (`n_tokens_unused`). With `pack=False` a context never crosses a document
boundary and each document's tail shorter than one body is left out instead.

Scale: `tokenize_dataset` streams: text is read from `text.parquet` a chunk of documents at a time and
contexts are appended to the token file as they are cut (`tokenstore.TokenWriter`), so memory is one chunk, not
the corpus; `load_tokenized` memory-maps the int32 grid (`tokenstore.mmap_tokens`) instead of loading it.
`tokenize_texts` runs the same code with the rows collected in memory.

Speed: documents go to the Rust tokenizer in batches (it encodes a batch on all cores, without offsets), and
packing is a numpy concatenate + reshape. With `max_tokens`, tokenizing stops as soon as enough tokens exist.

Writes `datasets/<id>/tokenized/<model_id>/` = `tokens.safetensors` (key `tokens`, int32 [n_contexts,
context_size]), `config.json` (TokenizeConfig + `bos_token_id`, `separator_token_id`, `tokenizer`, `heldout`),
`stats.json`.

Held-out split: the last `heldout["n_contexts"]` contexts of every tokenization (method "tail", see
`heldout_split`) are kept out of training — `split_ids` gives the train and held-out context indices, training
streams read only the train ones, evaluations the held-out ones. A contiguous tail, not a random sample, because
packed contexts cut documents into neighbours: a random held-out context would have the rest of its document in
training; the tail shares at most one document with it. Tokenizations written before the split existed get the
same default from their `n_contexts`, so their held-out slice is the one a fresh tokenization would record.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .tokenstore import TokenWriter, mmap_tokens
from ..platform.errors import NotFoundError, ValidationError
from ..platform.records import from_dict
from ..platform.store import Store, atomic_dir, read_json, write_json_atomic

BATCH_DOCS = 1024
BATCH_CHARS = 2_000_000
TEXT_CHUNK_ROWS = 8 * BATCH_DOCS  # documents read from text.parquet at a time
TOP_TOKENS = 30
HIST_BINS = 20
HELDOUT_FRACTION = 0.05
HELDOUT_MIN = 16
HELDOUT_MAX = 4096
Progress = Callable[[float, str], None] | None


@dataclass
class TokenizeConfig:
    context_size: int = 128
    """Tokens per context, BOS included. SAE training reads activations of these contexts."""
    prepend_bos: bool = True
    """Start every context with the tokenizer's BOS token (as the model saw in training)."""
    pack: bool = True
    """Concatenate documents (EOS between them) and cut into contexts; False keeps documents apart."""
    min_doc_chars: int = 0
    """Skip documents shorter than this many characters (after stripping whitespace)."""
    max_tokens: int | None = None
    """Stop once this many tokens (contexts × context_size) are stored; None = the whole dataset."""
    heldout_fraction: float = HELDOUT_FRACTION
    """Fraction of contexts (the last ones) never trained on, for evaluation: at least min(16, n/4) contexts, at
    most 4096, always leaving one to train on (see `heldout_split`)."""

    def __post_init__(self):
        if not isinstance(self.heldout_fraction, (int, float)) or not 0 <= self.heldout_fraction < 1:
            raise ValidationError(f"heldout_fraction must be from 0 to below 1 (got {self.heldout_fraction!r}).")
        if not isinstance(self.prepend_bos, bool) or not isinstance(self.pack, bool):
            raise ValidationError("prepend_bos and pack must be true or false.")
        if self.max_tokens is not None and not isinstance(self.max_tokens, int):
            raise ValidationError(f"max_tokens must be a whole number or empty (got {self.max_tokens!r}).")
        if not isinstance(self.context_size, int) or not 2 <= self.context_size <= 1_000_000:
            raise ValidationError(f"context_size must be an integer from 2 to 1,000,000 (got {self.context_size!r}).")
        if self.min_doc_chars < 0:
            raise ValidationError(f"min_doc_chars must be 0 or more (got {self.min_doc_chars}).")
        if self.max_tokens is not None and self.max_tokens < self.context_size:
            raise ValidationError(
                f"max_tokens ({self.max_tokens}) is smaller than one context ({self.context_size} tokens); "
                "raise max_tokens or lower context_size."
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizeConfig":
        """User input (a form, flags, the API), strictly: an unknown key is refused naming the nearest field."""
        return from_dict(cls, d, "tokenization setting")

    @classmethod
    def from_record(cls, config: dict) -> "TokenizeConfig":
        """The settings of a stored tokenization's `config.json`, which adds what tokenizing found
        (`RECORD_KEYS`) to them; anything else unknown is still refused."""
        return cls.from_dict({k: v for k, v in config.items() if k not in RECORD_KEYS})


# What `tokenize_dataset` writes into config.json beside the TokenizeConfig fields (the one list of them).
RECORD_KEYS = ("bos_token_id", "separator_token_id", "tokenizer", "dataset_id", "model_id", "created", "heldout")


@dataclass
class Tokenized:
    tokens: "torch.Tensor"  # noqa: F821  int32 [n_contexts, context_size], memory-mapped (rows: .long() them)
    config: dict
    stats: dict

    @property
    def heldout(self) -> dict:
        """The held-out record (`method`, `n_contexts`, `first_context`, `fraction`), recorded or the default."""
        return heldout_of(self.config, int(self.tokens.shape[0]))

    def split_ids(self) -> tuple["torch.Tensor", "torch.Tensor"]:  # noqa: F821
        """`(train_ids, heldout_ids)`: LongTensors of context indices; see the module docstring."""
        return split_ids(self)

    def heldout_tokens(self, n: int | None = None):
        """The held-out contexts (the first `n` of them; all when None), a [n, context_size] slice of `tokens`."""
        h = self.heldout
        stop = h["first_context"] + (h["n_contexts"] if n is None else min(n, h["n_contexts"]))
        return self.tokens[h["first_context"]:stop]


def heldout_split(n_contexts: int, fraction: float = HELDOUT_FRACTION) -> dict:
    """The held-out record of a tokenization of `n_contexts` contexts: the last ceil(fraction·n), raised to
    min(16, n // 4), capped at 4096 and at n − 1 (one context always trains). Deterministic in (n, fraction)."""
    n = int(n_contexts)
    k = min(max(math.ceil(fraction * n), min(HELDOUT_MIN, n // 4)) if fraction > 0 else 0, HELDOUT_MAX, max(n - 1, 0))
    return {"method": "tail", "n_contexts": k, "first_context": n - k, "fraction": fraction,
            "rule": "last ceil(fraction*n) contexts, at least min(16, n//4), at most min(4096, n-1)"}


def heldout_of(config: dict, n_contexts: int) -> dict:
    """The tokenization's recorded held-out slice, or the default for one written before splits existed."""
    recorded = (config or {}).get("heldout")
    if recorded and recorded.get("method") == "tail":
        return recorded
    return heldout_split(n_contexts, (config or {}).get("heldout_fraction", HELDOUT_FRACTION))


def heldout_text(config: dict, n_contexts: int) -> str:
    """One line for listings: which contexts are held out (never trained on)."""
    h = heldout_of(config, n_contexts)
    return (f"Held out for evaluation: the last {h['n_contexts']:,} of {int(n_contexts):,} contexts "
            f"(#{h['first_context']:,} on), never used for training.")


def split_ids(tokenized: "Tokenized") -> tuple["torch.Tensor", "torch.Tensor"]:  # noqa: F821
    """`(train_ids, heldout_ids)` of a tokenization: context indices (LongTensors) a training stream may read
    and those only evaluations read. Independent of how the token grid is stored."""
    import torch

    h = heldout_of(tokenized.config, int(tokenized.tokens.shape[0]))
    first, n = h["first_context"], h["first_context"] + h["n_contexts"]
    return torch.arange(first), torch.arange(first, n)


@functools.lru_cache(maxsize=4)
def _cached_tokenizer(folder: str, created: float):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def load_tokenizer(store: Store, model_id: str):
    """The tokenizer saved in `models/<model_id>/` (cached per process; a re-registered model reloads)."""
    from ..model.models import model_folder  # local/hub models live outside the store; it knows where

    manifest = store.manifest("models", model_id)  # NotFoundError listing known models
    folder = model_folder(store, model_id)
    try:
        return _cached_tokenizer(str(folder), manifest.get("created", 0))
    except (OSError, ValueError) as e:
        raise ValidationError(
            f"Model {model_id!r} has no usable tokenizer in {folder} ({e}). "
            "Re-add the model so its tokenizer files are saved with it."
        ) from e


def _special_ids(tokenizer, cfg: TokenizeConfig) -> tuple[int | None, int]:
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if cfg.prepend_bos and bos is None and eos is None:
        raise ValidationError("This tokenizer has no BOS or EOS token; tokenize with prepend_bos off.")
    sep = eos if eos is not None else bos
    if cfg.pack and sep is None:
        raise ValidationError("This tokenizer has no EOS/BOS token to separate packed documents; turn packing off.")
    return (bos if bos is not None else eos) if cfg.prepend_bos else None, sep


def encode_batch(tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Token ids of each text without special tokens, through the Rust backend when there is one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [np.asarray(e.ids, dtype=np.int32) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [np.asarray(x, dtype=np.int32) for x in ids]


def _batch_end(texts: list[str], start: int, max_chars: int) -> int:
    """End of the batch starting at `start`: at least one text, then up to `max_chars` / BATCH_DOCS."""
    end, chars = start + 1, len(texts[start])
    while end < len(texts) and end - start < BATCH_DOCS and chars + len(texts[end]) <= max_chars:
        chars += len(texts[end])
        end += 1
    return end


class _Cutter:
    """Cuts encoded documents into contexts as they arrive (layout in the module docstring) and hands each batch
    of rows to `sink`, stopping at `max_contexts`; counts tokens left out and token frequencies on the way."""

    def __init__(self, cfg: TokenizeConfig, bos, sep, max_contexts: int | None, sink):
        self.cfg, self.bos, self.max, self.sink = cfg, bos, max_contexts, sink
        self.body = cfg.context_size - (1 if bos is not None else 0)
        self.sep = np.asarray([sep if sep is not None else 0], dtype=np.int32)
        self.carry = np.zeros(0, np.int32)  # packed stream tail shorter than one body
        self.n = self.unused_nopack = 0
        self.freq = np.zeros(1, np.int64)

    @property
    def full(self) -> bool:
        return self.max is not None and self.n >= self.max

    @property
    def unused(self) -> int:
        return len(self.carry) if self.cfg.pack else self.unused_nopack

    def add(self, encoded: list[np.ndarray]) -> None:
        room = None if self.max is None else self.max - self.n
        if self.cfg.pack:
            stream = np.concatenate([self.carry] + [a for d in encoded for a in (d, self.sep)])
            n = len(stream) // self.body if room is None else min(len(stream) // self.body, room)
            rows, self.carry = stream[: n * self.body].reshape(n, self.body), stream[n * self.body:]
        else:
            chunks = [d[: len(d) // self.body * self.body].reshape(-1, self.body) for d in encoded]
            rows = np.concatenate(chunks) if chunks else np.zeros((0, self.body), np.int32)
            rows = rows if room is None else rows[:room]
            self.unused_nopack += int(sum(len(d) for d in encoded)) - rows.size
        if self.bos is not None:
            rows = np.hstack([np.full((len(rows), 1), self.bos, dtype=np.int32), rows])
        if len(rows):
            rows = np.ascontiguousarray(rows, dtype=np.int32)
            counts = np.bincount(rows.ravel())
            if len(counts) > len(self.freq):
                self.freq = np.pad(self.freq, (0, len(counts) - len(self.freq)))
            self.freq[: len(counts)] += counts
            self.n += len(rows)
            self.sink(rows)


def _tokenize_stream(tokenizer, text_chunks, n_texts: int, cfg: TokenizeConfig, sink, progress: Progress) -> dict:
    """Tokenize lists of texts as they come (`text_chunks`), handing rows to `sink`; returns the stats. Memory:
    one chunk of texts and its token arrays, never the corpus."""
    start = time.perf_counter()
    bos, sep = _special_ids(tokenizer, cfg)
    max_contexts = None if cfg.max_tokens is None else cfg.max_tokens // cfg.context_size
    cut = _Cutter(cfg, bos, sep, max_contexts, sink)
    lengths: list[int] = []
    n_chars = skipped = 0
    for texts in text_chunks:
        keep = [t for t in texts if len(t.strip()) >= max(1, cfg.min_doc_chars)]
        skipped += len(texts) - len(keep)
        i = 0
        while i < len(keep) and not cut.full:
            # with a token budget, ask for ~5 chars per missing token so the last batch overshoots little
            want = BATCH_CHARS if max_contexts is None else min(BATCH_CHARS, 5 * cut.body * (max_contexts - cut.n))
            j = _batch_end(keep, i, want)
            batch, i = keep[i:j], j
            encoded = encode_batch(tokenizer, batch)
            lengths.extend(len(d) for d in encoded)
            n_chars += sum(map(len, batch))
            cut.add(encoded)
            if progress:
                frac = len(lengths) / max(n_texts, 1)
                frac = frac if max_contexts is None else max(frac, min(1.0, cut.n / max_contexts))
                progress(0.95 * min(frac, 1.0), f"tokenized {len(lengths):,}/{n_texts:,} documents")
        if cut.full:
            break
    if cut.n == 0:
        raise ValidationError(
            f"Not enough text for one context: {sum(lengths)} tokens in {len(lengths)} documents, a context needs "
            f"{cut.body} ({'without packing, per document' if not cfg.pack else 'in all'}). Lower context_size"
            f"{', turn packing on' if not cfg.pack else ''} or add more text."
        )
    stats = _stats(tokenizer, cut.freq, lengths, cut.n, cfg.context_size, skipped, cut.unused)
    elapsed = time.perf_counter() - start
    stats.update(n_chars=n_chars, seconds=round(elapsed, 3), tokens_per_s=round(stats["n_doc_tokens"] / elapsed))
    if progress:
        progress(1.0, f"{stats['n_contexts']} contexts of {cfg.context_size} tokens")
    return stats


def tokenize_texts(tokenizer, texts: list[str], cfg: TokenizeConfig, progress: Progress = None):
    """Tokenize `texts` into contexts; returns `(tokens int32 [n, context_size], stats)`. No disk access."""
    rows: list[np.ndarray] = []
    stats = _tokenize_stream(tokenizer, [texts], len(texts), cfg, rows.append, progress)
    return np.ascontiguousarray(np.concatenate(rows), dtype=np.int32), stats


def _stats(tokenizer, freq: np.ndarray, lengths: list[int], n_contexts: int, context_size: int, skipped: int,
           unused: int) -> dict:
    lengths = np.asarray(lengths, dtype=np.int64)
    counts, edges = np.histogram(lengths, bins=HIST_BINS)
    top = np.argsort(freq)[::-1][:TOP_TOKENS]
    return {
        "n_docs": len(lengths),
        "n_docs_skipped": skipped,
        "n_doc_tokens": int(lengths.sum()),
        "n_tokens": int(n_contexts * context_size),
        "n_contexts": int(n_contexts),
        "context_size": int(context_size),
        "n_tokens_unused": unused,
        "doc_length_histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        "distinct_tokens": int(np.count_nonzero(freq)),
        "top_tokens": [[tokenizer.decode([int(t)]), int(freq[t])] for t in top if freq[t] > 0],
        "top_token_ids": [int(t) for t in top if freq[t] > 0],
    }


def tokenized_dir(store: Store, dataset_id: str, model_id: str) -> Path:
    return store.path("datasets", dataset_id) / "tokenized" / store.path("models", model_id).name


def tokenize_dataset(store: Store, dataset_id: str, model_id: str, cfg: TokenizeConfig | None = None,
                     progress: Progress = None) -> dict:
    """Tokenize a stored dataset for `model_id`, replacing an earlier tokenization for that model; returns stats.
    Streams: text is read one parquet batch at a time and contexts go straight to disk (`tokenstore`)."""
    import pyarrow.parquet as pq

    from .datasets import check_disk, text_path

    cfg = cfg or TokenizeConfig()
    manifest = store.manifest("datasets", dataset_id)
    tokenizer = load_tokenizer(store, model_id)
    bos, sep = _special_ids(tokenizer, cfg)
    # int32 tokens take ~1 byte per character of text (≈4 chars per token); a token budget caps it
    need = manifest.get("n_chars", 0) if cfg.max_tokens is None else min(manifest.get("n_chars", 0), 4 * cfg.max_tokens)
    check_disk(store.path("datasets", dataset_id), need, f"tokenizing {dataset_id!r}")
    parquet = pq.ParquetFile(text_path(store, dataset_id))
    chunks = ([t or "" for t in b.column(0).to_pylist()]
              for b in parquet.iter_batches(batch_size=TEXT_CHUNK_ROWS, columns=["text"]))
    with atomic_dir(tokenized_dir(store, dataset_id, model_id)) as tmp:
        writer = TokenWriter(tmp / "tokens.safetensors", cfg.context_size)
        try:
            stats = _tokenize_stream(tokenizer, chunks, parquet.metadata.num_rows, cfg, writer.write, progress)
        except BaseException:
            writer.abort()
            raise
        n_contexts = writer.close()
        config = {**cfg.to_dict(), "bos_token_id": bos, "separator_token_id": sep, "tokenizer": model_id,
                  "dataset_id": dataset_id, "model_id": model_id, "created": time.time(),
                  "heldout": heldout_split(n_contexts, cfg.heldout_fraction)}
        write_json_atomic(tmp / "config.json", config)
        write_json_atomic(tmp / "stats.json", stats)
    done = store.manifest("datasets", dataset_id).get("tokenizations", [])
    store.update_manifest("datasets", dataset_id, tokenizations=sorted(set(done) | {model_id}))
    return stats


def load_tokenized(store: Store, dataset_id: str, model_id: str) -> Tokenized:
    """The stored contexts of `dataset_id` for `model_id`: `tokens` is an int32 tensor memory-mapped from disk
    (opening is instant and costs no memory; index the rows you need and `.long()` them)."""
    manifest = store.manifest("datasets", dataset_id)
    folder = tokenized_dir(store, dataset_id, model_id)
    if not (folder / "tokens.safetensors").is_file():
        have = ", ".join(manifest.get("tokenizations", [])) or "no model yet"
        raise NotFoundError(
            f"Dataset {dataset_id!r} is not tokenized for model {model_id!r} (it is tokenized for: {have}). "
            f"Tokenize it first: python -m mistudio_core datasets tokenize {dataset_id} --model {model_id}"
        )
    tokens = mmap_tokens(folder / "tokens.safetensors")
    return Tokenized(tokens=tokens, config=read_json(folder / "config.json"), stats=read_json(folder / "stats.json"))


def tokenization_info(store: Store, dataset_id: str) -> list[dict]:
    """Config and stats of every tokenization of a dataset, for listings."""
    out = []
    for model_id in store.manifest("datasets", dataset_id).get("tokenizations", []):
        folder = tokenized_dir(store, dataset_id, model_id)
        if (folder / "stats.json").is_file():
            out.append({"model_id": model_id, "config": read_json(folder / "config.json"),
                        "stats": read_json(folder / "stats.json")})
    return out
