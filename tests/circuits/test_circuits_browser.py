"""The Circuits tab in Chromium (the Features and Circuits tabs served in-process, a tiny Llama with two random
residual SAEs): a click on a plotted feature node puts its id in the node box and shows its feature card; "Open in
the Features tab" switches to that tab with the node's SAE and feature index set."""
from __future__ import annotations

import re

import gradio as gr
import pytest

from browser import Browser, served
from mistudio_core.circuits import service
from pages import circuits, features
from pages.common import choices
from pages.context import AppContext
from test_circuits_service import home  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser


def test_clicking_a_node_opens_its_card_and_then_the_features_tab(home, artifacts_dir):  # noqa: F811
    from playwright.sync_api import expect

    store, model, saes = home
    graph = service.build_graph(store, saes, "The state of the union", settings={"max_nodes": 25})
    ctx = AppContext(store=store)
    with gr.Blocks() as demo:
        ctx.shared["demo"] = demo
        with gr.Tabs() as tabs:
            ctx.shared["tabs"] = tabs
            with gr.Tab("Features", id="features"):
                features.build(ctx)
            with gr.Tab("Circuits", id="circuits") as tab:
                ctx.shared["tab"] = tab
                circuits.build(ctx)
    with served(demo) as url, Browser(artifacts_dir, width=1400, height=1600) as b:
        page = b.open(url, wait_for=None)
        page.get_by_role("tab", name="Circuits").click()
        expect(page.locator("#circuits-summary")).to_contain_text(graph["id"], timeout=120_000)
        # The first marker trace is the feature nodes (edges are line traces without points).
        point = page.locator("#circuits-plot .scatterlayer .trace").filter(
            has=page.locator(".point")).first.locator(".point").first
        point.wait_for(timeout=60_000)
        b.settle(page)
        point.click(force=True)
        box = page.locator("#circuits-node textarea, #circuits-node input").first
        expect(box).to_have_value(re.compile(r"^F\d+\.\d+@\d+$"), timeout=60_000)
        node = box.input_value()
        feature = int(node.split(".")[1].split("@")[0])
        site = int(node[1:].split(".")[0])
        try:
            expect(page.locator("#circuits-feature")).to_contain_text(f"Feature {feature} of", timeout=60_000)
        except Exception:
            b.screenshot(page, "circuits_click_failed")
            raise
        b.screenshot(page, "circuits_node_clicked")

        page.get_by_role("button", name="Open in the Features tab").click()
        expect(page.get_by_role("tab", name="Features")).to_have_attribute("aria-selected", "true", timeout=60_000)
        expect(page.get_by_label("Feature", exact=True)).to_have_value(str(feature), timeout=60_000)
        label = dict((v, k) for k, v in choices(store.list("saes")))[graph["sites"][site - 1]["sae_id"]]
        expect(page.get_by_label("SAE", exact=True)).to_have_value(label, timeout=60_000)
        b.settle(page)
        b.screenshot(page, "circuits_opened_in_features")
    assert b.console_errors == []
