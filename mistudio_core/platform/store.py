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
MAX_ID_CHARS = 128
MAX_PATH_CHARS = 1024
# Ids are folder names we made (`slugify` + 6 hex) or built-in names: plain ASCII, no separators, no leading dot.
# Anything else (traversal, NUL, look-alike unicode, 5,000 characters) is refused with one clear message before it
# reaches the file system (where it would be an OSError, or worse, a different folder).
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


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


def shown(value: object, limit: int = 60) -> str:
    """A user value quoted for a message: escapes made visible (NUL, RTL marks), long values cut."""
    text = repr(str(value))
    return text if len(text) <= limit else f"{text[:limit]}…' ({len(str(value))} characters)"


def check_id(kind: str, artifact_id: object) -> str:
    """`artifact_id` if it is a well-formed id, else a `ValidationError` saying what is wrong and what to do."""
    what = kind[:-1] if kind.endswith("s") else kind
    if artifact_id is None or artifact_id == "" or (isinstance(artifact_id, (list, tuple)) and not artifact_id):
        raise ValidationError(f"No {what} selected. Pick one from the list (or add one first).")
    if not isinstance(artifact_id, str):
        raise ValidationError(f"Invalid {what} id {shown(artifact_id)}: an id is a text like 'sotu'. "
                              "Pick one from the list.")
    if len(artifact_id) > MAX_ID_CHARS:
        raise ValidationError(f"Invalid {what} id {shown(artifact_id)}: ids are at most {MAX_ID_CHARS} characters. "
                              "Copy the id from the library table.")
    if not _ID.fullmatch(artifact_id):
        raise ValidationError(f"Invalid {what} id {shown(artifact_id)}: ids use only letters, digits, '.', '_' and "
                              "'-' and do not start with '.' (no paths, spaces or special characters). Copy the id "
                              "from the library table.")
    return artifact_id


def check_path_text(user_path: object, what: str = "path") -> str:
    """A typed path as text, refused early when no file system could hold it (NUL, control characters, length)."""
    if not isinstance(user_path, (str, Path)):
        raise ValidationError(f"The {what} must be text, got {type(user_path).__name__}. Enter a file or folder path.")
    text = str(user_path)
    if not text.strip():
        raise ValidationError(f"No {what} given. Enter a file or folder path.")
    if len(text) > MAX_PATH_CHARS:
        raise ValidationError(f"The {what} is {len(text):,} characters long (at most {MAX_PATH_CHARS}). "
                              "Enter a shorter path, e.g. move the file closer to an allowed folder.")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValidationError(f"The {what} {shown(text)} contains control characters (NUL, newline, ...). "
                              "Type the path again without them.")
    return text


MAX_NAME_CHARS = 200
# Bidirectional controls (embeddings, overrides, isolates, marks): stored raw, "report\u202etxt.exe" shows reversed
# in every list that displays it. Stripped from display names, with other control characters.
_BIDI = re.compile("[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")


def check_name(name: object, what: str = "name", cut: bool = False) -> str:
    """A display name as stored: bidi and other control characters stripped, whitespace trimmed; a name past
    `MAX_NAME_CHARS` is refused (a list cannot show it), or with `cut` (names derived from others, e.g. an SAE's
    `<job name>-<hook>`, which must not fail after a training) shortened to it."""
    if not isinstance(name, str):
        raise ValidationError(f"The {what} must be text, got {type(name).__name__}. Type a short name.")
    text = _BIDI.sub("", re.sub(r"[\x00-\x1f\x7f]+", " ", name)).strip()
    if len(text) > MAX_NAME_CHARS and cut:
        return text[:MAX_NAME_CHARS - 1].rstrip() + "…"
    if len(text) > MAX_NAME_CHARS:
        raise ValidationError(f"The {what} {shown(text)} is {len(text):,} characters long (at most "
                              f"{MAX_NAME_CHARS}). Choose a shorter name.")
    return text


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

    def __init__(self, home: Path | str | None = None, read_only: bool = False):
        """`read_only`: make no folder (a read-only demo, perhaps on a read-only disk); a missing kind lists empty."""
        self.home = Path(home).expanduser() if home else default_home()
        for kind in () if read_only else KINDS:
            (self.home / kind).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Store({str(self.home)!r})"

    def dir(self, kind: str) -> Path:
        if kind not in KINDS:
            raise ValidationError(f"Unknown artifact kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        return self.home / kind

    def path(self, kind: str, artifact_id: str) -> Path:
        return self.dir(kind) / check_id(kind, artifact_id)

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
        if not self.dir(kind).is_dir():  # a read-only store over a data directory that never had this kind
            return out
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
        name = check_name(name, cut=True) or (artifact_id or "item")
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
    text = check_path_text(user_path)
    try:
        resolved = Path(text).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as e:  # unknown ~user, symlink loops, odd names
        raise ValidationError(f"Cannot use the path {shown(text)} ({e.__class__.__name__}). Enter a plain path "
                              "to a file or folder.") from e
    roots = [Path(r).expanduser().resolve() for r in allowed_roots]
    if not any(resolved == r or r in resolved.parents for r in roots):
        raise ValidationError(
            f"Path {resolved} is outside the allowed folders ({', '.join(map(str, roots))}). "
            "Move the file there, or start the app with --allowed-root <folder>."
        )
    try:
        exists = resolved.exists()
    except OSError as e:  # e.g. a path component longer than the file system allows
        raise ValidationError(f"Cannot use the path {shown(text)}: {e.strerror or e}. Enter a shorter path.") from e
    if not exists:
        raise NotFoundError(f"File or folder not found: {resolved}")
    return resolved
