"""The data directory: one folder per artifact, each with a `manifest.json`, written atomically.

Layout (see DESIGN.md)::

    $MISTUDIO_HOME/datasets/<id>/   models/<id>/   saes/<id>/   runs/<id>/   exports/<id>/

An artifact is built in a hidden temporary folder next to its final place and renamed into place only once its
manifest is written, so a crash never leaves a half-written artifact that the listing would show. The listing is
a scan of folders that hold a manifest: nothing else needs to be kept in sync.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from .errors import NotFoundError, ValidationError

KINDS = ("datasets", "models", "saes", "runs", "exports", "activations")
MANIFEST = "manifest.json"
_TMP_PREFIX = ".tmp-"


def default_home() -> Path:
    """`$MISTUDIO_HOME`, else `~/.mistudio`."""
    return Path(os.environ.get("MISTUDIO_HOME") or Path.home() / ".mistudio").expanduser()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """Read a JSON file; a missing or corrupt file is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"File not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValidationError(f"Corrupt JSON file {path}: {e}. Delete or repair it.") from e


def slugify(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")
    return slug[:48] or "item"


def new_id(name: str) -> str:
    """A readable, unique folder name: `<slug>-<6 hex>`."""
    return f"{slugify(name)}-{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp folder; on success it is renamed to `final` (replacing it), on error removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{_TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        trash = final.parent / f"{_TMP_PREFIX}old-{final.name}-{uuid.uuid4().hex[:6]}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


class Store:
    """The artifact library rooted at `home`."""

    def __init__(self, home: Path | str | None = None):
        self.home = Path(home).expanduser() if home else default_home()
        for kind in KINDS:
            (self.home / kind).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Store({str(self.home)!r})"

    def dir(self, kind: str) -> Path:
        if kind not in KINDS:
            raise ValidationError(f"Unknown artifact kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        return self.home / kind

    def path(self, kind: str, artifact_id: str) -> Path:
        if not artifact_id or "/" in artifact_id or "\\" in artifact_id or artifact_id.startswith("."):
            raise ValidationError(f"Invalid {kind} id {artifact_id!r}")
        return self.dir(kind) / artifact_id

    def exists(self, kind: str, artifact_id: str) -> bool:
        return (self.path(kind, artifact_id) / MANIFEST).is_file()

    def manifest(self, kind: str, artifact_id: str) -> dict:
        """The manifest of one artifact; an unknown id lists the ids that exist."""
        if not self.exists(kind, artifact_id):
            known = ", ".join(m["id"] for m in self.list(kind)) or "(none yet)"
            raise NotFoundError(f"No {kind[:-1]} with id {artifact_id!r}. Known {kind}: {known}")
        return read_json(self.path(kind, artifact_id) / MANIFEST)

    def list(self, kind: str) -> list[dict]:
        """Manifests of all complete artifacts of `kind`, oldest first. Corrupt manifests are skipped."""
        out = []
        for folder in sorted(self.dir(kind).iterdir()):
            if folder.name.startswith(".") or not (folder / MANIFEST).is_file():
                continue
            try:
                out.append(read_json(folder / MANIFEST))
            except ValidationError:
                continue
        return sorted(out, key=lambda m: (m.get("created", 0), m.get("id", "")))

    @contextlib.contextmanager
    def create(self, kind: str, name: str, manifest: dict, artifact_id: str | None = None) -> Iterator[Path]:
        """Build a new artifact: yields a temp folder to fill; the manifest (with id, name, kind, created
        added) is written last and the folder renamed into place. On error nothing appears."""
        artifact_id = artifact_id or new_id(name)
        final = self.path(kind, artifact_id)
        if final.exists():
            raise ValidationError(f"{kind[:-1]} {artifact_id!r} already exists; choose another name")
        with atomic_dir(final) as tmp:
            yield tmp
            full = {"id": artifact_id, "name": name, "kind": kind, "created": time.time(), **manifest}
            write_json_atomic(tmp / MANIFEST, full)

    def update_manifest(self, kind: str, artifact_id: str, **fields: Any) -> dict:
        manifest = self.manifest(kind, artifact_id)
        manifest.update(fields)
        write_json_atomic(self.path(kind, artifact_id) / MANIFEST, manifest)
        return manifest

    def delete(self, kind: str, artifact_id: str) -> None:
        """Remove an artifact: first hide it (rename), then delete, so a crash never leaves half of it listed."""
        folder = self.path(kind, artifact_id)
        if not folder.exists():
            raise NotFoundError(f"No {kind[:-1]} with id {artifact_id!r}")
        trash = folder.parent / f"{_TMP_PREFIX}del-{artifact_id}-{uuid.uuid4().hex[:6]}"
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)


def safe_user_path(user_path: str | Path, allowed_roots: list[Path]) -> Path:
    """Resolve a path typed or uploaded in the UI and refuse anything outside the allowed roots
    (symlinks and `..` are resolved first, so they cannot escape)."""
    if not str(user_path).strip():
        raise ValidationError("No path given. Enter a file or folder path.")
    resolved = Path(user_path).expanduser().resolve()
    roots = [Path(r).expanduser().resolve() for r in allowed_roots]
    if not any(resolved == r or r in resolved.parents for r in roots):
        raise ValidationError(
            f"Path {resolved} is outside the allowed folders ({', '.join(map(str, roots))}). "
            "Move the file there, or start the app with --allowed-root <folder>."
        )
    if not resolved.exists():
        raise NotFoundError(f"File or folder not found: {resolved}")
    return resolved
