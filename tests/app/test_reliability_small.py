"""Round 3's smaller findings: long ids cut in messages, display names bounded and free of bidi controls, number
dropdowns typed as numbers in the API, the Labeling tab's blank scores explained and stale connection cleared,
and the fake OpenAI server usable as a script."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import gradio as gr
import pytest

import jobs_support  # noqa: F401 — registers the synthetic job kinds
from mistudio_core.platform.errors import MistudioError, ValidationError
from mistudio_core.jobs import JobRegistry
from mistudio_core.steering import sessions as ss
from mistudio_core.platform.store import MAX_NAME_CHARS, Store

LONG = "x" * 5000
TESTS = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("action", ["get", "delete", "resume", "cancel"])
def test_a_long_job_id_is_cut_in_the_message(tmp_path, action):
    reg = JobRegistry(Store(tmp_path))
    with pytest.raises(MistudioError) as e:
        getattr(reg, action)(LONG)
    assert len(str(e.value)) < 400 and "5000 characters" in str(e.value)


def test_a_long_session_id_is_cut_in_the_message(tmp_path):
    store = Store(tmp_path)
    for bad in (LONG, "sess-" + LONG):
        with pytest.raises(MistudioError) as e:
            ss.load_session(store, bad)
        assert len(str(e.value)) < 400


def test_steering_load_session_handler_cuts_a_long_id(tmp_path):
    from pages import steering
    from pages.context import AppContext

    ctx = AppContext(store=Store(tmp_path))
    try:
        out = steering.load_session(ctx, LONG)
        message = out[0] if isinstance(out, tuple) else out
    except (MistudioError, gr.Error) as e:
        message = str(e)
    assert LONG not in str(message) and len(str(message)) < 600


def test_display_names_lose_bidi_controls_and_are_bounded(tmp_path):
    store = Store(tmp_path)
    with store.create("datasets", "report\u202etxt.exe\u2066 \n", {}) as _:
        pass
    (m,) = store.list("datasets")
    assert m["name"] == "reporttxt.exe", "bidi controls and newlines are not stored"
    with store.create("saes", "n" * 5000, {}) as _:  # derived names (an SAE's `<job name>-<hook>`) are cut
        pass
    assert len(store.list("saes")[0]["name"]) == MAX_NAME_CHARS
    reg = JobRegistry(store)
    with pytest.raises(ValidationError, match="at most 200") as e:
        reg.submit("test-counter", {"steps": 1}, name=LONG)
    assert len(str(e.value)) < 400
    job = reg.submit("test-counter", {"steps": 1}, name="mine\u202e")
    assert reg.get(job)["name"] == "mine"
    session = ss.save_session(store, "demo\u202e", {"sae_id": "s", "prompt": "p", "steering": {"features": []}})
    assert session["name"] == "demo"
    with pytest.raises(ValidationError):
        ss.save_session(store, LONG, {"sae_id": "s", "prompt": "p", "steering": {"features": []}})


def test_a_number_dropdown_is_typed_in_the_schema_and_takes_its_string():
    from pages.hardening import harden

    with gr.Blocks() as demo:
        size = gr.Dropdown([25, 50, 100, 200], value=50, label="Rows per page")
        out = gr.Textbox()
        size.input(lambda n: f"{n!r}", [size], [out], api_name="rows")
    harden(demo)
    assert size.api_info() == {"type": "integer", "enum": [25, 50, 100, 200]}
    assert size.preprocess("50") == 50 and size.preprocess(100) == 100
    with pytest.raises(gr.Error):
        size.preprocess("7")


def test_labeling_explains_blank_scores_and_clears_a_stale_connection():
    from pages import labeling

    assert "manual" in labeling.blank_score_reason({"source": "manual", "score": None})
    assert "Neuronpedia" in labeling.blank_score_reason({"source": "neuronpedia"})
    assert "not scored" in labeling.blank_score_reason({"source": "auto", "score": None})
    assert "fuzzing" in labeling.blank_score_reason({"source": "auto", "score": {"accuracy": 0.9}})
    assert labeling.blank_score_reason({"source": "auto", "score": {"accuracy": 1}, "fuzzing": {"accuracy": 1}}) == ""
    message, models = labeling.preset_changed("Ollama")
    assert "Connected" not in message and "Ollama" in message and models == ""


def test_labels_table_says_why_scores_are_blank(tmp_path):
    from mistudio_core.labeling import LabelStore
    from pages import labeling
    from pages.context import AppContext

    store = Store(tmp_path)
    with store.create("saes", "sae", {}, artifact_id="sae-1"):
        pass
    labels = LabelStore(store, "sae-1")
    labels.set(3, "a manual label")  # a manual label
    labels.set_auto(5, "auto, unscored")
    status, frame = labeling.labels_table(AppContext(store=store), "sae-1")
    assert "2 without a score" in status
    notes = dict(zip(frame["feature"], frame["why no score"]))
    assert "manual" in notes[3] and "not scored" in notes[5]


def test_fake_openai_server_runs_as_a_script():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(TESTS / "fake_openai_server.py"), "--port", str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert f"127.0.0.1:{port}/v1" in proc.stdout.readline()
        deadline = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    assert json.load(r)["data"][0]["id"] == "fake-model"
                break
            except OSError:
                assert time.time() < deadline, "the script did not serve"
                time.sleep(0.1)
        time.sleep(0.5)
        assert proc.poll() is None, "the script exited instead of serving until killed"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.browser
def test_switching_preset_clears_the_connected_line_in_the_browser(store, artifacts_dir):
    from browser import Browser, served
    from fake_openai_server import FakeOpenAI
    from pages import labeling
    from pages.context import AppContext

    server = FakeOpenAI().start()
    with gr.Blocks() as demo:
        labeling.build(AppContext(store=store))
    try:
        with served(demo) as url, Browser(artifacts_dir) as b:
            page = b.open(url, wait_for=None)
            page.get_by_label("Base URL").fill(server.url)
            page.get_by_label("Model").fill("fake-model")
            page.get_by_role("button", name="Test connection").click()
            status = page.locator("#labeling-test-status")
            status.get_by_text("Connected to").wait_for(timeout=15_000)
            page.get_by_label("Preset").click()
            page.get_by_role("option", name="Ollama").click()
            status.get_by_text("press Test connection").wait_for(timeout=15_000)
            assert "Connected to" not in status.inner_text()
            assert page.locator("#labeling-models").inner_text().strip() == ""
    finally:
        server.stop()
    assert b.console_errors == []
