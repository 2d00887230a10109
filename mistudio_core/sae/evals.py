"""Stored evaluations of library SAEs: one record per (SAE, dataset, split), with formulas and provenance.

    saes/<sae_id>/evals/<dataset_id>__<split>.json  =  {sae_id, dataset_id, split, model_id, hook_name,
        n_contexts, n_tokens, context_size, downstream, created, seconds, metrics: {name: {value, formula}}}

Splits are the tokenization's (`tokenize.split_ids`): "heldout" (the tail slice no training stream reads) and
"train" (the contexts training read: an SAE scores better there if it overfits). A record is written atomically
(temp file + rename), so a kill leaves the previous record or the new one, never half of one.

The library manifest's headline `metrics` are one of these records, named by `metrics_source` (`dataset_id`,
`split`, `n_contexts`, `n_tokens`); numbers from training batches live apart in `train_batch_metrics`.
`source_label` turns either into the words the UI shows ("sotu held-out", "train batch").
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..platform.errors import NotFoundError, ValidationError
from ..platform.store import Store, read_json, write_json_atomic
from .metrics import flat_values

SPLITS = ("heldout", "train")
SPLIT_WORDS = {"heldout": "held-out", "train": "train split"}
DEFAULT_CONTEXTS = 64
EVALS_DIR = "evals"
HEADLINE = ("explained_variance", "fvu", "normalized_mse", "l0", "dead_fraction", "ce_clean", "ce_spliced",
            "ce_zero_ablated", "ce_loss_recovered", "kl_divergence", "n_tokens")


def eval_key(dataset_id: str, split: str) -> str:
    return f"{dataset_id}__{split}"


def source_label(source: dict | None) -> str:
    """Where a number comes from, in words: "sotu held-out", "train batch", or "source unknown"."""
    if not source:
        return "source unknown"
    if source.get("split") == "train_batch":
        return "train batch"
    return f"{source.get('dataset_id')} {SPLIT_WORDS.get(source.get('split'), source.get('split'))}"


def split_tokens(tok, split: str, n_contexts: int | None, dataset_id: str = "?"):
    """The first `n_contexts` contexts of `split` of a `Tokenized` (None: up to DEFAULT_CONTEXTS); too few raises
    a message naming the fix."""
    import torch

    if split not in SPLITS:
        raise ValidationError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    train_ids, held_ids = tok.split_ids()
    available = len(held_ids) if split == "heldout" else len(train_ids)
    n = min(DEFAULT_CONTEXTS, available) if n_contexts is None else int(n_contexts)
    if available == 0 or n < 1:
        raise ValidationError(f"Dataset {dataset_id!r} has no {SPLIT_WORDS[split]} contexts to evaluate on. "
                              "Re-tokenize it with a larger heldout_fraction or more text.")
    if n > available:
        raise ValidationError(f"Dataset {dataset_id!r} has {available} {SPLIT_WORDS[split]} contexts, fewer than "
                              f"the {n} asked for. Evaluate on at most {available} contexts, or re-tokenize it "
                              "with more text (or a larger heldout_fraction).")
    rows = tok.heldout_tokens(n) if split == "heldout" else tok.tokens[:n]  # train ids are 0..first-1
    return torch.as_tensor(rows).long()


def evaluate_record(loaded, sae, hook_name: str, tok, dataset_id: str, split: str = "heldout",
                    n_contexts: int | None = None, downstream: bool = True, batch_size: int = 8,
                    progress: Callable[[float, str], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> dict | None:
    """Evaluate `sae` on a split of a tokenization; returns the record to store (None if stopped)."""
    from .evaluate import evaluate_sae

    tokens = split_tokens(tok, split, n_contexts, dataset_id)
    t0 = time.perf_counter()
    metrics = evaluate_sae(loaded, sae, hook_name, tokens, n_contexts=len(tokens), batch_size=batch_size,
                           downstream=downstream, progress=progress, should_stop=should_stop)
    if metrics is None:
        return None
    return dict(dataset_id=dataset_id, split=split, model_id=tok.config.get("model_id") or getattr(loaded,
                "model_id", None), hook_name=hook_name, n_contexts=len(tokens), n_tokens=metrics["n_tokens"]["value"],
                context_size=int(tokens.shape[1]), downstream=downstream, created=time.time(),
                model_dtype=getattr(loaded, "dtype", None),
                seconds=round(time.perf_counter() - t0, 2), metrics=metrics)


def write_eval(sae_folder: Path, record: dict) -> Path:
    """Write a record under `sae_folder/evals/` (atomic; replaces the same dataset+split)."""
    path = Path(sae_folder) / EVALS_DIR / f"{eval_key(record['dataset_id'], record['split'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return path


def headline(record: dict) -> dict:
    """Manifest fields naming a record as the SAE's headline numbers."""
    flat = flat_values(record["metrics"])
    return dict(metrics={k: flat[k] for k in HEADLINE if k in flat},
                metrics_source={k: record[k] for k in ("dataset_id", "split", "n_contexts", "n_tokens")})


