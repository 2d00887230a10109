"""The Steering tab in Chromium (the page alone, served in-process, a tiny Llama and SAE behind it): pick the SAE,
find a feature by index, add it, generate baseline and steered side by side, run a strength sweep (table + chart),
save the session and load it back. No console errors."""
from __future__ import annotations

import gradio as gr
import pytest
import torch
import transformers as tf

from browser import CHROMIUM, CHROMIUM_ARGS, IGNORED_CONSOLE, free_port
from mistudio_core.steering.loader import SteeringTarget
from pages import steering
from pages.context import AppContext
from steering_helpers import HOOK, TinySAE
from tiny_models import tiny_config
from tiny_tokenizer import make_tiny_tokenizer

pytestmark = pytest.mark.browser


@pytest.fixture
def target(tmp_path):
    tok = make_tiny_tokenizer(tmp_path / "tok")
    cfg = tiny_config("llama")
    cfg.vocab_size, cfg.eos_token_id = len(tok), tok.eos_token_id
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    return SteeringTarget(sae=TinySAE(), hook_name=HOOK, model=model, tokenizer=tok,
                          manifest={"id": "tiny-sae", "d_sae": 64})


def _pick(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option).click()


def test_steering_tab_generate_sweep_and_session(store, target, monkeypatch, artifacts_dir):
    from playwright.sync_api import expect, sync_playwright

    with store.create("saes", "tiny sae", {"model_id": "tiny", "hook_name": HOOK, "d_sae": 64},
                      artifact_id="tiny-sae"):
        pass
    monkeypatch.setattr(steering, "load_target", lambda s, sae_id: target)
    with gr.Blocks() as demo:
        steering.build(AppContext(store=store, shared={"demo": demo}))  # the page lists SAEs on load
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1600})
            page.on("console", lambda m: m.type == "error" and not any(s in m.text for s in IGNORED_CONSOLE)
                    and errors.append(m.text))
            page.goto(f"http://127.0.0.1:{port}/")
            status = page.locator("#steering-status")

            page.get_by_role("button", name="Generate baseline and steered").click()
            expect(status).to_contain_text("No feature selected", timeout=15_000)

            _pick(page, "SAE", "tiny sae")
            query = page.get_by_label("find feature (label words or index)")
            query.fill("5")
            query.press("Enter")
            status.get_by_text("1 feature(s) found").wait_for(timeout=15_000)
            page.get_by_role("button", name="Add", exact=True).click()
            status.get_by_text("Added feature 5 to slot 1").wait_for(timeout=15_000)
            expect(page.get_by_label("feature 1", exact=True)).to_have_value("5")

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
            status.get_by_text("Swept").wait_for(timeout=60_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=15_000)

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
            page.screenshot(path=str(artifacts_dir / "steering_tab.png"), full_page=True)
            browser.close()
    finally:
        demo.close()
    assert errors == []
