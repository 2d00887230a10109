"""The Neuronpedia bundle carries every field Neuronpedia's importer models (utils/neuronpedia-utils/db_models in
the Neuronpedia repository: Feature, Activation, Explanation, Source), lists dead features as skipped, and holds
the real dashboards of the extraction (top examples, logits, decoder vector)."""
from __future__ import annotations

import gzip
import json

import pytest

from tests.features_helpers import D_SAE, HOOK, tiny_setup

# Field names of Neuronpedia's db models (required ones first, then the optional ones we also fill).
FEATURE_FIELDS = {"modelId", "layer", "index", "creatorId", "createdAt", "maxActApprox", "hasVector", "vector",
                  "vectorLabel", "vectorDefaultSteerStrength", "hookName", "topkCosSimIndices", "topkCosSimValues",
                  "neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
                  "correlated_neurons_indices", "correlated_neurons_pearson", "correlated_neurons_l1",
                  "correlated_features_indices", "correlated_features_pearson", "correlated_features_l1", "neg_str",
                  "neg_values", "pos_str", "pos_values", "frac_nonzero", "freq_hist_data_bar_heights",
                  "freq_hist_data_bar_values", "logits_hist_data_bar_heights", "logits_hist_data_bar_values",
                  "decoder_weights_dist"}
ACTIVATION_FIELDS = {"id", "tokens", "index", "layer", "modelId", "maxValue", "maxValueTokenIndex", "minValue",
                     "values", "creatorId", "dataSource", "dataIndex", "dfaValues", "dfaTargetIndex", "dfaMaxValue",
                     "createdAt", "lossValues", "logitContributions", "binMin", "binMax", "binContains",
                     "qualifyingTokenIndex"}
EXPLANATION_FIELDS = {"id", "modelId", "layer", "index", "description", "authorId", "embedding", "triggeredById",
                      "typeName", "explanationModelName", "notes", "createdAt"}
SOURCE_FIELDS = {"id", "modelId", "setName", "creatorId", "hasDashboards", "inferenceEnabled", "inferenceHosts",
                 "visibility", "num_prompts", "num_tokens_in_prompt", "dataset", "createdAt"}


@pytest.fixture
def extracted(store, tmp_path):
    from mistudio_core.features.extract import ExtractConfig, extract_features
    from mistudio_core.features.results import features_dir
    from mistudio_core.labeling.store import LabelStore
    from mistudio_core.sae.library import register_sae

    loaded, sae, tokens = tiny_setup(tmp_path / "tok")
    m = register_sae(store, sae, "tiny", {"model_id": "tiny-llama", "hook_name": HOOK})
    cfg = ExtractConfig(sae_id=m["id"], dataset_id="tiny-ds", n_tokens=10_000, top_k=4, batch_contexts=8,
                        n_quantiles=2, quantile_examples=2)
    res = extract_features(loaded, sae, tokens, cfg, hook_name=HOOK)
    res.meta.update(sae_id=m["id"], dataset_id="tiny-ds")
    res.save(features_dir(store, m["id"]))
    live = next(r["index"] for r in res.table() if not r["dead"])
    LabelStore(store, m["id"]).set(live, "capital letters", "syntax", "Fires on capitalised words.")
    return m, res, live


def _rows(path):
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def test_bundle_matches_neuronpedia_importer_fields(store, extracted):
    from mistudio_core.interop.export_neuronpedia import SCORE_FIELDS, export_neuronpedia

    m, res, live = extracted
    out = export_neuronpedia(store, m["id"], batch_size=5)
    root = store.path("exports", out["id"]) / "tiny-llama" / "1-mistudio-res-24"
    assert {p.name for p in root.iterdir()} >= {"release.jsonl", "model.jsonl", "sourceset.jsonl", "source.jsonl",
                                                "features", "activations", "explanations", "skipped_features.json"}
    source = json.loads((root / "source.jsonl").read_text())
    assert SOURCE_FIELDS <= set(source) and source["id"] == "1-mistudio-res-24"
    features = [r for p in sorted((root / "features").iterdir()) for r in _rows(p)]
    n_dead = sum(r["dead"] for r in res.table())
    assert len(features) == D_SAE - n_dead
    assert json.loads((root / "skipped_features.json").read_text())["indices"] == \
        [r["index"] for r in res.table() if r["dead"]]
    for f in features:
        assert set(f) == FEATURE_FIELDS | set(SCORE_FIELDS)
        assert len(f["vector"]) == res.meta.get("d_in", len(f["vector"]))
    one = next(f for f in features if f["index"] == str(live))
    page = res.feature(live)
    assert one["pos_str"] == [t for t, _ in page["top_logits"]] and one["frac_nonzero"] == page["frequency"]
    acts = [r for p in sorted((root / "activations").iterdir()) for r in _rows(p)]
    assert all(set(a) == ACTIVATION_FIELDS for a in acts)
    mine = [a for a in acts if a["index"] == str(live) and a["binMin"] == -1]
    assert [a["tokens"] for a in mine] == [e["tokens"] for e in page["top_examples"]]
    assert all(a["values"][a["maxValueTokenIndex"]] == a["maxValue"] for a in acts)
    expl = [r for p in (root / "explanations").iterdir() for r in _rows(p)]
    assert len(expl) == 1 and set(expl[0]) == EXPLANATION_FIELDS
    assert expl[0]["description"].startswith("capital letters")


def test_bundle_needs_extraction_first(store, tmp_path):
    from mistudio_core.platform.errors import NotFoundError
    from mistudio_core.interop.export_neuronpedia import export_neuronpedia
    from mistudio_core.sae.library import register_sae

    loaded, sae, tokens = tiny_setup(tmp_path / "tok")
    m = register_sae(store, sae, "tiny", {"model_id": "tiny-llama", "hook_name": HOOK})
    with pytest.raises(NotFoundError, match="extraction"):
        export_neuronpedia(store, m["id"])
    assert store.list("exports") == []
