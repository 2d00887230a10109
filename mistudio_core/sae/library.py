"""The SAE library: `saes/<id>/` = SAELens files + manifest + `training_record.json`.

The manifest is what listings show (model, hook, architecture, widths, headline metrics with `metrics_source`,
`train_batch_metrics` apart); the training record keeps the full story (training config, metrics with formulas,
provenance: model, hook, dataset, tokens); `evals/` holds one evaluation per (dataset, split) — see `evals.py`.
"""
from __future__ import annotations

import re
import shutil

from ..platform.store import Store, new_id, read_json, write_json_atomic
from .io import load_sae, save_sae
from .metrics import flat_values
from .model import SAE

RECORD = "training_record.json"


def register_sae(store: Store, sae: SAE, name: str, provenance: dict | None = None, metrics: dict | None = None,
                 record: dict | None = None, *, sae_id: str | None = None, evals: list[dict] = (),
                 train_batch_metrics: dict | None = None) -> dict:
    """Save `sae` into the library (atomically: the folder appears complete or not at all); returns its manifest.

    `provenance`: model_id, hook_name, dataset_id, tokens_seen, source ("trained" | "imported"), ...;
    `metrics`: `{name: value}` or `{name: {"value", "formula"}}` of unknown source (kept for callers that have
    no stored evaluation); `evals`: evaluation records (`sae/evals.py`) written into `evals/` — the first one
    becomes the headline `metrics` with its `metrics_source`; `train_batch_metrics`: the last training batch's
    numbers, kept apart and labelled; `record`: anything else worth keeping (e.g. the TrainConfig dict).
    `sae_id` fixes the folder name, so a job that registers again after a kill finds its SAE instead of adding
    a second one (an existing id is returned as is)."""
    from .evals import headline, write_eval

    if sae_id and store.exists("saes", sae_id):
        return store.manifest("saes", sae_id)
    if sae_id:  # a kill while this id was being written left a hidden temp folder: only we can own that name
        for stale in store.dir("saes").glob(f".tmp-{sae_id}-*"):
            if re.fullmatch(r"[0-9a-f]{6}", stale.name[len(f".tmp-{sae_id}-"):]):
                shutil.rmtree(stale, ignore_errors=True)
    provenance = dict(provenance or {})
    metrics = metrics or {}
    meta = sae.cfg.metadata
    from .architectures.transcoder import saved_name
    saved_arch = saved_name(sae.cfg)  # what cfg.json says: batchtopk, matryoshka → jumprelu; transcoders named so
    manifest = dict(model_id=provenance.get("model_id", meta.get("model_name")),
                    hook_name=provenance.get("hook_name", meta.get("hook_name")),
                    architecture=saved_arch, trained_architecture=sae.cfg.architecture,
                    d_in=sae.cfg.d_in, d_sae=sae.cfg.d_sae, k=sae.cfg.k,
                    **({"hook_name_out": sae.cfg.hook_name_out} if sae.cfg.d_out is not None else {}),
                    metrics=flat_values(metrics), dataset_id=provenance.get("dataset_id"),
                    tokens_seen=provenance.get("tokens_seen"), source=provenance.get("source", "trained"))
    if evals:
        manifest.update(headline(evals[0]))
    if train_batch_metrics:
        manifest["train_batch_metrics"] = flat_values(train_batch_metrics)
    sae_id = sae_id or new_id(name)
    with store.create("saes", name, manifest, artifact_id=sae_id) as tmp:
        save_sae(sae, tmp)
        for ev in evals:
            write_eval(tmp, dict(ev, sae_id=sae_id))
        write_json_atomic(tmp / RECORD, dict(record or {}, provenance=provenance, final_metrics=metrics,
                                             train_batch_metrics=train_batch_metrics,
                                             sae_config=sae.cfg.to_dict()))
    return store.manifest("saes", sae_id)


def load_library_sae(store: Store, sae_id: str, device=None) -> SAE:
    """Load a library SAE by id (unknown ids raise NotFoundError listing the known ones)."""
    store.manifest("saes", sae_id)
    return load_sae(store.path("saes", sae_id), device=device)


def training_record(store: Store, sae_id: str) -> dict:
    store.manifest("saes", sae_id)
    path = store.path("saes", sae_id) / RECORD
    return read_json(path) if path.is_file() else {}
