"""Jobs executed in a child process (`Runner(isolate=True)`, what the app uses): a training runs outside the runner's
process and lands in the library, a child killed mid-run leaves the job failed-and-resumable saying why (and resume
finishes it), the runner's shutdown makes the child checkpoint and end `interrupted`, and light jobs stay in the
runner's own threads (a labeling job's API key lives only in that process's memory)."""
from __future__ import annotations

import os
import re
import signal

import pytest

from mistudio_core.jobs import Runner, register_job
from test_jobs_kill import wait_until
from test_jobs_train import make_train_home, spec

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def long_spec() -> dict:
    """A run long enough to be caught mid-way, streamed from the model (no activation cache to build first)."""
    return {**spec(steps=4000), "cache": {"mode": "off"}}


@pytest.fixture(autouse=True)
def child_env(monkeypatch):
    for key, value in ONE_THREAD.items():  # the children inherit it: one core each on a shared machine
        monkeypatch.setenv(key, value)


@pytest.fixture
def runner(tmp_path):
    r = Runner(make_train_home(tmp_path), poll_interval=0.05, lock_retry=0.1, isolate=True).start()
    yield r
    r.stop(timeout=60)


def job_pid(runner, job_id: str) -> int:
    """The pid the job's log says it started in (the runner logs `start: ... pid=N` from where it executes)."""
    log = wait_until(lambda: "pid=" in (t := runner.registry.log_text(job_id)) and t, timeout=120,
                     what="the job to start")
    return int(re.findall(r"pid=(\d+)", log)[-1])


def test_training_runs_in_a_child_process_and_lands_in_the_library(runner):
    reg = runner.registry
    job_id = reg.submit("train", spec(steps=6))
    rec = wait_until(lambda: (r := reg.get(job_id))["status"] not in ("queued", "running") and r, timeout=480,
                     what="the training to end")
    assert rec["status"] == "done", rec.get("traceback") or rec.get("error")
    assert job_pid(runner, job_id) != os.getpid(), "the job ran in this process, not in a child"
    assert rec["runner_pid"] == os.getpid(), "the runner (lock holder) still claims and owns the job"
    assert runner.store.exists("saes", rec["result"]["sae_ids"][0])
    assert [r["step"] for r in reg.metrics_history(job_id)][-1] == 6


@pytest.mark.slow  # two child starts (torch import, model load): ~30 s on a busy 2-core machine
def test_killed_child_leaves_the_job_failed_resumable_and_resume_finishes_it(runner):
    reg = runner.registry
    job_id = reg.submit("train", long_spec())
    wait_until(lambda: (reg.get(job_id)["checkpoint"] or {}).get("step", 0) >= 2, timeout=300,
               what="a first checkpoint")
    os.kill(job_pid(runner, job_id), signal.SIGKILL)
    rec = wait_until(lambda: (r := reg.get(job_id))["status"] != "running" and r, timeout=30,
                     what="the runner to notice the dead child")
    assert rec["status"] == "failed" and "killed by SIGKILL" in rec["error"] and "resume" in rec["error"]
    step = rec["checkpoint"]["step"]
    reg.resume(job_id)
    wait_until(lambda: reg.get(job_id)["status"] == "running" and reg.get(job_id)["attempts"] == 2, timeout=30,
               what="the resumed job to start")
    wait_until(lambda: (reg.get(job_id)["checkpoint"] or {}).get("step", 0) > step, timeout=300,
               what="the resumed job to continue past its checkpoint")
    reg.cancel(job_id)
    rec = wait_until(lambda: (r := reg.get(job_id))["status"] != "running" and r, timeout=60,
                     what="the cancel to land")
    assert rec["status"] == "cancelled", rec


def test_runner_shutdown_makes_the_child_checkpoint_and_end_interrupted(runner):
    reg = runner.registry
    job_id = reg.submit("train", long_spec())
    wait_until(lambda: (reg.get(job_id)["checkpoint"] or {}).get("step", 0) >= 2, timeout=300,
               what="a first checkpoint")
    runner.stop(timeout=60)
    rec = reg.get(job_id)
    assert rec["status"] == "interrupted", rec
    assert rec["checkpoint"]["step"] >= 2


@register_job("worker-test-light", accelerator=False)
def _light(spec, ctx):
    return {"pid": os.getpid()}  # a kind registered only in this process: a child would not know it


def test_light_jobs_stay_in_the_runners_threads(runner):
    reg = runner.registry
    job_id = reg.submit("worker-test-light", {})
    rec = wait_until(lambda: (r := reg.get(job_id))["status"] not in ("queued", "running") and r, timeout=30,
                     what="the light job to end")
    assert rec["status"] == "done" and rec["result"]["pid"] == os.getpid()
