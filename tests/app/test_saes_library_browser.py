"""The SAEs tab's library table in Chromium (the page alone, served in-process): with the widest column set the
app makes (headline metrics from two sources plus the train-batch EV) and long job-derived ids, every column fits
the page — no horizontal scrolling, no id cut off. Screenshot: test-artifacts/saes_library_fit.png."""
from __future__ import annotations

import json

import gradio as gr
import pytest

from browser import Browser, served
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.library import register_sae
from mistudio_core.sae.model import SAE
from pages import saes
from pages.context import AppContext

pytestmark = pytest.mark.browser
HOOK = "blocks.8.hook_resid_post"
LONG_IDS = ("train-sotu-l8-topk32-quality-4cc56d-blocks.8.hook_resid_post", "gemma-scope-2b-pt-res-layer_20-width_16k")


def add_sae(store, sae_id: str, held_out: bool) -> None:
    sae = SAE(SAEConfig("topk", 16, 64, k=4, metadata={"hook_name": HOOK}), seed=1)
    register_sae(store, sae, sae_id, {"model_id": "smollm2-135m-instruct", "hook_name": HOOK, "dataset_id": "sotu"},
                 metrics={"explained_variance": 0.8123, "l0": 32.0, "dead_fraction": 0.007},
                 train_batch_metrics={"explained_variance": 0.84} if held_out else None, sae_id=sae_id)
    if held_out:  # as a training's final evaluation leaves it: the headline says it is sotu's held-out slice
        path = store.path("saes", sae_id) / "manifest.json"
        m = json.loads(path.read_text())
        m["metrics"]["ce_loss_recovered"] = 0.919
        m["metrics_source"] = {"dataset_id": "sotu", "split": "heldout"}
        path.write_text(json.dumps(m))


def test_library_table_fits_the_page(store, artifacts_dir):
    add_sae(store, LONG_IDS[0], held_out=True)
    add_sae(store, LONG_IDS[1], held_out=False)
    ctx = AppContext(store=store, allowed_roots=[store.home])
    with gr.Blocks() as demo:
        ctx.shared["demo"] = demo  # the library loads with the page, as in the app
        saes.build(ctx)
    with served(demo) as url, Browser(artifacts_dir, width=1400, height=900) as b:
        page = b.open(url, wait_for=None)
        lib = page.locator("#saes-library")
        lib.get_by_text(LONG_IDS[0]).locator("visible=true").first.wait_for(timeout=180_000)  # a busy machine
        b.settle(page)  # the column widths arrive in a step after the rows: measure once it has landed
        headers = lib.locator("th").all_inner_texts()
        assert any("EV (sotu held-out)" in " ".join(h.split()) for h in headers), headers
        assert any("EV (source unknown)" in " ".join(h.split()) for h in headers), headers
        b.screenshot(page, "saes_library_fit")
        # Nothing scrolls sideways: the table is no wider than the box that holds it.
        overflow = page.evaluate("""() => [...document.querySelectorAll('#saes-library *')]
            .filter(e => e.checkVisibility({visibilityProperty: true}) && e.getBoundingClientRect().width > 0)
            .filter(e => e.scrollWidth > e.clientWidth + 2 && getComputedStyle(e).overflowX !== 'visible')
            .map(e => [e.tagName, e.className, e.scrollWidth, e.clientWidth])""")
        assert not overflow, f"the library table scrolls sideways: {overflow}"
        for sae_id in LONG_IDS:  # each id is shown whole, wrapped in its cell (the check above: nothing clipped)
            lib.get_by_text(sae_id, exact=True).locator("visible=true").first.wait_for(timeout=30_000)
    assert not b.console_errors, b.console_errors
