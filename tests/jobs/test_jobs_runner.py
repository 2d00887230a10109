"""The runner in one process: order, one accelerator job at a time, failures, cancel/resume, shutdown."""
from __future__ import annotations

import time

import pytest

import jobs_support  # noqa: F401  (registers the synthetic kinds)
from mistudio_core.platform.errors import ValidationError
from mistudio_core.jobs import JobRegistry, Runner


@pytest.fixture
def runner(store):
    r = Runner(store, poll_interval=0.05, lock_retry=0.1, heartbeat_interval=0.2).start()
    yield r
    r.stop(timeout=10)


def wait_for(reg, job_id, statuses, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        rec = reg.get(job_id)
        if rec["status"] in statuses:
            return rec
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} stayed {reg.get(job_id)['status']}, wanted {statuses}")


def test_job_runs_to_done_with_history_and_progress(runner):
    reg = runner.registry
    job_id = reg.submit("test-counter", {"steps": 12, "ckpt_every": 4}, owner="alice", name="count")
    rec = wait_for(reg, job_id, {"done"})
    assert rec["result"] == {"final": 12.0, "resumed_from": 0}
    assert rec["owner"] == "alice" and rec["progress"]["step"] == 12 and rec["progress"]["fraction"] == 1.0
    assert rec["metrics"]["loss"] == pytest.approx(1 / 12)
    assert rec["checkpoint"]["step"] == 12 and rec["started"] <= rec["ended"]
    assert [row["step"] for row in reg.metrics_history(job_id)] == list(range(1, 13))
    assert "start: kind=test-counter" in reg.log_text(job_id)


def test_failed_job_keeps_error_and_traceback(runner):
    reg = runner.registry
    job_id = reg.submit("test-fail", {"message": "disk on fire"})
    rec = wait_for(reg, job_id, {"failed"})
    assert rec["error"] == "ValueError: disk on fire"
    assert "Traceback" in rec["traceback"] and "disk on fire" in rec["traceback"]
    assert "disk on fire" in reg.log_text(job_id) and "Traceback" in reg.log_text(job_id)
    # the runner survives a failing job
    ok = reg.submit("test-counter", {"steps": 3})
    assert wait_for(reg, ok, {"done"})["status"] == "done"


def test_accelerator_jobs_run_one_at_a_time_in_order(runner):
    reg = runner.registry
    ids = [reg.submit("test-counter", {"steps": 10, "delay": 0.03}) for _ in range(3)]
    wait_for(reg, ids[0], {"running"})
    waiting = [reg.get(i) for i in ids[1:]]
    assert [r["status"] for r in waiting] == ["queued", "queued"]
    assert [r["queue_position"] for r in waiting] == [1, 2]
    recs = [wait_for(reg, i, {"done"}) for i in ids]
    for earlier, later in zip(recs, recs[1:]):
        assert earlier["ended"] <= later["started"], "two accelerator jobs overlapped"


def test_light_job_runs_beside_an_accelerator_job(runner):
    reg = runner.registry
    heavy = reg.submit("test-counter", {"steps": 30, "delay": 0.03})
    wait_for(reg, heavy, {"running"})
    light = reg.submit("test-light", {"delay": 0.05})
    wait_for(reg, light, {"done"})
    assert reg.get(heavy)["status"] == "running"
    wait_for(reg, heavy, {"done"})


def test_cancel_checkpoints_and_resume_continues(runner):
    reg = runner.registry
    job_id = reg.submit("test-counter", {"steps": 60, "ckpt_every": 1000, "delay": 0.02})
    wait_for(reg, job_id, {"running"})
    while reg.get(job_id)["progress"]["step"] < 5:
        time.sleep(0.02)
    reg.cancel(job_id)
    rec = wait_for(reg, job_id, {"cancelled"})
    stopped = rec["checkpoint"]["step"]
    assert 5 <= stopped < 60, "the job saved a checkpoint when it saw the cancel"
    reg.resume(job_id)
    rec = wait_for(reg, job_id, {"done"})
    assert rec["result"] == {"final": 60.0, "resumed_from": stopped} and rec["attempts"] == 2
    assert [row["step"] for row in reg.metrics_history(job_id)] == list(range(1, 61))


def test_cancel_queued_job_never_runs(runner):
    reg = runner.registry
    first = reg.submit("test-counter", {"steps": 20, "delay": 0.02})
    second = reg.submit("test-counter", {"steps": 5})
    assert reg.cancel(second)["status"] == "cancelled"
    wait_for(reg, first, {"done"})
    assert reg.get(second)["status"] == "cancelled" and reg.get(second)["started"] is None


def test_shutdown_interrupts_and_a_new_runner_resumes(store):
    reg = JobRegistry(store)
    first = Runner(store, registry=reg, poll_interval=0.05).start()
    job_id = reg.submit("test-counter", {"steps": 200, "delay": 0.01, "ckpt_every": 1000})
    wait_for(reg, job_id, {"running"})
    first.stop(timeout=10)
    rec = reg.get(job_id)
    assert rec["status"] == "interrupted" and rec["checkpoint"]["step"] >= 0
    saved = rec["checkpoint"]["step"]
    second = Runner(store, poll_interval=0.05).start()
    try:
        assert second.registry.resume(job_id)["status"] == "queued"
        rec = wait_for(reg, job_id, {"done"})
        assert rec["result"] == {"final": 200.0, "resumed_from": saved}
        assert [row["step"] for row in reg.metrics_history(job_id)] == list(range(1, 201))
    finally:
        second.stop(timeout=10)


def test_only_one_runner_per_data_directory(store):
    a = Runner(store, poll_interval=0.05, lock_retry=0.05).start()
    b = Runner(store, poll_interval=0.05, lock_retry=0.05).start()
    try:
        time.sleep(0.3)
        assert [a.active, b.active].count(True) == 1
        owner = a.registry.runner_owner()
        assert owner is not None and owner["pid"] > 0
        holder, other = (a, b) if a.active else (b, a)
        holder.stop(timeout=10)
        time.sleep(0.3)
        assert other.active, "the passive runner takes over when the lock is released"
    finally:
        a.stop(timeout=10)
        b.stop(timeout=10)


def test_unknown_kind_and_bad_spec_are_clear_errors(store):
    reg = JobRegistry(store)
    with pytest.raises(ValidationError, match="Unknown job kind 'nope'.*test-counter"):
        reg.submit("nope", {})
    with pytest.raises(ValidationError, match="not plain JSON"):
        reg.submit("test-counter", {"steps": float("nan")})
