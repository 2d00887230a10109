"""Benchmark results: stored per (SAE, suite version, dataset), reloaded with their provenance; bad specs refused."""
from __future__ import annotations

import pytest

from mistudio_core.benchsuite import results
from mistudio_core.benchsuite.cli import human
from mistudio_core.benchsuite.spec import BenchSpec, check_tasks
from mistudio_core.platform.errors import NotFoundError, ValidationError
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.library import register_sae
from mistudio_core.sae.model import SAE


def _sae(store, name: str) -> str:
    sae = SAE(SAEConfig(architecture="topk", d_in=8, d_sae=32, k=4))
    m = register_sae(store, sae, name, provenance={"model_id": "tiny", "hook_name": "blocks.0.hook_resid_post",
                                                   "dataset_id": "sotu"})
    return m["id"]


def _record(split: str, ev: float, absorption: float) -> dict:
    """What `run_suite` returns (trimmed to the fields the storage reads)."""
    return {"suite_version": results.SUITE_VERSION, "dataset_id": "sotu", "split": split, "model_id": "tiny",
            "hook_name": "blocks.0.hook_resid_post", "parts": ["core", "absorption", "probing"], "created": 1.0,
            "seconds": {"core": 1.0, "absorption": 2.0, "probing": 3.0},
            "provenance": {"core": f"sotu {split} contexts (64, 8128 tokens)", "absorption": "vocabulary words",
                           "probing": "sotu package (texts the SAE may have trained on)"},
            "core": {"n_contexts": 64, "l2_ratio": 0.93, "metrics": {
                "explained_variance": {"value": ev, "formula": "1 − Σ‖x−x̂‖² / Σ‖x−x̄‖²"},
                "l0": {"value": 32.0, "formula": "mean #active"}}},
            "absorption": {"absorption_rate": absorption, "absorption_fraction": absorption / 2, "letters": {}},
            "probing": {"summary": {"raw": 0.95, "sae_full": 0.9, "k1": 0.7, "k2": 0.75, "k5": 0.8}, "tasks": {}}}


def test_result_is_stored_and_reloaded_with_provenance(store):
    a, b = _sae(store, "a"), _sae(store, "b")
    path = results.store_result(store, a, _record("heldout", 0.81, 0.2))
    assert path.parent.name == "bench" and path.name == f"v{results.SUITE_VERSION}__sotu__heldout.json"
    loaded = results.load_result(store, a, "sotu")
    assert loaded["sae_id"] == a and loaded["provenance"]["probing"].endswith("(texts the SAE may have trained on)")
    assert loaded["headline"] == {"l0": 32.0, "explained_variance": 0.81, "l2_ratio": 0.93, "absorption_rate": 0.2,
                                  "absorption_fraction": 0.1, "probe_raw": 0.95, "probe_sae_full": 0.9,
                                  "probe_k1": 0.7, "probe_k2": 0.75, "probe_k5": 0.8}
    results.store_result(store, b, _record("train", 0.9, 0.0))
    results.store_result(store, a, _record("train", 0.95, 0.0))  # a second split: a second record, not a swap
    assert results.load_result(store, a, "sotu")["headline"]["explained_variance"] == 0.81
    held = results.comparison(store, "sotu")
    assert [(r["sae_id"], r["source"]) for r in held] == [(a, "sotu held-out, 64 contexts")]
    train = {r["sae_id"]: r for r in results.comparison(store, "sotu", split="train")}
    assert train[b]["source"] == "sotu train split, 64 contexts"  # never shown under a held-out name
    assert train[b]["explained_variance"] == 0.9 and train[a]["architecture"] == "topk"
    v = results.SUITE_VERSION
    assert results.suites(store) == [(v, "sotu", "heldout"), (v, "sotu", "train")]
    assert results.parse_key(results.result_key(v, "my__data", "train")) == (v, "my__data", "train")
    text = human(loaded)
    assert "sotu held-out, 64 contexts" in text and "absorption_rate" in text and "vocabulary words" in text


def test_missing_result_says_how_to_run_it(store):
    a = _sae(store, "a")
    with pytest.raises(NotFoundError, match="eval --suite --sae"):
        results.load_result(store, a, "sotu")


def test_bad_specs_are_refused():
    with pytest.raises(ValidationError, match="parts among"):
        BenchSpec(sae_id="x", parts=["core", "vibes"])
    with pytest.raises(ValidationError, match="Unknown benchmark spec fields"):
        BenchSpec.from_dict({"sae_id": "x", "colour": "red"})
    with pytest.raises(ValidationError, match="Unknown probing tasks"):
        BenchSpec(sae_id="x", probing_tasks=["sotu-mood"])
    with pytest.raises(ValidationError, match="Base URL"):
        BenchSpec(sae_id="x", labeler={"base_url": "ftp://x", "model": "m"})


def test_too_few_snippets_per_class_refused_before_any_work():
    """One snippet per speech leaves most of the 10 presidents with fewer than 20 examples."""
    with pytest.raises(ValidationError, match="sotu-president.*fewer than 20 examples"):
        check_tasks(BenchSpec(sae_id="x", probing_tasks=["sotu-president"], probing_per_doc=1))
    check_tasks(BenchSpec(sae_id="x", probing_tasks=["sotu-president"], probing_per_doc=1, parts=["core"]))
