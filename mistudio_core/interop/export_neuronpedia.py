"""Neuronpedia bundle: feature dashboards, activations and explanations in the layout Neuronpedia's importer reads.

Field names follow Neuronpedia's own export tooling (`utils/neuronpedia-utils`: `db_models/feature.py`,
`activation.py`, `explanation.py`, `source.py`, and `convert-saedashboard-to-neuronpedia-export.py`)::

    exports/<id>/<model_id>/<layer>-<source_set>/
        release.jsonl  model.jsonl  sourceset.jsonl  source.jsonl
        features/batch-<n>.jsonl.gz       one Feature per line (vector = W_dec row, pos/neg logits, histogram)
        activations/batch-<n>.jsonl.gz    one Activation per example (tokens, values, max, bin for quantiles)
        explanations/batch-<n>.jsonl.gz   one Explanation per labelled feature
        skipped_features.json             dead features (never fired): no dashboard

Dead features are listed as skipped, not exported with empty dashboards.

Beyond Neuronpedia's fields, each Feature carries our input/output scores (`features/scores.py`) under
`SCORE_FIELDS`, prefixed `mistudio_` so they cannot collide with a field Neuronpedia adds; null where the
extraction has none, and `mistudio_scores_note` then says why.

Cost is linear in the number of features: the per-feature numbers (frequency, mean) are computed once for all
features (`_feature_views`), not once per feature as `FeatureResults.feature(i)` does for a single page view.
"""
from __future__ import annotations

import gzip
import json
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..platform.errors import NotFoundError
from ..features.results import FeatureResults
from ..labeling.store import LabelStore
from ..sae.library import load_library_sae
from ..platform.store import Store, new_id

CREATOR = "mistudio"
SCORE_FIELDS = ("mistudio_input_score", "mistudio_output_score", "mistudio_output_token", "mistudio_scores_note")
Progress = Callable[[float, str], None]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=5) as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def feature_record(fr: FeatureResults, f: dict, model_id: str, layer: str, hook: str, vector: list[float]) -> dict:
    hist = f["histogram"]
    edges, counts = hist.get("edges", []), hist.get("counts", [])
    centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    return {"modelId": model_id, "layer": layer, "index": str(f["index"]), "creatorId": CREATOR,
            "createdAt": _now(), "maxActApprox": f["max_activation"], "hasVector": True, "vector": vector,
            "vectorLabel": f["label"] or None, "vectorDefaultSteerStrength": f["max_activation"], "hookName": hook,
            "topkCosSimIndices": [], "topkCosSimValues": [],
            "neuron_alignment_indices": [], "neuron_alignment_values": [], "neuron_alignment_l1": [],
            "correlated_neurons_indices": [], "correlated_neurons_pearson": [], "correlated_neurons_l1": [],
            "correlated_features_indices": [c["index"] for c in f.get("cooccurring", [])],
            "correlated_features_pearson": [], "correlated_features_l1": [],
            "neg_str": [t for t, _ in f["bottom_logits"]], "neg_values": [v for _, v in f["bottom_logits"]],
            "pos_str": [t for t, _ in f["top_logits"]], "pos_values": [v for _, v in f["top_logits"]],
            "frac_nonzero": f["frequency"], "freq_hist_data_bar_heights": counts,
            "freq_hist_data_bar_values": centers, "logits_hist_data_bar_heights": [],
            "logits_hist_data_bar_values": [], "decoder_weights_dist": [], **_score_fields(f.get("scores"))}


def _score_fields(sc: dict | None) -> dict:
    sc = sc or {"why": "not computed"}
    return dict(zip(SCORE_FIELDS, (sc.get("input_score"), sc.get("output_score"), sc.get("output_token"),
                                   sc.get("why"))))


