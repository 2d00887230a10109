"""The Features tab in Chromium (the page alone, served in-process, on a tiny extraction): the overview has one
page counter, real column headers and no empty download box; a feature page shows its decoder-cosine
neighbours, the logit-effect histogram and examples whose every token is coloured by its activation (value on
hover); hiding start-of-context examples; label search by words; an export shows the download box."""
from __future__ import annotations

import re

import gradio as gr
import pytest

from browser import Browser, served
from features_helpers import HOOK, saved_features
from mistudio_core.features.decoder import nearest_features
from mistudio_core.labeling.store import LabelStore
from pages import features, features_data
from pages.context import AppContext

pytestmark = pytest.mark.browser


@pytest.fixture
def page_ctx(store, tmp_path, monkeypatch):
    loaded, sae, _ = saved_features(store, tmp_path / "tok")
    monkeypatch.setattr(features_data, "model_and_sae", lambda c, s: (loaded, sae, HOOK))
    monkeypatch.setattr(features_data, "sae_only", lambda c, s: sae)
    LabelStore(store, "tiny-sae").set(5, "shouting", description="Text in capital letters, yelling.")
    return AppContext(store=store, allowed_roots=[store.home])


def test_feature_page_in_the_browser(page_ctx, artifacts_dir):
    from playwright.sync_api import expect

    ctx = page_ctx
    with gr.Blocks() as demo:
        ctx.shared["demo"] = demo  # the SAE list loads with the page, as in the app
        features.build(ctx)
    res, _ = features.results(ctx, "tiny-sae")
    at_start = (res.t["top_pos"] <= 1) & (res.t["top_ctx"] >= 0)
    f = int(at_start.sum(1).argmax())  # a feature with top examples right after BOS, to hide them
    with served(demo) as url, Browser(artifacts_dir, width=1400, height=1400) as b:
        page = b.open(url, wait_for=None)
        # The SAE list arrives with the page's load event (on a busy machine long after the page shows): wait for
        # the picked SAE rather than poll a while and click anyway.
        expect(page.get_by_label("SAE", exact=True)).to_have_value(re.compile(r"\S"), timeout=120_000)
        page.get_by_role("button", name="Load features").click()
        info = page.locator("#features-page-info")
        info.get_by_text("Page 1 of").wait_for(timeout=60_000)
        assert page.get_by_text("Page 1 of").count() == 1  # one page counter
        assert page.locator("#features-table th").filter(has_text="max_activation").count() >= 1
        assert page.get_by_text("Download", exact=True).count() == 0  # no empty download box
        page.locator("#features-density .js-plotly-plot").wait_for(timeout=60_000)
        b.screenshot(page, "features_overview")

        page.get_by_label("Search labels (words; Enter)").fill("capital letters")
        page.get_by_label("Search labels (words; Enter)").press("Enter")
        page.locator("#features-page-info").get_by_text("(1 features)").wait_for(timeout=60_000)
        assert "shouting" in page.locator("#features-table").inner_text()

        page.get_by_label("Feature", exact=True).fill(str(f))
        page.get_by_role("button", name="Open feature").click()
        try:
            page.locator("#features-summary").get_by_text(re.compile(rf"Feature {f}\b")).wait_for(timeout=60_000)
            near = nearest_features(features_data.sae_only(ctx, "tiny-sae").W_dec, f, 10)
            page.locator("#features-neighbours").get_by_text(str(round(near[-1]["cosine"], 4))).wait_for(timeout=60_000)
        except Exception:
            b.screenshot(page, "features_failed")  # what the page showed instead
            raise
        page.locator("#features-logit-hist .js-plotly-plot").wait_for(timeout=60_000)
        shown = page.locator("#features-neighbours").inner_text()
        assert all(str(round(n["cosine"], 4)) in shown for n in near)  # the 10 nearest, with their cosines
        tokens = page.locator("#features-examples span.tok")
        coloured = page.locator("#features-examples span.tok:not([style*='rgba(249,115,22,0.00)'])")
        n_examples = page.locator("#features-examples div").count()
        assert coloured.count() > n_examples  # more tokens shaded than one peak per example
        title = tokens.first.get_attribute("title")
        assert title and ":" in title and title.rsplit(":", 1)[1].strip().replace(".", "").isdigit()
        page.locator("#features-examples").scroll_into_view_if_needed()
        b.screenshot(page, "features_feature_page")

        freq = res.frequencies()
        g = int((freq - 0.35).abs().argmin())  # fires on about a third of tokens: shades vary along a context
        page.get_by_label("Feature", exact=True).fill(str(g))
        page.get_by_role("button", name="Open feature").click()
        page.locator("#features-summary").get_by_text(re.compile(rf"Feature {g}\b")).wait_for(timeout=60_000)
        page.locator("#features-examples").scroll_into_view_if_needed()
        b.screenshot(page, "features_sparse_feature")

        page.get_by_label("Feature", exact=True).fill(str(f))
        page.locator("#features-skip-start input").check()
        page.locator("#features-summary").filter(has_text=re.compile(rf"Feature {f}\b(.|\n)*hidden")).wait_for(
            timeout=60_000)  # feature f's page again, its start examples hidden (not feature g's, still shown)

        page.get_by_role("button", name="Export feature table").click()
        page.get_by_text("Download", exact=True).wait_for(timeout=60_000)
        b.screenshot(page, "features_export")
    assert b.console_errors == []
