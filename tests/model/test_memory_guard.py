"""The resource guard: a model that does not fit in free memory is refused with the numbers and what to change;
one that fits loads and reports its plan; 4/8-bit on a CPU says why not."""
from __future__ import annotations

import pytest

from mistudio_core.model import models
from mistudio_core.platform.errors import UnsupportedError
from mistudio_core.platform.memory_guard import memory_plan
from tiny_models import save_tiny_model

GEMMA_9B = {"id": "gemma-2-9b", "n_params": 9_241_705_984}


def test_plan_compares_need_with_free_memory_and_suggests_smaller_dtypes():
    gb = 2**30
    plan = memory_plan(GEMMA_9B, "cpu", "float32", available=(30 * gb, "RAM"))
    assert not plan.fits and 39 * gb < plan.need_bytes < 41 * gb
    assert "only 30.0 GB of RAM is free" in plan.message and "bfloat16 (" in plan.message and "4bit" not in plan.message
    ok = memory_plan(GEMMA_9B, "cpu", "bfloat16", available=(30 * gb, "RAM"))
    assert ok.fits and "30.0 GB of RAM is free" in ok.message
    q = memory_plan(GEMMA_9B, "cuda", "bfloat16", "4bit", available=(8 * gb, "H100"))
    assert q.fits and q.need_bytes < 6 * gb


def test_load_is_refused_before_reading_weights_and_override_works(store, tmp_path, monkeypatch):
    save_tiny_model("gemma2", tmp_path / "tiny")
    m = models.add_local_model(store, tmp_path / "tiny", name="tiny")
    monkeypatch.setattr("mistudio_core.platform.memory_guard.available_bytes", lambda device: (1000, "RAM"))
    models.clear_cache()
    with pytest.raises(UnsupportedError, match="Not loading: tiny in float32 needs about 0.3 GB.*RAM is free"):
        models.load_model(store, m["id"])
    monkeypatch.setenv("MISTUDIO_MEMORY_CHECK", "0")
    loaded = models.load_model(store, m["id"])
    assert loaded.memory["need_bytes"] > loaded.memory["available_bytes"]
    assert models.model_summary(loaded)["memory_plan"]["where"] == "RAM"
    models.clear_cache()


def test_quantization_on_cpu_says_why_not():
    with pytest.raises(UnsupportedError, match="needs a CUDA GPU"):
        models.check_quantization("8bit", device="cpu")
    assert models.check_quantization("none", device="cpu") is None


def test_steering_and_extraction_pass_quantization_through(store, monkeypatch):
    from mistudio_core.features.extract import ExtractConfig
    from mistudio_core.features.job import run_extraction
    from mistudio_core.steering.loader import load_target

    with store.create("saes", "s", {"model_id": "m", "hook_name": "blocks.1.hook_resid_post", "d_sae": 8},
                      artifact_id="s"):
        pass
    with pytest.raises(UnsupportedError, match="4bit quantization needs a CUDA GPU"):
        load_target(store, "s", device="cpu", quantization="4bit")
    # the model load is what this checks; no dataset needed
    monkeypatch.setattr("mistudio_core.features.job.load_tokens_for", lambda *a: None)
    with pytest.raises(UnsupportedError, match="8bit quantization needs a CUDA GPU"):
        run_extraction(store, ExtractConfig(sae_id="s", dataset_id="d"), device="cpu", quantization="8bit")