def activation_records(f: dict, model_id: str, layer: str) -> list[dict]:
    groups = [(None, f["top_examples"])] + [(g["quantile"], g["examples"]) for g in f["quantile_examples"]]
    rows = []
    for quantile, examples in groups:
        for ex in examples:
            values = ex["acts"]
            peak = max(range(len(values)), key=values.__getitem__) if values else 0
            lo, hi = _bin_bounds(quantile, values)
            rows.append({"id": uuid.uuid4().hex[:25], "tokens": ex["tokens"], "index": str(f["index"]),
                         "layer": layer, "modelId": model_id, "maxValue": max(values, default=0.0),
                         "maxValueTokenIndex": peak, "minValue": min(values, default=0.0), "values": values,
                         "creatorId": CREATOR, "dataSource": None, "dataIndex": str(ex.get("context_id")),
                         "dfaValues": [], "dfaTargetIndex": None, "dfaMaxValue": None, "createdAt": _now(),
                         "lossValues": [], "logitContributions": None, "binMin": lo, "binMax": hi,
                         "binContains": None, "qualifyingTokenIndex": ex.get("peak")})
    return rows


def _bin_bounds(quantile: str | None, values: list[float]) -> tuple[float | None, float | None]:
    """Top examples carry no bin (-1 in Neuronpedia's convention is 'top'); quantile groups carry their range."""
    if quantile is None:
        return -1, -1
    nums = [float(x) for x in re.findall(r"\d+", quantile)]
    return (nums[0] / 100, nums[1] / 100) if len(nums) >= 2 else (None, None)


def explanation_record(index: int, label: dict, model_id: str, layer: str) -> dict:
    text = label.get("description") or label.get("label", "")
    if label.get("label") and label.get("description"):
        text = f"{label['label']}: {label['description']}"
    return {"id": uuid.uuid4().hex[:25], "modelId": model_id, "layer": layer, "index": str(index),
            "description": text, "authorId": CREATOR, "embedding": None, "triggeredById": None,
            "typeName": "oai_token-act-pair" if label.get("source") == "auto" else "manual",
            "explanationModelName": label.get("model"), "notes": json.dumps(label.get("score")),
            "createdAt": _now()}


def source_records(manifest: dict, model_id: str, set_name: str, layer: str, fr: FeatureResults) -> dict:
    cfg = fr.meta.get("config", {})
    return {
        "release.jsonl": {"name": set_name, "description": manifest["name"], "descriptionShort": manifest["name"],
                          "urls": [], "creatorNameShort": CREATOR, "creatorName": CREATOR, "creatorId": CREATOR,
                          "createdAt": _now()},
        "model.jsonl": {"id": model_id, "instruct": "instruct" in model_id.lower() or model_id.endswith("-it"),
                        "displayNameShort": model_id, "displayName": model_id, "creatorId": CREATOR,
                        "createdAt": _now(), "updatedAt": _now()},
        "sourceset.jsonl": {"modelId": model_id, "name": set_name, "creatorId": CREATOR, "createdAt": _now(),
                            "creatorName": CREATOR, "releaseName": set_name, "visibility": "PUBLIC",
                            "description": f"{manifest.get('hook_name')} - {manifest['d_sae']}"},
        "source.jsonl": {"id": layer, "modelId": model_id, "setName": set_name, "creatorId": CREATOR,
                         "hasDashboards": True, "inferenceEnabled": False, "inferenceHosts": [], "visibility": "PUBLIC",
                         "dataset": manifest.get("dataset_id"), "num_prompts": fr.meta.get("n_contexts"),
                         "num_tokens_in_prompt": cfg.get("context_size") or fr.meta.get("context_size"),
                         "createdAt": _now()},
    }


def _source_names(manifest: dict) -> tuple[str, str, str]:
    """(model_id, set_name, source_id): Neuronpedia ids are lower-case with dashes, source = `<layer>-<set>`."""
    hook = manifest.get("hook_name") or "blocks.0.hook_resid_post"
    m = re.match(r"blocks\.(\d+)\.hook_(\w+)", hook)
    layer, site = (m.group(1), m.group(2)) if m else ("0", "resid_post")
    model_id = re.sub(r"[^a-z0-9-]+", "-", str(manifest.get("model_id") or "model").lower()).strip("-")
    short = {"resid_post": "res", "resid_pre": "res-pre", "mlp_out": "mlp", "attn_out": "att"}.get(site, site)
    set_name = f"mistudio-{short}-{manifest['d_sae']}"
    return model_id, set_name, f"{layer}-{set_name}"


