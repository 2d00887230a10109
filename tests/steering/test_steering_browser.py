"""The Steering tab in Chromium (the page alone, served in-process, a tiny Llama and SAE behind it): pick the SAE,
find a feature by label words and pick it (the pick fills a slot), generate baseline and steered side by side (both
activations named), run a strength sweep (table, chart, suggested strength), save the session and load it back.
No console errors."""
from __future__ import annotations

import gradio as gr
import pytest

from browser import Browser, served
from pages import steering
from pages.context import AppContext
from steering_helpers import HOOK, tiny_target

pytestmark = pytest.mark.browser


def _pick(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option).click()


def test_steering_tab_generate_sweep_and_session(store, tmp_path, monkeypatch, artifacts_dir):
    from playwright.sync_api import expect

    with store.create("saes", "tiny sae", {"model_id": "tiny", "hook_name": HOOK, "d_sae": 64},
                      artifact_id="tiny-sae"):
        pass
    from mistudio_core.labeling.store import LabelStore

    LabelStore(store, "tiny-sae").set(5, "shouting in capital letters", description="yelling, ALL CAPS text")
    target = tiny_target(tmp_path / "tok")
    monkeypatch.setattr(steering, "load_target", lambda s, sae_id: target)
    with gr.Blocks() as demo:
        steering.build(AppContext(store=store, shared={"demo": demo}))  # the page lists SAEs on load
    with served(demo) as url, Browser(artifacts_dir, height=1600) as b:
        page = b.open(url, wait_for=None)  # the empty status is hidden; clicks wait for the page
        status = page.locator("#steering-status")

        page.get_by_role("button", name="Generate baseline and steered").click()
        expect(status).to_contain_text("No feature selected", timeout=15_000)

        _pick(page, "SAE", "tiny sae")
        query = page.get_by_label("find feature (label words or index)")
        query.fill("yelling")                               # label words, not an index
        query.press("Enter")
        status.get_by_text("feature(s) found").wait_for(timeout=30_000)
        results = page.locator("#steering-find-results")
        label = results.get_by_role("gridcell").filter(has_text="shouting in capital letters").first
        label.click()                                                      # one click on the row fills a slot
        expect(page.get_by_label("feature 1", exact=True)).to_have_value("5", timeout=15_000)
        expect(status).to_contain_text("automatic sweep", timeout=120_000)   # and sets its strength
        expect(page.locator("#steering-units")).to_contain_text("slot 1: feature 5 at")
        assert page.get_by_role("button", name="Add", exact=True).count() == 0   # no second step
        label.click()                                                      # a second click takes no other slot
        status.get_by_text("already in slot 1").wait_for(timeout=15_000)
        expect(page.get_by_label("feature 2", exact=True)).to_have_value("")

        strength = page.get_by_label("number input for strength (negative suppresses)").first
        strength.fill("80")
        strength.press("Enter")
        page.get_by_role("button", name="Generate baseline and steered").click()
        status.get_by_text("done").wait_for(timeout=60_000)
        base = page.get_by_label("baseline (unsteered)").input_value()
        steered_text = page.get_by_label("steered", exact=True).input_value()
        assert base and steered_text and base != steered_text

        page.get_by_text("strength sweep").click()
        page.get_by_role("button", name="Run sweep").click()
        status.get_by_text("Swept").wait_for(timeout=90_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        expect(page.locator("#steering-suggestion")).to_contain_text("uggested strength")
        rows = page.locator("#steering-sweep-rows")
        expect(rows).to_contain_text("capability ppl (× base)")
        header = rows.get_by_text("capability ppl (× base)").bounding_box()
        assert header["width"] > 60                       # a header, not a letter-by-letter column
        rows.locator("summary").nth(1).click()            # a strength row expands to its full output
        expect(rows.locator("details[open] p").first).to_be_visible()
        expect(page.locator("#steering-readings")).to_contain_text("activation in the steered model (at the hook)")
        b.screenshot(page, "steering_sweep")

        page.get_by_text("sessions and prompt sets").click()
        page.get_by_label("session name").fill("feature five")
        page.get_by_role("button", name="Save session").click()
        status.get_by_text("Saved session").wait_for(timeout=15_000)
        page.get_by_label("prompt", exact=True).fill("something else")
        _pick(page, "saved sessions", "feature five")
        page.keyboard.press("Escape")
        page.locator("#steering-load-session").click()
        expect(status).to_contain_text("Loaded session", timeout=15_000)
        expect(page.get_by_label("prompt", exact=True)).to_have_value("The weather today is")
        expect(page.get_by_label("steered", exact=True)).to_have_value(steered_text)
        b.screenshot(page, "steering_tab")
    assert b.console_errors == []
