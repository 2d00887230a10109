"""Import Neuronpedia's feature explanations as labels of a library SAE.

Neuronpedia publishes explanations per source (a model + an SAE set at one layer, e.g. `gemma-2-2b` /
`20-gemmascope-res-16k`) as JSON arrays, JSON Lines, or either gzipped, one record per explanation::

    {"modelId": "gemma-2-2b", "layer": "20-gemmascope-res-16k", "index": "4242",
     "description": "words in all capital letters", "explanationModelName": "gpt-4o-mini",
     "typeName": "oai_token-act-pair", "scores": [...]}

A file is matched to the SAE by model + layer + width: the source id's leading number is the layer and its
`-16k` / `-131k` suffix the width (`__l0-30` variants allowed). A file for another model, layer or width is refused
with what it is for. A line that is not JSON, or a record without a usable index or description, is skipped and
counted, never fatal. Labels land with source "neuronpedia" (`LabelStore.set_imported_many`): manual and LLM
labels are never overwritten; the explanation is kept beside them.
"""
from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path

from ..platform.errors import NotFoundError, OfflineError, ValidationError
from ..platform.hub import hub_offline_reason
from ..labeling.store import LabelStore
from ..platform.store import Store

_SOURCE = re.compile(r"^(\d+)-[a-z0-9-]*?-(\d+)([km]?)(?:__.*)?$")
MAX_BYTES = 512 * 2**20
"""Refuse decompressed files past this (a 16k-feature export is ~5 MB; this stops a gzip bomb)."""


def parse_source(layer_field: str) -> tuple[int | None, int | None]:
    """('20-gemmascope-res-16k') → (20, 16384); parts it cannot read are None."""
    m = _SOURCE.match(str(layer_field or "").strip().lower())
    if not m:
        lead = re.match(r"^(\d+)", str(layer_field or ""))
        return (int(lead.group(1)) if lead else None), None
    return int(m.group(1)), int(m.group(2)) * {"": 1, "k": 1000, "m": 1000 ** 2}[m.group(3)]


