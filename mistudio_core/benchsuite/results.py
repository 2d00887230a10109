"""Stored benchmark results: one record per (SAE, suite version, dataset, split), with where every number comes from.

    saes/<sae_id>/bench/v<version>__<dataset_id>__<split>.json = {sae_id, suite_version, dataset_id, split, model_id,
        hook_name, created, seconds {part: s}, parts, spec, headline {name: value}, provenance {part: words},
        core, absorption, probing, autointerp}

`dataset_id`/`split` name the text of the core metrics, shrinkage and the auto-interp examples; absorption reads
the model's vocabulary and probing its own offline tasks, and their provenance lines say so, so a number never
shows under a held-out name it was not measured on. A record is written atomically (temp file + rename).
Bump SUITE_VERSION when a method changes: older records stay, listed under their own version.
"""
from __future__ import annotations

from pathlib import Path

from ..platform.errors import NotFoundError
from ..platform.store import Store, read_json, write_json_atomic

SUITE_VERSION = 1
BENCH_DIR = "bench"
# Headline numbers of a result (flat), in the order tables show them.
HEADLINE = ("l0", "explained_variance", "ce_loss_recovered", "l2_ratio", "dead_fraction", "absorption_rate",
            "absorption_fraction", "probe_k1", "probe_k2", "probe_k5", "probe_sae_full", "probe_raw",
            "autointerp_score", "autointerp_detection", "autointerp_fuzzing")


def result_key(version: int, dataset_id: str, split: str = "heldout") -> str:
    return f"v{version}__{dataset_id}__{split}"


def parse_key(key: str) -> tuple[int, str, str]:
    """(version, dataset_id, split) of a `result_key`."""
    version, rest = key.split("__", 1)
    dataset_id, split = rest.rsplit("__", 1)
    return int(version.lstrip("v")), dataset_id, split


def result_path(store: Store, sae_id: str, dataset_id: str, version: int = SUITE_VERSION,
                split: str = "heldout") -> Path:
    return store.path("saes", sae_id) / BENCH_DIR / f"{result_key(version, dataset_id, split)}.json"


def headline(record: dict) -> dict:
    """Flat numbers of a record's parts (a part that did not run leaves its numbers out)."""
    out = {}
    core = (record.get("core") or {}).get("metrics") or {}
    for key in ("l0", "explained_variance", "ce_loss_recovered", "dead_fraction"):
        if key in core:
            out[key] = core[key]["value"]
    if "l2_ratio" in (record.get("core") or {}):
        out["l2_ratio"] = record["core"]["l2_ratio"]
    absorption = record.get("absorption") or {}
    for key in ("absorption_rate", "absorption_fraction"):
        if absorption.get(key) is not None:
            out[key] = absorption[key]
    summary = (record.get("probing") or {}).get("summary") or {}
    out.update({f"probe_{k}": v for k, v in summary.items()})
    auto = record.get("autointerp") or {}
    if auto.get("score") is not None:
        out.update(autointerp_score=auto["score"], autointerp_detection=auto["detection"],
                   autointerp_fuzzing=auto["fuzzing"])
    return out


def store_result(store: Store, sae_id: str, record: dict) -> Path:
    """Write a record (atomic; replaces the same suite version, dataset and split) with its headline; returns the
    path."""
    record = dict(record, sae_id=sae_id, headline=headline(record))
    path = result_path(store, sae_id, record["dataset_id"], record["suite_version"], record["split"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return path


def list_results(store: Store, sae_id: str) -> list[dict]:
    """Every stored benchmark result of one SAE, oldest first."""
    folder = store.path("saes", sae_id) / BENCH_DIR
    records = [read_json(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted(records, key=lambda r: r.get("created", 0))


def load_result(store: Store, sae_id: str, dataset_id: str, version: int = SUITE_VERSION,
                split: str = "heldout") -> dict:
    path = result_path(store, sae_id, dataset_id, version, split)
    if not path.is_file():
        raise NotFoundError(f"SAE {sae_id!r} has no benchmark result of suite v{version} on {dataset_id} ({split}). "
                            f"Run it: python -m mistudio_core eval --suite --sae {sae_id} --dataset {dataset_id} "
                            f"--split {split}")
    return read_json(path)


def suites(store: Store) -> list[tuple[int, str, str]]:
    """Distinct (suite version, dataset, split) of any library SAE's results, newest version first."""
    found = {(r["suite_version"], r["dataset_id"], r["split"]) for m in store.list("saes")
             for r in list_results(store, m["id"])}
    return sorted(found, key=lambda p: (-p[0], p[1], p[2]))


def source_line(record: dict) -> str:
    """Where the core numbers of a record were measured, in words ("sotu held-out, 64 contexts")."""
    from ..sae.evals import source_label

    core = record.get("core") or {}
    n = f", {core['n_contexts']} contexts" if core.get("n_contexts") else ""
    return f"{source_label({'dataset_id': record['dataset_id'], 'split': record.get('split')})}{n}"


def comparison(store: Store, dataset_id: str, version: int = SUITE_VERSION, split: str = "heldout") -> list[dict]:
    """One row per SAE with a result of this suite version on this dataset and split: headline numbers +
    identity + where the core numbers come from."""
    rows = []
    for m in store.list("saes"):
        for r in list_results(store, m["id"]):
            if (r["suite_version"], r["dataset_id"], r["split"]) != (version, dataset_id, split):
                continue
            rows.append(dict(r.get("headline") or headline(r), sae_id=m["id"], name=m.get("name"),
                             model_id=m.get("model_id"), hook_name=m.get("hook_name"), d_sae=m.get("d_sae"),
                             architecture=m.get("architecture"), k=m.get("k"), split=r.get("split"),
                             source=source_line(r), parts=r.get("parts"), provenance=r.get("provenance") or {}))
    return rows
