"""The data directory: artifacts appear only when complete, listings are scans, bad ids and paths are refused."""
from __future__ import annotations

import os

import pytest

from mistudio_core.platform.errors import NotFoundError, ValidationError
from mistudio_core.platform.store import read_json, safe_user_path


def test_a_failed_create_leaves_nothing_listed(store):
    with pytest.raises(RuntimeError):
        with store.create("datasets", "half", {"n_docs": 1}) as tmp:
            (tmp / "text.parquet").write_text("partial")
            raise RuntimeError("crash mid-write")
    assert store.list("datasets") == []
    assert not [p for p in store.dir("datasets").iterdir() if not p.name.startswith(".")]


def test_create_list_update_delete(store):
    with store.create("saes", "my sae", {"d_sae": 8}) as tmp:
        (tmp / "cfg.json").write_text("{}")
    (m,) = store.list("saes")
    assert m["name"] == "my sae" and m["d_sae"] == 8 and (store.path("saes", m["id"]) / "cfg.json").is_file()
    assert store.update_manifest("saes", m["id"], note="x")["note"] == "x"
    store.delete("saes", m["id"])
    assert store.list("saes") == []


def test_unknown_ids_list_the_known_ones_and_bad_ids_are_refused(store):
    with store.create("models", "m", {}, artifact_id="known-model"):
        pass
    with pytest.raises(NotFoundError, match="known-model"):
        store.manifest("models", "nope")
    for bad in ("../escape", ".hidden", "a/b", ""):
        with pytest.raises(ValidationError):
            store.path("models", bad)


def test_corrupt_manifest_names_the_file_and_is_skipped_in_listings(store):
    with store.create("datasets", "ok", {}, artifact_id="ok"):
        pass
    broken = store.dir("datasets") / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    assert [m["id"] for m in store.list("datasets")] == ["ok"]
    with pytest.raises(ValidationError, match="broken/manifest.json"):
        read_json(broken / "manifest.json")


def test_user_paths_stay_inside_allowed_roots(tmp_path):
    root = tmp_path / "allowed"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_text("x")
    (tmp_path / "secret.txt").write_text("s")
    assert safe_user_path(root / "sub" / "f.txt", [root]) == (root / "sub" / "f.txt").resolve()
    with pytest.raises(ValidationError, match="outside the allowed folders"):
        safe_user_path(str(root / ".." / "secret.txt"), [root])
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    with pytest.raises(ValidationError, match="outside"):
        safe_user_path(root / "link.txt", [root])
    with pytest.raises(NotFoundError):
        safe_user_path(root / "missing.txt", [root])
    with pytest.raises(ValidationError, match="No path"):
        safe_user_path("  ", [root])
