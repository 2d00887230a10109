"""Start-up flags and the handler wrapper, without a server: Gradio's `GRADIO_SERVER_*` variables are honoured when
no flag or `MISTUDIO_*` variable is given; a bug in any handler becomes a short message (traceback in the log)."""
from __future__ import annotations

import logging

import gradio as gr
import pytest

import app
from pages.common import guarded
from pages.hardening import harden


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("MISTUDIO_HOST", "MISTUDIO_PORT", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_gradio_server_variables_are_the_fallback(clean_env):
    args = app.parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 7860)
    clean_env.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    clean_env.setenv("GRADIO_SERVER_PORT", "7861")
    args = app.parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 7861)
    clean_env.setenv("MISTUDIO_PORT", "9000")
    assert app.parse_args([]).port == 9000  # ours win over Gradio's
    assert app.parse_args(["--port", "9001", "--host", "::1"]).port == 9001  # the flag wins over both
    clean_env.setenv("MISTUDIO_PORT", "70000")
    with pytest.raises(SystemExit):
        app.parse_args([])


def test_guarded_turns_bugs_into_a_message(caplog):
    @guarded(2)
    def broken(x):
        return {}[x]

    with caplog.at_level(logging.ERROR, logger="mistudio.app"):
        status, rest = broken("missing")
    assert status.startswith("⚠ Unexpected error in broken (KeyError") and "Traceback" not in status
    assert rest == {"__type__": "update"}
    assert "Traceback" in caplog.text  # the server log has it


def test_hardening_wraps_every_event_and_opens_refilled_dropdowns():
    with gr.Blocks() as demo:
        status = gr.Markdown()
        picked = gr.Dropdown(choices=[], label="SAE")
        fixed = gr.Dropdown(choices=["a", "b"], value="a", label="method")
        btn = gr.Button()
        btn.click(lambda s: 1 / 0, [picked], [status], api_name="demo_divide")
        btn.click(lambda: gr.update(choices=[("x", "x")]), None, [picked], api_name="demo_list")

        def gen(s):
            yield "working"
            raise RuntimeError("/srv/secret/path went away")
        btn.click(gen, [fixed], [status], api_name="demo_watch")
    harden(demo)
    assert picked.allow_custom_value and picked.constructor_args["allow_custom_value"]
    assert not fixed.allow_custom_value  # no event refills it: Gradio's own check stays
    fns = {f.api_name: f for f in demo.fns.values()}
    out = fns["demo_divide"].fn("anything")
    assert out.startswith("⚠ Unexpected error in demo_divide (ZeroDivisionError")
    outs = list(fns["demo_watch"].fn("a"))
    assert outs[0] == "working" and outs[-1].startswith("⚠ Unexpected error in demo_watch (RuntimeError")
    assert fns["demo_list"].concurrency_limit is None and fns["demo_watch"].concurrency_limit is None
    assert fns["demo_divide"].concurrency_limit != None  # noqa: E711 — only cheap reads skip the queue limit
