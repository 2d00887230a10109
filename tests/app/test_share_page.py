"""Share tab handlers: imports land in the library, paths outside the allowed roots are refused with nothing
written, exports produce a model card, compare reports matches."""
from __future__ import annotations

import zipfile

from pages import share
from pages.context import AppContext
from test_interop import make_gemma_scope


def _ctx(store, tmp_path):
    return AppContext(store=store, allowed_roots=[tmp_path / "allowed"])


def test_import_export_compare(store, tmp_path):
    ctx = _ctx(store, tmp_path)
    folder = make_gemma_scope(tmp_path / "allowed" / "gs", d_sae=64)
    status, _ = share.import_local(ctx, str(folder), None, "", "google/gemma-scope-2b-pt-res", "layer_3/width_64/x")
    assert status.startswith("✓") and "blocks.3.hook_resid_post" in status
    sae_id = store.list("saes")[0]["id"]
    status, _, card, zipped, job = share.export(ctx, sae_id, "saelens")
    assert status.startswith("✓") and open(card).read().startswith("---\nlibrary_name: saelens") and job == ""
    with zipfile.ZipFile(zipped) as zf:  # one zip holding the whole bundle: weights, config and card
        names = zf.namelist()
    assert any(n.endswith("/blocks.3.hook_resid_post/sae_weights.safetensors") for n in names)
    assert any(n.endswith("/README.md") for n in names) and len(store.list("exports")) == 1
    status, fig, table = share.compare(ctx, sae_id, sae_id)
    assert status.startswith("⚠") and "with itself" in status
    other = make_gemma_scope(tmp_path / "allowed" / "gs2", d_sae=64, seed=1)
    share.import_local(ctx, str(other), None, "", "google/gemma-scope-2b-pt-res", "layer_3/width_64/x")
    other_id = [m["id"] for m in store.list("saes") if m["id"] != sae_id][0]
    status, fig, table = share.compare(ctx, sae_id, other_id)
    assert status.startswith("✓") and len(table) == 64 and "with itself" not in status


def test_neuronpedia_export_is_refused_before_queueing_without_features_and_watched_to_the_end(store, tmp_path):
    from mistudio_core.jobs.registry import JobRegistry
    from mistudio_core.jobs.runner import Runner

    jobs = JobRegistry(store)
    ctx = AppContext(store=store, jobs=jobs, allowed_roots=[tmp_path / "allowed"])
    folder = make_gemma_scope(tmp_path / "allowed" / "gs", d_sae=64)
    share.import_local(ctx, str(folder), None, "", "google/gemma-scope-2b-pt-res", "layer_3/width_64/x")
    sae_id = store.list("saes")[0]["id"]
    status, *_ = share.export(ctx, sae_id, "neuronpedia")
    assert status.startswith("⚠") and "needs extracted features" in status and "Features tab" in status
    assert jobs.list() == []
    # A job that fails (its SAE vanished after queueing) is followed to its failure, not left at "queued".
    (store.path("saes", sae_id) / "features").mkdir()
    (store.path("saes", sae_id) / "features" / "meta.json").write_text("{}")
    status, _, _, _, job_id = share.export(ctx, sae_id, "neuronpedia")
    assert status.startswith("✓") and job_id
    runner = Runner(store, registry=jobs, poll_interval=0.1).start()
    try:
        lines = [out[0] for out in share.export_watch(ctx, job_id)]
    finally:
        runner.stop(10)
    assert lines[-1].startswith("⚠") and "failed" in lines[-1]


def test_bad_paths_and_offline_hub_are_clear_and_write_nothing(store, tmp_path, monkeypatch):
    ctx = _ctx(store, tmp_path)
    (tmp_path / "allowed").mkdir()
    outside = make_gemma_scope(tmp_path / "elsewhere", d_sae=64)
    status, _ = share.import_local(ctx, str(outside), None, "", "", "")
    assert status.startswith("⚠") and "outside the allowed folders" in status
    status, _ = share.import_local(ctx, str(tmp_path / "allowed" / "missing"), None, "", "", "")
    assert status.startswith("⚠") and "not found" in status
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status, _ = share.import_hub(ctx, "google/gemma-scope-2b-pt-res", "layer_20/width_16k/average_l0_71", "", None, "")
    assert status.startswith("⚠") and "HF_HUB_OFFLINE" in status
    status = share.upload(ctx, None, "me/x", "", False)
    assert status.startswith("⚠") and "Export the SAE first" in status
    assert store.list("saes") == [] and store.list("exports") == []


def test_read_only_refuses_imports(store, tmp_path):
    ctx = AppContext(store=store, allowed_roots=[tmp_path], read_only=True)
    folder = make_gemma_scope(tmp_path / "gs", d_sae=64)
    status, _ = share.import_local(ctx, str(folder), None, "", "", "")
    assert status.startswith("⚠") and "read-only" in status and store.list("saes") == []
