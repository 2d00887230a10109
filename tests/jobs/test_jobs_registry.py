"""The registry on its own: JSON-only storage, history reading, recovery, state rules, atomic checkpoints."""
from __future__ import annotations

import json
import sqlite3
import zlib

import pytest
import torch

import jobs_support  # noqa: F401  (registers the synthetic kinds)
from mistudio_core.platform.errors import NotFoundError, ValidationError
from mistudio_core.jobs import STATUSES, JobRegistry
from mistudio_core.jobs.checkpoint import checkpoint_info, load_checkpoint, save_checkpoint
from mistudio_core.jobs.lock import LOCK_NAME, RunnerLock


class _NoPickle:
    def __getattr__(self, name):
        raise AssertionError(f"pickle.{name} was used by the job registry")


def raw_rows(store) -> list:
    """Every stored key and value, decoded the JSONDisk way straight from SQLite (inline values only)."""
    con = sqlite3.connect(store.home / "jobs" / "cache.db")
    rows = con.execute("SELECT key, raw, value, mode, filename FROM Cache").fetchall()
    con.close()
    return rows


def test_registry_never_pickles_keys_or_values(store, monkeypatch):
    import diskcache.core

    monkeypatch.setattr(diskcache.core, "pickle", _NoPickle())
    reg = JobRegistry(store)
    job_id = reg.submit("test-counter", {"steps": 3, "nested": {"a": [1, 2]}}, owner="bob")
    reg.update(job_id, progress={"step": 1, "total": 3, "fraction": 1 / 3, "rate": None, "eta_s": None})
    reg.cancel(job_id)
    reg.resume(job_id)
    assert reg.get(job_id)["spec"]["nested"] == {"a": [1, 2]} and len(reg.list()) == 1
    rows = raw_rows(store)
    assert len(rows) == 1
    key, raw, value, mode, filename = rows[0]
    assert raw == 1 and json.loads(zlib.decompress(key)) == job_id  # the key is JSON bytes
    assert mode == 1 and filename is None  # MODE_RAW: zlib'd JSON bytes inline, not MODE_PICKLE (4)
    assert json.loads(zlib.decompress(value))["status"] == "queued"
    reg.delete(job_id)
    assert reg.list() == []


def test_new_record_has_every_field(store):
    reg = JobRegistry(store)
    rec = reg.get(reg.submit("test-counter", {"steps": 3}, owner="ann", name="my run"))
    for field in ("id", "kind", "owner", "status", "spec", "progress", "metrics", "error", "heartbeat",
                  "checkpoint", "created", "started", "ended", "queue_position"):
        assert field in rec
    assert rec["status"] in STATUSES and rec["queue_position"] == 1 and rec["name"] == "my run"
    assert rec["id"].startswith("test-counter-my-run-")
    assert store.list("runs")[0]["id"] == rec["id"]


def test_metrics_history_skips_a_torn_last_line_and_thins(store):
    reg = JobRegistry(store)
    job_id = reg.submit("test-counter", {"steps": 3})
    path = reg.run_dir(job_id) / "metrics.jsonl"
    lines = [json.dumps({"step": i, "loss": 1 / i}) for i in range(1, 101)]
    path.write_text("\n".join(lines) + '\n{"step": 101, "lo')
    rows = reg.metrics_history(job_id)
    assert [r["step"] for r in rows] == list(range(1, 101))
    thin = reg.metrics_history(job_id, max_points=10)
    assert len(thin) <= 11 and thin[0]["step"] == 1 and thin[-1]["step"] == 100


def test_context_repairs_torn_history_before_appending(store):
    from mistudio_core.jobs.context import JobContext

    reg = JobRegistry(store)
    job_id = reg.submit("test-counter", {"steps": 3})
    ctx = JobContext(reg, job_id)
    ctx.report(1, total=3, loss=1.0)
    ctx.checkpoint({"x": torch.ones(2)}, {"step": 1})
    ctx.report(2, total=3, loss=0.5)
    ctx.close()
    with open(reg.run_dir(job_id) / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "lo')  # torn by a kill
    ctx = JobContext(reg, job_id)  # a resumed run: history is cut back to the checkpoint's step
    ctx.report(2, total=3, loss=0.4)
    ctx.close()
    assert [(r["step"], r["loss"]) for r in reg.metrics_history(job_id)] == [(1, 1.0), (2, 0.4)]


def test_recover_marks_orphans_only_when_no_runner_is_alive(store):
    reg = JobRegistry(store)
    job_id = reg.submit("test-counter", {"steps": 3})
    reg.update(job_id, status="running", heartbeat=0.0)
    assert reg.get(job_id)["stale"] is True
    holder = RunnerLock(reg.dir / LOCK_NAME)
    assert holder.acquire()
    assert reg.recover() == [] and reg.get(job_id)["status"] == "running"  # a live runner owns it
    assert reg.runner_owner()["pid"] > 0
    holder.release()
    assert reg.runner_owner() is None
    assert reg.recover() == [job_id]
    rec = reg.get(job_id)
    assert rec["status"] == "interrupted" and "Resume it" in rec["message"]


def test_state_rules_give_clear_errors(store):
    reg = JobRegistry(store)
    job_id = reg.submit("test-counter", {"steps": 3})
    with pytest.raises(ValidationError, match="only interrupted, cancelled, failed"):
        reg.resume(job_id)
    reg.update(job_id, status="running")
    live_runner = RunnerLock(reg.dir / LOCK_NAME)
    assert live_runner.acquire()
    with pytest.raises(ValidationError, match="cancel it first"):
        reg.delete(job_id)
    assert reg.cancel(job_id)["stop_requested"] == "cancel"
    live_runner.release()
    reg.update(job_id, status="done")
    with pytest.raises(ValidationError, match="already done"):
        reg.cancel(job_id)
    with pytest.raises(ValidationError, match="submit a new job"):
        reg.resume(job_id)
    with pytest.raises(NotFoundError, match="jobs list"):
        reg.get("no-such-job")
    reg.delete(job_id)
    assert not reg.run_dir(job_id).exists()


def test_checkpoint_replaces_atomically_and_sweeps_leftovers(tmp_path):
    folder = tmp_path / "checkpoint"
    assert load_checkpoint(folder) is None
    first = save_checkpoint(folder, {"w": torch.zeros(3)}, {"step": 1}, step=1)
    (folder / ".tmp-ckpt-killed-midway").mkdir()  # what a kill during a save leaves behind
    (folder / ".tmp-ckpt-killed-midway" / "tensors.safetensors").write_bytes(b"half")
    second = save_checkpoint(folder, {"w": torch.ones(3)}, {"step": 2}, step=2)
    tensors, state = load_checkpoint(folder)
    assert state == {"step": 2} and torch.equal(tensors["w"], torch.ones(3))
    assert checkpoint_info(folder)["step"] == 2
    assert not first.exists() and second.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(["LATEST.json", second.name])


def test_cancel_or_delete_of_a_dead_process_job(store):
    reg = JobRegistry(store)
    cancelled = reg.submit("test-counter", {"steps": 3})
    deleted = reg.submit("test-counter", {"steps": 3})
    for job_id in (cancelled, deleted):
        reg.update(job_id, status="running", heartbeat=0.0)  # its process was killed
    assert reg.cancel(cancelled)["stop_requested"] == "cancel"
    reg.delete(deleted)  # no runner is alive, so the job is recovered first instead of refused
    assert [r["id"] for r in reg.list()] == [cancelled]
    assert reg.get(cancelled)["status"] == "cancelled", "the user's cancel survives the recovery"
