"""The pretrained SAE catalog: enough Gemma Scope entries, hub paths that match the published layout, lookups by
id / canonical alias / Neuronpedia source, near matches for typos, and imports from a local snapshot (offline)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from mistudio_core.platform.errors import NotFoundError, OfflineError, ValidationError
from mistudio_core.interop import catalog
from test_interop import make_gemma_scope

LAYOUT = Path(__file__).parent / "data" / "gemma_scope_2b_pt_res_layout.txt"
WORKSHOP = "gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71"


def test_catalog_covers_gemma_scope_2b_every_layer_and_width_plus_9b_and_gpt2():
    rows = catalog.list_entries()
    g2 = [r for r in rows if r["release"] == "gemma-scope-2b-pt-res"]
    assert len(g2) >= 300 and len([r for r in rows if r["repo_id"].startswith("google/gemma-scope")]) >= 100
    assert {r["layer"] for r in g2} == set(range(26))
    for layer in range(26):  # every layer has 16k and 65k SAEs at several L0s
        assert len([r for r in g2 if r["layer"] == layer and r["width"] == 16384]) >= 4
        assert len([r for r in g2 if r["layer"] == layer and r["width"] == 65536]) >= 4
    assert {r["width"] for r in g2 if r["layer"] == 12} >= {2**14, 2**15, 2**16, 2**17, 2**18, 2**19, 2**20}
    assert {r["layer"] for r in rows if r["release"] == "gemma-scope-9b-pt-res"} == {9, 20, 31}
    gpt2 = catalog.list_entries(model="gpt2-small")
    assert {r["hook_name"] for r in gpt2} >= {f"blocks.{i}.hook_resid_pre" for i in range(12)}
    assert catalog.load_catalog()["source"]["licence"].startswith("MIT License")


def test_hub_paths_match_the_published_folder_layout():
    published = [line.strip() for line in LAYOUT.read_text().splitlines() if line and not line.startswith("#")]
    by_path = {r["path"]: r for r in catalog.list_entries(model="gemma-2-2b")}
    for file in published:
        folder, name = file.rsplit("/", 1)
        entry = by_path[folder]
        assert entry["repo_id"] == "google/gemma-scope-2b-pt-res" and entry["files"] == [name]
        layer, width, l0 = re.fullmatch(r"layer_(\d+)/width_(\d+)k/average_l0_(\d+)", folder).groups()
        assert (entry["layer"], entry["width"], entry["l0"]) == (int(layer), {"16": 16384, "65": 65536}[width], int(l0))
        assert entry["hook_name"] == f"blocks.{layer}.hook_resid_post"
    for entry in by_path.values():  # no invented layouts
        assert re.fullmatch(r"layer_\d+/width_\d+[km]/average_l0_\d+", entry["path"]), entry["path"]


def test_lookup_by_id_alias_or_neuronpedia_and_what_the_model_needs():
    e = catalog.get_entry(WORKSHOP)
    assert e["canonical"] and e["neuronpedia"] == "gemma-2-2b/20-gemmascope-res-16k"
    assert catalog.get_entry("gemma-2-2b/20-gemmascope-res-16k")["id"] == WORKSHOP
    assert catalog.get_entry("gemma-scope-2b-pt-res-canonical/layer_20/width_16k/canonical")["id"] == WORKSHOP
    assert 290e6 < e["download_bytes"] < 310e6  # 2 x 2304 x 16384 float32 + vectors
    info = catalog.model_info(e)
    assert info["hf_repo"] == "google/gemma-2-2b" and info["gated"] and 5.0e9 < info["memory_bytes"]["bfloat16"] < 5.5e9
    assert [r["width"] for r in catalog.list_entries(model="gemma-2-2b", layer="20", width="16k")] == [16384] * 5


def test_unknown_id_lists_near_matches():
    with pytest.raises(NotFoundError, match="Did you mean: .*layer_20/width_16k/average_l0_71"):
        catalog.get_entry("gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_70")
    with pytest.raises(ValidationError, match="not a number"):
        catalog.list_entries(width="big")


def test_import_from_local_snapshot_and_offline_hub_points_there(store, tmp_path, monkeypatch):
    entry = "gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_20"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to find there
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE.*local snapshot"):
        catalog.import_entry(store, entry)
    snap = tmp_path / "snapshot"
    make_gemma_scope(snap / "layer_1/width_16k/average_l0_20")
    with pytest.raises(NotFoundError, match="layer_1/width_16k/average_l0_20/params.npz"):
        catalog.import_entry(store, entry, snapshot=tmp_path)
    m = catalog.import_entry(store, entry, snapshot=snap)
    assert (m["hook_name"], m["d_sae"], m["model_id"]) == ("blocks.1.hook_resid_post", 16384, "gemma-2-2b")
    assert m["catalog"]["id"] == entry and m["catalog"]["model"] == "gemma-2-2b"


def test_own_exports_are_listed_and_import_back(store, tmp_path):
    from mistudio_core.interop.export_saelens import export_saelens

    m = catalog.import_entry(store, "gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_20",
                             snapshot=make_gemma_scope(tmp_path / "gs"))
    out = export_saelens(store, m["id"])
    own = [r for r in catalog.list_entries(store) if r["id"].startswith("mistudio/")]
    assert [r["id"] for r in own] == [f"mistudio/{out['id']}"] and own[0]["width"] == 16384
    back = catalog.import_entry(store, own[0]["id"], name="round trip")
    assert back["hook_name"] == "blocks.1.hook_resid_post" and back["architecture"] == "jumprelu"


def test_register_model_asks_for_a_token_for_gated_models(store, monkeypatch):
    monkeypatch.setattr(catalog, "hub_offline_reason", lambda: None)
    with pytest.raises(ValidationError, match="gated.*never stored"):
        catalog.register_model(store, WORKSHOP)
