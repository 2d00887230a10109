"""What keeps cheap reads fast while a training runs (issue #18 item 8; measured by bench/bench_load.py): the app's
job runner executes accelerator jobs in a child process (unless `--jobs-in-process`), and Gradio's queue does not
redo its statistics over every recorded event after each request."""
from __future__ import annotations

import gradio as gr
import pytest

import app
from pages.hardening import ANALYTICS_EVERY, tune_queue


def test_queue_recomputes_its_statistics_rarely_unless_the_operator_chose(monkeypatch):
    monkeypatch.delenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", raising=False)
    tune_queue()
    with gr.Blocks() as demo:
        gr.Markdown("x")
    demo.queue()
    assert demo._queue.ANAYLTICS_CACHE_FREQUENCY == int(ANALYTICS_EVERY) > 1  # gradio's default is 1: every event
    monkeypatch.setenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", "7")
    tune_queue()
    demo.queue()
    assert demo._queue.ANAYLTICS_CACHE_FREQUENCY == 7


def test_queue_statistics_are_not_recomputed_per_event(monkeypatch):
    """The summary Gradio computes after each event stays the cached one until ANALYTICS_EVERY events passed."""
    monkeypatch.delenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", raising=False)
    tune_queue()
    with gr.Blocks() as demo:
        gr.Markdown("x")
    queue = demo.queue()._queue
    records = [{"function": "f", "status": "success", "process_time": 0.01, "time": 0.0}]
    queue.events_recorded = 1
    first = queue.compute_analytics_summary(records)
    queue.events_recorded = 2
    assert queue.compute_analytics_summary(records * 2) is first, "recomputed after a single event"


@pytest.mark.parametrize("flags, isolated", [([], True), (["--jobs-in-process"], False)])
def test_app_runner_runs_accelerator_jobs_in_a_child_process(tmp_path, flags, isolated):
    ctx = app.build_context(app.parse_args(["--home", str(tmp_path / "h"), *flags]))
    runner = ctx.shared["runner"]
    try:
        assert runner.isolate is isolated
    finally:
        runner.stop(timeout=10)