def _same_width(a: int | None, b: int) -> bool:
    """Neuronpedia writes 16k for 16384, 131k for 131072 and 1m for 1048576: compare at the precision written."""
    return a is None or a in (b, b // 1000 * 1000, b // 1000 ** 2 * 1000 ** 2, round(b / 1024) * 1000)


def read_records(path: Path) -> tuple[list[dict], int]:
    """Records of a JSON / JSONL file, gzipped or not; returns (records, malformed line count)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ValidationError(f"{Path(path).name} is larger than {MAX_BYTES // 2**20} MB unpacked; split it.")
    text = raw.decode("utf-8", errors="replace").strip()
    if text.startswith("["):
        try:
            data = json.loads(text)
            return [r for r in data if isinstance(r, dict)], sum(not isinstance(r, dict) for r in data)
        except json.JSONDecodeError:
            pass  # fall through: maybe JSON Lines whose first line is an array
    if text.startswith("{") and "\n" not in text:
        data = json.loads(text)
        rows = data.get("explanations") if isinstance(data, dict) else None
        return (rows, 0) if isinstance(rows, list) else ([data], 0)
    records, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict):
            records.append(row)
        else:
            bad += 1
    return records, bad


def sae_identity(store: Store, sae_id: str) -> dict:
    """What an SAE is, for matching: model names it answers to, layer and width."""
    m = store.manifest("saes", sae_id)
    cat = m.get("catalog") or {}
    names = {str(n).lower() for n in (cat.get("model"), m.get("model_id"), _cfg_model_name(store, sae_id)) if n}
    if m.get("model_id") and store.exists("models", m["model_id"]):  # a Hub model answers to its repo's name
        repo = (store.manifest("models", m["model_id"]).get("source") or {}).get("repo_id") or ""
        names |= {repo.split("/")[-1].lower()} - {""}
    hook = re.match(r"blocks\.(\d+)\.", m.get("hook_name") or "")
    return {"models": names, "layer": int(hook.group(1)) if hook else None, "width": int(m["d_sae"]),
            "neuronpedia": cat.get("neuronpedia")}


def _cfg_model_name(store: Store, sae_id: str) -> str | None:
    """`metadata.model_name` of the SAE's cfg.json (Gemma Scope imports say `gemma-2-2b` there)."""
    try:
        cfg = json.loads((store.path("saes", sae_id) / "cfg.json").read_text())
    except (OSError, ValueError):
        return None
    return (cfg.get("metadata") or {}).get("model_name") or cfg.get("model_name")


def _describe(model: str, source: str) -> str:
    layer, width = parse_source(source)
    w = f"width {width // 1000}k" if width and width >= 1000 else f"width {width}" if width else "unknown width"
    return f"{model or 'an unnamed model'} layer {layer if layer is not None else '?'} {w} (source {source!r})"


def _check_match(ident: dict, records: list[dict], sae_id: str) -> None:
    pairs = {(str(r.get("modelId") or ""), str(r.get("layer") or "")) for r in records}
    for model, source in pairs:
        layer, width = parse_source(source)
        ok = ((not model or model.lower() in ident["models"]) and (layer is None or layer == ident["layer"])
              and _same_width(width, ident["width"]))
        if not ok:
            ours = f"{'/'.join(sorted(ident['models'])) or '?'} layer {ident['layer']} width {ident['width']}"
            raise ValidationError(f"This file holds explanations for {_describe(model, source)}; SAE {sae_id!r} is "
                                  f"{ours}. Download the explanations of the matching source"
                                  + (f" ({ident['neuronpedia']})" if ident.get("neuronpedia") else "") + ".")


def import_explanations(store: Store, sae_id: str, path: str | Path) -> dict:
    """Import a Neuronpedia explanations file into SAE `sae_id`'s labels; returns counts."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"No explanations file at {path}; download one from Neuronpedia (or its Hub dataset).")
    records, bad = read_records(path)
    ident = sae_identity(store, sae_id)
    _check_match(ident, records, sae_id)
    items, seen = {}, set()
    for r in records:
        idx, text = str(r.get("index", "")).strip(), str(r.get("description") or "").strip()
        if not idx.isdigit() or int(idx) >= ident["width"] or not text:
            bad += 1
            continue
        seen.add(int(idx))
        # Several explanations per feature: keep the best-scored one (else the first).
        if int(idx) not in items or _score(r) > _score(items[int(idx)]):
            items[int(idx)] = r
    counts = LabelStore(store, sae_id).set_imported_many(
        (i, {"description": r["description"].strip(), "model": r.get("explanationModelName"),
             "scores": r.get("scores"), "source": r.get("layer")}) for i, r in sorted(items.items()))
    return {"sae_id": sae_id, "features": len(items), "skipped": bad, **counts,
            "kept_manual_or_llm": counts["beside"]}


def _score(r: dict) -> float:
    scores = r.get("scores")
    vals = [s.get("value") if isinstance(s, dict) else s for s in scores] if isinstance(scores, list) else []
    nums = [float(v) for v in vals if isinstance(v, (int, float))]
    return max(nums, default=float("-inf"))


def import_explanations_hub(store: Store, sae_id: str, repo_id: str, filename: str, token: str | None = None) -> dict:
    """The same from a file of a Hub dataset repo (downloaded into the HF cache; works offline once cached)."""
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo_id, filename, repo_type="dataset", local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached
        reason = hub_offline_reason()
        if reason:
            raise OfflineError(f"Cannot download {filename!r} from dataset {repo_id!r}: {reason}. Download the file "
                               "on a connected machine and import it as a local file instead.") from None
        try:
            path = hf_hub_download(repo_id, filename, repo_type="dataset", token=token or None)
        except Exception as e:  # noqa: BLE001 - hub errors of every kind become one clear message
            raise NotFoundError(f"Could not fetch {filename!r} from dataset {repo_id!r} ({type(e).__name__}); check "
                                "the repo id and file name (and pass a token for a private repo).") from e
    return import_explanations(store, sae_id, path)