class _OpenWindows(dict):
    """`windows.safetensors` opened once: name -> a lazy slice, indexed per feature like the in-memory dict."""

    def __init__(self, path: Path):
        from safetensors import safe_open

        self.handle = safe_open(str(path), framework="pt")
        super().__init__({name: self.handle.get_slice(name) for name in self.handle.keys()})


def _feature_views(fr: FeatureResults):
    """`(view, live, dead)`: `view(i)` is `fr.feature(i)` with the all-feature vectors (frequencies, means)
    computed once — `feature(i)` alone recomputes them for every feature on each call, which made the export
    quadratic in the width. The per-instance overrides only affect this export's own `FeatureResults`."""
    freq, means = fr.frequencies(), fr.means()
    fr.frequencies, fr.means = (lambda: freq), (lambda: means)
    if isinstance(fr._windows, Path):  # one open memory map for the whole export, not one per example group
        fr._windows = _OpenWindows(fr._windows)
    flags = freq.tolist()
    live = [i for i, f in enumerate(flags) if f > 0]
    dead = [i for i, f in enumerate(flags) if f == 0]
    return fr.feature, live, dead


def export_neuronpedia(store: Store, sae_id: str, batch_size: int = 128, progress: Progress | None = None,
                       should_stop: Callable[[], bool] | None = None) -> dict:
    """Write the Neuronpedia bundle of an SAE whose features were extracted; returns the export manifest."""
    manifest = store.manifest("saes", sae_id)
    try:
        fr = FeatureResults.load(store, sae_id)
    except NotFoundError as e:
        raise NotFoundError(f"{e} A Neuronpedia bundle needs feature dashboards: run extraction for "
                            f"{sae_id!r} first (Features tab).") from e
    labels = LabelStore(store, sae_id).all()
    w_dec = load_library_sae(store, sae_id).W_dec.detach()
    model_id, set_name, layer = _source_names(manifest)
    hook = manifest.get("hook_name")
    view, live, dead = _feature_views(fr)
    export_id = new_id(f"{manifest['name']}-neuronpedia")
    meta = {"format": "neuronpedia", "sae_id": sae_id, "model_id": model_id, "source_id": layer,
            "n_features": len(live), "n_skipped": len(dead)}
    with store.create("exports", export_id, meta, artifact_id=export_id) as tmp:
        root = tmp / model_id / layer
        root.mkdir(parents=True)
        for fname, row in source_records(manifest, model_id, set_name, layer, fr).items():
            (root / fname).write_text(json.dumps(row) + "\n")
        (root / "skipped_features.json").write_text(json.dumps({"reason": "dead (never fired)", "indices": dead}))
        for b, start in enumerate(range(0, len(live), batch_size)):
            if should_stop and should_stop():
                raise InterruptedError("Export cancelled")
            feats, acts, expl = [], [], []
            for i in live[start:start + batch_size]:
                f = view(i)
                feats.append(feature_record(fr, f, model_id, layer, hook, w_dec[i].tolist()))
                acts += activation_records(f, model_id, layer)
                if i in labels:
                    expl.append(explanation_record(i, labels[i], model_id, layer))
            _write_jsonl_gz(root / "features" / f"batch-{b}.jsonl.gz", feats)
            _write_jsonl_gz(root / "activations" / f"batch-{b}.jsonl.gz", acts)
            if expl:
                _write_jsonl_gz(root / "explanations" / f"batch-{b}.jsonl.gz", expl)
            if progress:
                done = min(start + batch_size, len(live))
                progress(done / max(len(live), 1), f"{done}/{len(live)} features")
    return {**store.manifest("exports", export_id), "path": str(store.path("exports", export_id))}
