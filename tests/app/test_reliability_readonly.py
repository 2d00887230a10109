"""`--read-only` on a read-only data directory: it starts, browses and writes nothing; `jobs/` stays byte-identical
(no `cache.db-wal` / `-shm` appear, `cache.db` keeps its bytes).

Three levels: the registry opened read-only (SQLite URI, no diskcache `Index`) on a writable copy, compared byte
for byte; the whole app started `--read-only` on a writable home (as root, chmod stops nothing, so bytes are
what is checked); and the whole app on a real read-only bind mount (`unshare -rm`, where the platform allows it),
where any write would fail loudly.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request

import pytest

import jobs_support  # noqa: F401 — registers the synthetic job kinds
from api_home import snapshot
from browser import AppServer
from mistudio_core.jobs import JobRegistry, Runner
from mistudio_core.jobs.readonly_index import ReadOnlyError
from mistudio_core.platform.store import Store


def _home(root):
    """A data directory with a done job, an interrupted one (with a checkpoint) and a dataset manifest."""
    store = Store(root / "home")
    reg = JobRegistry(store)
    runner = Runner(store, registry=reg)
    done = reg.submit("test-counter", {"steps": 3}, name="done one")
    runner.run_here(done)
    stopped = reg.submit("test-counter", {"steps": 50, "ckpt_every": 2}, name="stopped one")
    reg.update(stopped, status="interrupted", checkpoint={"step": 2}, progress={"step": 2, "total": 50})
    with store.create("datasets", "speech", {"n_docs": 1}, artifact_id="speech"):
        pass
    reg.index.cache.close()  # the writer is gone: SQLite folds its WAL back into cache.db and removes it
    assert not (store.home / "jobs" / "cache.db-wal").exists()
    return store, done, stopped


def test_registry_opened_read_only_reads_everything_and_writes_nothing(tmp_path):
    store, done, stopped = _home(tmp_path)
    before = snapshot(store.home)
    reg = JobRegistry(Store(store.home, read_only=True), read_only=True)
    assert [r["id"] for r in reg.list()] == [done, stopped]
    assert reg.get(done)["status"] == "done" and reg.get(stopped)["checkpoint"] == {"step": 2}
    assert [h["step"] for h in reg.metrics_history(done)] == [1, 2, 3] and "start:" in reg.log_text(done)
    assert reg.runner_owner() is None and reg.recover() == []
    assert done in reg.index and "nope" not in reg.index
    for change in (lambda: reg.submit("test-counter", {"steps": 1}), lambda: reg.cancel(stopped),
                   lambda: reg.resume(stopped), lambda: reg.delete(done)):
        with pytest.raises(ReadOnlyError, match="read-only"):
            change()
    assert snapshot(store.home) == before, "jobs/ (or anything else) changed"
    assert not list((store.home / "jobs").glob("*-wal")) and not list((store.home / "jobs").glob("*-shm"))


def test_read_only_registry_on_a_home_without_jobs_is_empty(tmp_path):
    (tmp_path / "bare").mkdir()
    reg = JobRegistry(Store(tmp_path / "bare", read_only=True), read_only=True)
    assert reg.list() == [] and reg.runner_owner() is None
    assert list((tmp_path / "bare").iterdir()) == [], "nothing created, not even jobs/"


def test_read_only_sees_a_live_writer_through_its_wal(tmp_path):
    store, done, _ = _home(tmp_path)
    writer = JobRegistry(store)
    new = writer.submit("test-counter", {"steps": 1}, name="while reading")  # the writer keeps its WAL open
    reader = JobRegistry(store, read_only=True)
    assert new in [r["id"] for r in reader.list()]
    writer.index.cache.close()


def _read(app, path: str):
    with urllib.request.urlopen(app.url + path.lstrip("/"), timeout=30) as r:
        body = r.read()
    return json.loads(body) if "api" in path else body


def _browse(app, done: str) -> None:
    assert [j["id"] for j in _read(app, "mistudio/api/jobs")["jobs"]][0] == done
    assert "speech" in json.dumps(_read(app, "mistudio/api/datasets"))
    _read(app, "mistudio/api/saes")
    assert b"miStudio" in _read(app, "/")
    assert "read-only" in _read(app, "mistudio/api/status")["status"]


def test_app_started_read_only_changes_nothing(tmp_path):
    store, done, _ = _home(tmp_path)
    before = snapshot(store.home)
    with AppServer(store.home, extra_args=["--read-only"], env={"GRADIO_TEMP_DIR": str(tmp_path / "gr")}) as app:
        _browse(app, done)
        assert "readonly database" not in app.log() and "OperationalError" not in app.log()
    assert snapshot(store.home) == before


def _can_mount_read_only(tmp_path) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    script = f"mount --bind {probe} {probe} && mount -o remount,bind,ro {probe} && ! touch {probe}/x 2>/dev/null"
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True).returncode == 0


def test_app_serves_a_read_only_bind_mount(tmp_path):
    if not _can_mount_read_only(tmp_path):
        pytest.skip("this platform allows no read-only bind mount (unshare -rm); the URI tests above cover it")
    store, done, _ = _home(tmp_path)
    before = snapshot(store.home)
    app = AppServer(store.home, extra_args=["--read-only"], env={"GRADIO_TEMP_DIR": str(tmp_path / "gr")},
                    builtins=True)  # read-only checks for the built-ins and prepares nothing
    h = str(store.home)
    app.args = ["unshare", "-rm", "sh", "-c", f'mount --bind "{h}" "{h}" && mount -o remount,bind,ro "{h}" && '
                'exec "$@"', "sh", *app.args]
    with app:
        _browse(app, done)
        assert "Built-ins not prepared (read-only)" in _read(app, "mistudio/api/status")["status"]
        log = app.log()
        assert "Read-only file system" not in log and "readonly database" not in log, log[-3000:]
    assert snapshot(store.home) == before
