"""The whole app killed mid-training: `app.py` runs a train job on the tiny home, the app's process group gets
SIGKILL (no chance to checkpoint or clean up), a fresh `app.py` on the same home shows the job `interrupted`, the
Resume endpoint continues it from its last checkpoint, and the SAE it ends with is bit-equal to an uninterrupted
run of the same spec (one thread everywhere, so reductions happen in the same order)."""
from __future__ import annotations

import os
import signal

import pytest
import torch

from browser import AppServer
from mistudio_core.model import models as md
from mistudio_core.jobs import JobRegistry, Runner
from test_jobs_kill import wait_until
from test_jobs_train import assert_same_weights, make_train_home, run_to_end, spec, weights

pytestmark = pytest.mark.slow
STEPS = 60
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same spec trained without interruption, in this process on one thread: the SAE's weights."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    md.clear_cache()
    home = make_train_home(tmp_path_factory.mktemp("reference"))
    runner = Runner(home, poll_interval=0.05, lock_retry=0.1).start()
    try:
        rec = run_to_end(runner.registry, runner.registry.submit("train", spec(steps=STEPS)), timeout=300)
        return weights(home, rec["result"]["sae_ids"][0])
    finally:
        runner.stop(timeout=30)
        md.clear_cache()
        torch.set_num_threads(before)


def card_text(client, job_id: str) -> str:
    """The job's card as the Training tab shows it (the watch endpoint ends at once when nothing is active)."""
    _table, md_text, _fig, _job = client.predict(job_id, api_name="/training_watch")
    return md_text


def test_sigkilled_app_restarts_with_job_interrupted_and_resume_matches_uninterrupted(tmp_path, reference):
    home = make_train_home(tmp_path)
    reg = JobRegistry(home)
    job_id = reg.submit("train", spec(steps=STEPS), name="kill-me")
    app = AppServer(home.home, env=ONE_THREAD).__enter__()
    try:
        wait_until(lambda: (reg.get(job_id)["checkpoint"] or {}).get("step", 0) >= 6, timeout=240,
                   what="the app's runner to write a few checkpoints")
    finally:
        os.killpg(app.proc.pid, signal.SIGKILL)  # the whole app, mid-training, no clean-up
        app.proc.wait(10)
    assert reg.get(job_id)["status"] == "running", "nobody has noticed the death yet"
    killed_at = reg.get(job_id)["checkpoint"]["step"]
    assert 6 <= killed_at < STEPS, "killed mid-training"

    with AppServer(home.home, env=ONE_THREAD) as app:
        client = app.client()
        card = wait_until(lambda: "`interrupted`" in (t := card_text(client, job_id)) and t, timeout=60,
                          what="the restarted app to mark the job interrupted")
        assert f"checkpoint (step {killed_at})" in card, card
        client.predict(job_id, api_name="/training_resume")
        resumed = run_to_end(reg, job_id, timeout=300)
        assert "`done`" in card_text(client, job_id)
    assert resumed["attempts"] == 2
    assert [h["step"] for h in reg.metrics_history(job_id)] == list(range(1, STEPS + 1)), "each step once"
    assert_same_weights(reference, weights(home, resumed["result"]["sae_ids"][0]))
