"""The workshop run-of-show in Chromium against `app.py` (tiny random Gemma-2, synthetic Gemma Scope snapshot and
Neuronpedia file): browse the catalog and click the entry → import from the local snapshot → import explanations →
find "yelling" → steer with it in the Steering tab (baseline vs steered) → export and get the zip. Screenshots of
each stage land in test-artifacts/."""
from __future__ import annotations

import json
import re
import urllib.request

import pytest

from browser import AppServer, Browser
from workshop_helpers import ENTRY, MODEL_ID, YELLING, make_workshop

pytestmark = pytest.mark.browser


def _pick(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option).click()


def _fn_index(url: str, api_name: str) -> int:
    deps = json.loads(urllib.request.urlopen(url + "config", timeout=60).read())["dependencies"]
    return next(d["id"] for d in deps if d.get("api_name") == api_name)


def test_run_of_show_in_the_browser(tmp_path, artifacts_dir):
    from playwright.sync_api import expect

    home, data = make_workshop(tmp_path)
    with AppServer(home, allowed_roots=[data]) as app, Browser(artifacts_dir, height=1800) as b:
        page = b.open(app.url)
        page.get_by_role("tab", name="Share").click()
        status = page.locator("#share-status")
        page.get_by_label("Layer (empty = all)").fill("1")
        page.get_by_role("button", name="Show", exact=True).click()
        expect(status).to_contain_text("SAEs in the catalog match", timeout=30_000)
        page.locator("#share-catalog-table").get_by_text(ENTRY, exact=True).click()
        expect(page.locator("#share-catalog-entry textarea")).to_have_value(ENTRY, timeout=15_000)
        expect(page.locator("#share-catalog-details")).to_contain_text("Gated", timeout=15_000)
        b.screenshot(page, "workshop_1_catalog")

        page.get_by_label("Local snapshot folder (offline; leave empty to download)").fill(
            str(data / "gemma-scope-2b-pt-res"))
        _pick(page, "Model the catalog SAE belongs to (empty: the matching registered model)", MODEL_ID)
        page.locator("#share-catalog-import").click()
        expect(status).to_contain_text("Imported gemma-scope-2b-pt-res/layer_1", timeout=60_000)

        page.get_by_role("tab", name="Server path").click()
        page.locator("#share-expl-path textarea").fill(str(data / "explanations.jsonl.gz"))
        page.locator("#share-expl-import").click()
        expect(status).to_contain_text("5 explanations imported", timeout=30_000)
        page.locator("#share-expl-query textarea").fill("yelling")
        page.locator("#share-expl-find").click()
        expect(status).to_contain_text(f"best: feature {YELLING}", timeout=30_000)
        b.screenshot(page, "workshop_2_explanations")

        page.get_by_role("tab", name="Steering").click()
        steer_status = page.locator("#steering-status")
        page.get_by_label("SAE", exact=True).locator("visible=true").click()
        page.get_by_role("option").filter(has_text="blocks.1.hook_resid_post").first.click()
        query = page.get_by_label("find feature (label words or index)")
        query.fill("yelling")
        query.press("Enter")
        expect(steer_status).to_contain_text("feature(s) found", timeout=60_000)
        # one click on the labelled row puts the feature into a slot
        # (Gradio's table keeps hidden copies of its cells: click the one on screen, not the first in the DOM)
        page.locator("#steering-find-results").get_by_text("label match").locator("visible=true").first.click()
        expect(page.get_by_label("feature 1", exact=True)).to_have_value(str(YELLING), timeout=15_000)
        expect(steer_status).to_contain_text("automatic sweep", timeout=180_000)      # then its strength
        strength = page.get_by_label("number input for strength (negative suppresses)").first
        strength.fill("40")
        strength.press("Enter")
        page.get_by_role("button", name="Generate baseline and steered").click()
        expect(steer_status).to_contain_text("done", timeout=120_000)
        base = page.get_by_label("baseline (unsteered)").input_value()
        steered = page.get_by_label("steered", exact=True).input_value()
        assert base and steered and base != steered
        b.screenshot(page, "workshop_3_steering")

        page.get_by_role("tab", name="Share").click()
        # the catalog import already selected the new SAE for export
        expect(page.get_by_label("SAE", exact=True).locator("visible=true")).to_have_value(re.compile("average_l0_20"))
        page.get_by_role("button", name="Export", exact=True).click()
        expect(status).to_contain_text("download it as one zip", timeout=60_000)
        expect(page.locator("#share-zip")).to_contain_text(".zip", timeout=15_000)
        # the export's watcher runs after it (a fixed pause missed it on a busy machine) ...
        b.answered(page, _fn_index(app.url, "share_export_watch"))
        expect(page.locator("#share-zip")).to_contain_text(".zip")  # ... and must leave the zip and status alone
        expect(status).to_contain_text("download it as one zip")
        b.screenshot(page, "workshop_4_export")
    assert b.console_errors == []
