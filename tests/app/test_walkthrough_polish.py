"""The walkthrough's polish (issue 17, items 8 and 9): job ids without a repeated prefix, SAE dropdowns that show
name, hook and a short id (the value stays the id), the built-in corpus no longer offered once added; and in
Chromium: the SAE dropdown's labels, the disabled built-in button, the Labeling tab's distinct names."""
from __future__ import annotations

import gradio as gr
import pytest

from browser import Browser, served
from mistudio_core.jobs import JobRegistry
from mistudio_core.jobs.kinds import register_job
from pages import datasets, labeling
from pages.common import choices
from pages.context import AppContext

LONG_NAME = "topk-k32-x8-smollm2-135m-instruct-blocks.8.hook_resid_post-sotu-quality"
LONG_ID = LONG_NAME + "-3f9a1c"


@register_job("polish-kind", accelerator=False)
def _noop(spec, ctx):
    return {}


def test_job_ids_do_not_repeat_their_kind(store):
    reg = JobRegistry(store)
    named = reg.submit("polish-kind", {}, name="polish-kind tiny-sae")
    plain = reg.submit("polish-kind", {}, name="tiny-sae")
    bare = reg.submit("polish-kind", {})
    assert named.startswith("polish-kind-tiny-sae-") and "polish-kind-polish-kind" not in named
    assert plain.startswith("polish-kind-tiny-sae-") and bare.startswith("polish-kind-")


def test_sae_dropdown_labels_show_name_hook_and_short_id():
    saes = [{"id": LONG_ID, "name": LONG_NAME, "hook_name": "blocks.8.hook_resid_post"},
            {"id": "tiny-sae", "name": "tiny-sae", "hook_name": "blocks.1.hook_resid_post"}]
    (label, value), (label2, value2) = choices(saes)
    assert value == LONG_ID and value2 == "tiny-sae"  # what the handlers get is still the id
    assert len(label) <= 75 and "blocks.8.hook_resid_post" in label and label.endswith("#3f9a1c")
    assert label2 == "tiny-sae · blocks.1.hook_resid_post"
    assert choices([{"id": "sotu", "name": "State of the Union"}]) == [("State of the Union (sotu)", "sotu")]


def _fake_sotu(store):
    with store.create("datasets", "State of the Union", {"n_docs": 1, "n_chars": 5}, artifact_id="sotu"):
        pass


def test_builtin_corpus_button_once_added(store):
    ctx = AppContext(store=store)
    assert datasets.builtin_button(ctx)["interactive"] is True
    _fake_sotu(store)
    update = datasets.builtin_button(ctx)
    assert update["interactive"] is False and "added" in update["value"]


@pytest.mark.browser
def test_polish_in_the_browser(store, artifacts_dir):
    _fake_sotu(store)
    with store.create("saes", LONG_NAME, {"model_id": "m", "hook_name": "blocks.8.hook_resid_post"},
                      artifact_id=LONG_ID):
        pass
    ctx = AppContext(store=store)
    with gr.Blocks() as demo:
        ctx.shared["demo"] = demo
        with gr.Tab("Datasets"):
            datasets.build(ctx)
        with gr.Tab("Labeling"):
            labeling.build(ctx)
    with served(demo) as url, Browser(artifacts_dir, width=1300, height=1000) as b:
        page = b.open(url, wait_for=None)
        button = page.locator("#datasets-add-builtin")
        page.get_by_text("The State of the Union corpus is added").wait_for(timeout=30_000)
        assert button.is_disabled()
        b.screenshot(page, "polish_datasets_builtin_added")
        page.get_by_role("tab", name="Labeling").click()
        page.get_by_label("SAE (with extracted features)").click()
        page.get_by_role("option", name="#3f9a1c").wait_for(timeout=15_000)
        assert page.get_by_text("Feature indices").count() == 0
        b.screenshot(page, "polish_labeling_sae_dropdown")
    assert b.console_errors == []
