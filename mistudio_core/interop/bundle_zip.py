"""One zip per export bundle, for a browser download: `exports/<export_id>.zip` beside the bundle's folder.

The zip sits next to the folder, not inside it (an upload of the folder to the Hub must not carry its own zip), and
is rebuilt when the folder is newer. `Store.list("exports")` lists folders only, so the zips never show up as
bundles. Members are stored under `<export_id>/...` so unpacking never scatters files.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from ..platform.errors import NotFoundError, ValidationError
from ..platform.store import Store

# SAE weights barely compress; the JSON of a Neuronpedia bundle is already gzipped: store, don't deflate.
_STORED = {".safetensors", ".gz", ".npz", ".zip"}


def _newest(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.rglob("*")), default=folder.stat().st_mtime)


def bundle_zip(store: Store, export_id: str, out_dir: Path | None = None) -> Path:
    """The zip of export `export_id` (made, or remade when the bundle changed); returns its path. `out_dir`: where
    the zip goes instead of `exports/` (a read-only app writes nothing into the data directory)."""
    store.manifest("exports", export_id)  # NotFoundError listing the bundles that exist
    folder = store.path("exports", export_id)
    if not folder.is_dir():
        raise NotFoundError(f"Export {export_id!r} has no folder; export the SAE again.")
    target = Path(out_dir or folder.parent) / f"{export_id}.zip"
    if target.is_file() and target.stat().st_mtime >= _newest(folder):
        return target
    tmp = target.with_name(f".tmp-{target.name}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                method = zipfile.ZIP_STORED if path.suffix in _STORED else zipfile.ZIP_DEFLATED
                zf.write(path, f"{export_id}/{path.relative_to(folder)}", compress_type=method)
        tmp.replace(target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ValidationError(f"Could not write {target.name} ({e}); free some disk space and try again.") from e
    return target


def delete_zip(store: Store, export_id: str) -> None:
    """Remove an export's zip (when the bundle itself is deleted)."""
    (store.dir("exports") / f"{export_id}.zip").unlink(missing_ok=True)