def store_eval(store: Store, sae_id: str, record: dict) -> dict:
    """Save a record for a library SAE; it also becomes the headline when the SAE has none with a source yet
    (imported SAEs, SAEs made before evaluations were stored). Returns the SAE's manifest."""
    manifest = store.manifest("saes", sae_id)
    write_eval(store.path("saes", sae_id), dict(record, sae_id=sae_id))
    if not manifest.get("metrics_source"):
        old = manifest.get("metrics") or {}
        extra = {"unlabelled_metrics": old} if old else {}
        manifest = store.update_manifest("saes", sae_id, **headline(record), **extra)
    return manifest


def list_evals(store: Store, sae_id: str) -> list[dict]:
    """Every stored evaluation of one SAE, oldest first."""
    folder = store.path("saes", sae_id) / EVALS_DIR
    records = [read_json(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted(records, key=lambda r: r.get("created", 0))


def load_eval(store: Store, sae_id: str, dataset_id: str, split: str = "heldout") -> dict:
    path = store.path("saes", sae_id) / EVALS_DIR / f"{eval_key(dataset_id, split)}.json"
    if not path.is_file():
        have = ", ".join(eval_key(r["dataset_id"], r["split"]) for r in list_evals(store, sae_id)) or "none"
        raise NotFoundError(f"SAE {sae_id!r} has no evaluation on {dataset_id} ({split}); it has: {have}. "
                            f"Run one: python -m mistudio_core eval --sae {sae_id} --dataset {dataset_id}")
    return read_json(path)


def evaluations(store: Store) -> list[tuple[str, str]]:
    """Distinct (dataset_id, split) pairs any library SAE was evaluated on."""
    pairs = {(r["dataset_id"], r["split"]) for m in store.list("saes") for r in list_evals(store, m["id"])}
    return sorted(pairs)


def comparison(store: Store, dataset_id: str, split: str = "heldout") -> list[dict]:
    """One row per SAE evaluated on (dataset, split): its flat metrics plus id, model, hook, n_contexts."""
    rows = []
    for m in store.list("saes"):
        for r in list_evals(store, m["id"]):
            if r["dataset_id"] == dataset_id and r["split"] == split:
                rows.append(dict(flat_values(r["metrics"]), sae_id=m["id"], name=m.get("name"),
                                 model_id=m.get("model_id"), hook_name=m.get("hook_name"), d_sae=m.get("d_sae"),
                                 architecture=m.get("architecture"), n_contexts=r["n_contexts"]))
    return rows


def headline_lines(store: Store, sae_ids: list[str]) -> list[str]:
    """One Markdown line per SAE: held-out CE loss recovered and EV with the dataset they come from."""
    lines = []
    for sae_id in sae_ids or []:
        try:
            m = store.manifest("saes", sae_id)
        except NotFoundError:
            continue
        src, met = m.get("metrics_source"), m.get("metrics") or {}
        if not src or "ce_loss_recovered" not in met:
            continue
        lines.append(f"`{sae_id}` on {source_label(src)} ({src.get('n_contexts')} contexts): CE loss recovered "
                     f"**{met['ce_loss_recovered']:.3f}**, explained variance {met.get('explained_variance', 0):.3f}, "
                     f"L0 {met.get('l0', 0):.1f}")
    return lines
