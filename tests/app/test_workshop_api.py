"""The workshop run-of-show through the API (`gradio_client` against `app.py`), on a tiny random Gemma-2 model:
catalog entry → import (local snapshot, offline) → Neuronpedia explanations → search "yelling" → steer with it
(baseline vs steered) → export as one zip."""
from __future__ import annotations

import zipfile

import pytest

from browser import AppServer
from workshop_helpers import ENTRY, MODEL_ID, YELLING, make_workshop


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    home, data = make_workshop(tmp_path_factory.mktemp("workshop"))
    with AppServer(home, allowed_roots=[data]) as server:
        server.data = data
        yield server


def test_run_of_show_through_the_api(app):
    client = app.client()
    status, grid = client.predict("gemma-2-2b", 1, "16k", api_name="/share_catalog_list")
    assert status.startswith("✓") and ENTRY in [row[0] for row in grid["data"]]
    details = client.predict(ENTRY, api_name="/share_catalog_details")
    assert "google/gemma-2-2b" in details and "Gated" in details and "local snapshot" in details

    status, *_ = client.predict(ENTRY, "", "", MODEL_ID, api_name="/share_catalog_import")
    assert status.startswith("⚠") and "HF_HUB_OFFLINE" in status and "local snapshot" in status
    status, imported, expl_sae, _ = client.predict(ENTRY, str(app.data / "gemma-scope-2b-pt-res"), "", MODEL_ID,
                                                api_name="/share_catalog_import")
    assert status.startswith("✓"), status
    sae_id = imported["value"]
    assert expl_sae["value"] == sae_id

    status = client.predict(sae_id, str(app.data / "explanations.jsonl.gz"), None, "", "", "",
                            api_name="/share_explanations_import")
    assert status.startswith("✓") and "5 explanations" in status and "1 malformed" in status
    status, hits = client.predict(sae_id, "yelling", api_name="/share_explanations_search")
    assert hits["data"][0][0] == YELLING

    status, matches = client.predict(sae_id, "yelling", api_name="/steering_find")  # the Steering tab's search
    rows = {row[0]: row for row in matches["data"]}                       # feature → its row (writes, label, ...)
    assert YELLING in rows and "label match" in rows[YELLING][-1], status
    slots = [str(YELLING), 40.0, "", 0.0, "", 0.0, "", 0.0]
    status, baseline, steered, _ = client.predict(sae_id, "the cat sat on the mat", "additive", "all", False, 16,
                                                  1.0, 1.0, 3, False, *slots, api_name="/steering_generate")
    assert status.startswith("✓") and baseline and steered and baseline != steered

    status, _, card, zipped, job = client.predict(sae_id, "saelens", api_name="/share_export")
    assert status.startswith("✓") and job == ""
    with zipfile.ZipFile(zipped) as zf:
        names = zf.namelist()
    assert any(n.endswith("blocks.1.hook_resid_post/sae_weights.safetensors") for n in names)
    assert (app.home / "exports").is_dir() and list((app.home / "exports").glob("*.zip"))
