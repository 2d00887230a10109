"""Reading files from strangers safely.

Nothing here unpickles. Weight files are read as safetensors or `.npz` with `allow_pickle=False`; a `.pt`/`.pth`
file goes through `torch.load(weights_only=True)`, which refuses arbitrary objects. Archives are unpacked member by
member after checking that every name stays inside the target folder (no `..`, no absolute paths, no links).
"""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..platform.errors import ValidationError

PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib"}


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors, npz or (weights-only) torch file; anything unreadable names the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ValidationError(f"Refusing to load {path.name}: pickle files can run code. Convert it to safetensors.")
    try:
        if suffix == ".safetensors":
            return load_file(str(path))
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {k: torch.from_numpy(np.array(npz[k])) for k in npz.files}
        if suffix in {".pt", ".pth", ".bin"}:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
                raise ValidationError(f"{path.name} does not hold a flat dict of tensors")
            return dict(obj)
    except ValidationError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError, zipfile.BadZipFile, EOFError) as e:
        raise ValidationError(f"Cannot read weights file {path}: corrupt or truncated ({e}).") from e
    except Exception as e:  # torch's weights_only unpickler raises its own error types
        if "weights_only" in str(e) or "Unsupported" in str(e):
            raise ValidationError(f"Refusing {path.name}: it contains Python objects, not only tensors "
                                  "(a pickle payload). Convert it to safetensors.") from e
        raise ValidationError(f"Cannot read weights file {path}: {e}") from e
    raise ValidationError(f"Unsupported weights file {path.name}; use .safetensors, .npz or .pt (tensors only).")


def _checked_member_path(name: str, target: Path) -> Path:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or name.startswith(("/", "\\")) or ":" in pure.parts[0]:
        raise ValidationError(f"Archive member {name!r} points outside the folder (path traversal); refusing the "
                              "archive.")
    dest = (target / pure).resolve()
    if target.resolve() not in dest.parents and dest != target.resolve():
        raise ValidationError(f"Archive member {name!r} points outside the folder; refusing the archive.")
    return dest


def extract_archive(archive: Path, target: Path) -> Path:
    """Unpack a .zip / .tar(.gz) into `target` after checking every member name; links are refused."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _checked_member_path(info.filename, target)
            zf.extractall(target)
        return target
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _checked_member_path(m.name, target)
                if m.issym() or m.islnk() or m.isdev():
                    raise ValidationError(f"Archive member {m.name!r} is a link or device; refusing the archive.")
            tf.extractall(target, members=members, filter="data")
        return target
    except tarfile.TarError as e:
        raise ValidationError(f"{archive.name} is not a readable zip or tar archive ({e}).") from e
