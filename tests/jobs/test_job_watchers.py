"""The pages' job watchers (the generators that stream a job card) always end on the job's final state, even when
the job ends between two of the watcher's reads of the registry (seen in CI: the labeling card stayed "running"
after the job was done, and a training card never showed "cancelled")."""
from __future__ import annotations

import asyncio

from pages import labeling, saes_eval, training
from pages.context import AppContext


class FlippingJobs:
    """A registry whose one job reads `running` the first `running_reads` times, then `final`."""

    def __init__(self, running_reads: int, final: str, kind_spec: dict | None = None):
        self.reads, self.running_reads, self.final = 0, running_reads, final
        self.spec = kind_spec or {}

    def _record(self) -> dict:
        self.reads += 1
        status = "running" if self.reads <= self.running_reads else self.final
        return {"id": "job-1", "status": status, "spec": self.spec, "progress": {}, "name": "job"}

    def get(self, job_id: str) -> dict:
        return self._record()

    def list(self, kind: str | None = None) -> list[dict]:
        return [self._record()]


def _drain(gen) -> list:
    return list(gen)


def _drain_async(agen) -> list:
    async def collect():
        return [x async for x in agen]
    return asyncio.run(collect())


def test_labeling_watch_ends_on_done_when_the_job_ends_between_reads(store):
    ctx = AppContext(store=store, jobs=FlippingJobs(running_reads=1, final="done"))
    lines = _drain(labeling.watch_job(ctx, "job-1", poll_s=0))
    assert "**done**" in lines[-1], lines


def test_eval_watch_ends_on_the_final_status(store, monkeypatch):
    monkeypatch.setattr(saes_eval, "POLL_S", 0)
    monkeypatch.setattr(saes_eval, "compare_choices", lambda ctx, current: None)
    monkeypatch.setattr(saes_eval, "job_status", lambda ctx, job_id: ctx.jobs.get(job_id)["status"])
    ctx = AppContext(store=store, jobs=FlippingJobs(running_reads=1, final="failed"))
    out = _drain_async(saes_eval.watch(ctx, "job-1", None))
    assert out[-1][0] == "failed", out


def test_training_watch_ends_on_cancelled(store, monkeypatch):
    monkeypatch.setattr(training, "POLL_S", 0)
    monkeypatch.setattr(training, "jobs_table", lambda ctx: None)
    monkeypatch.setattr(training, "_job_ids", lambda ctx: ["job-1"])
    monkeypatch.setattr(training, "card", lambda ctx, job_id: (ctx.jobs.get(job_id)["status"], None))
    ctx = AppContext(store=store, jobs=FlippingJobs(running_reads=1, final="cancelled"))
    out = _drain_async(training.watch(ctx, "job-1"))
    assert out[-1][1] == "cancelled", out
