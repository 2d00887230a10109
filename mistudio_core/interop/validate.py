"""Checks an imported SAE must pass before anything is registered.

An SAE that imports but cannot be used is worse than a refusal: a hook name no model has (`blocks.999.…`, a path,
a shell fragment) fails later in Features or Steering with a confusing error; NaN/Inf weights make steering print
the same token forever; a width that is not the model's d_model breaks every forward. Archives are checked before
they are unpacked: a small file can hold gigabytes (a 300 MB member in 290 KB), or a million members.

Every refusal names the problem and the fix, and the file it concerns (by its name inside the upload, never a
server path).
"""
from __future__ import annotations

import re
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError

from ..platform.errors import MistudioError, ValidationError

HOOK_RE = re.compile(r"blocks\.(\d{1,4})\.(hook_(resid_pre|resid_post|attn_out|mlp_out|mlp_in)|ln2\.hook_normalized"
                     r"|mlp\.hook_in)")  # the last three: a transcoder's input (hooks.EXTRA_SITES)
MAX_UNPACKED_BYTES = 8 * 1024 ** 3
"""Total unpacked size of an archive (an SAE of width 1M on d_model 4608 in fp32 is ~37 GB: import those from a
folder, not an upload)."""
MAX_MEMBERS = 1000
"""An SAE folder has a handful of files; thousands of members is a zip bomb or the wrong archive."""
MAX_RATIO = 200
"""Unpacked / packed size. Float weights compress ~1.1×; even all-zero tensors are bounded by the size limit."""


def check_hook_name(hook_name: str | None, model: dict | None = None) -> str:
    """A TransformerLens hook name, and one the model has (when it is known)."""
    if not hook_name:
        raise ValidationError("The SAE's files do not say which hook point it reads. Enter the hook point (e.g. "
                              "'blocks.8.hook_resid_post') and import again.")
    if not isinstance(hook_name, str) or not HOOK_RE.fullmatch(hook_name):
        shown = repr(hook_name)[:80]
        raise ValidationError(f"Hook point {shown} is not a hook name: use 'blocks.<layer>.hook_<site>' with site "
                              "resid_pre, resid_post, attn_out or mlp_out (e.g. 'blocks.8.hook_resid_post').")
    known = (model or {}).get("hook_points") or []
    from ..model.hooks import is_extra_hook  # hook_mlp_in is valid but not listed
    if known and hook_name not in known and not is_extra_hook(hook_name, (model or {}).get("n_layers") or 0):
        layers = (model or {}).get("n_layers")
        raise ValidationError(f"Model {model.get('id')!r} has no hook point {hook_name!r}"
                              f"{f' (it has {layers} layers: blocks.0 … blocks.{layers - 1})' if layers else ''}. "
                              "Pick the model this SAE was trained on, or correct the hook point.")
    return hook_name


def check_sae(sae, hook_name: str | None, model: dict | None, source_name: str) -> None:
    """Hook point, width against the model's d_model, and finite weights."""
    check_hook_name(hook_name, model)
    if getattr(sae.cfg, "d_out", None) is not None:  # a transcoder: the hook it writes must exist too
        check_hook_name(sae.cfg.hook_name_out, model)
    d_model = (model or {}).get("d_model")
    if d_model and int(d_model) != sae.cfg.d_in:
        raise ValidationError(f"{source_name}: the SAE reads vectors of width d_in={sae.cfg.d_in}, but model "
                              f"{model.get('id')!r} has d_model={d_model}. Pick the model it was trained on.")
    for name, tensor in list(sae.named_parameters()) + list(sae.named_buffers()):
        if tensor is not None and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValidationError(f"{source_name}: {name} holds {bad:,} NaN/Inf values; such an SAE produces "
                                  "garbage. Re-export it from a healthy checkpoint.")


def check_archive(archive: Path) -> None:
    """Refuse archives whose member count, total unpacked size or compression ratio is out of bounds."""
    archive = Path(archive)
    packed = max(archive.stat().st_size, 1)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                sizes = [i.file_size for i in zf.infolist()]
        else:
            with tarfile.open(archive) as tf:
                sizes = []
                for m in tf:  # streaming: stop counting once past the limit
                    sizes.append(m.size)
                    if len(sizes) > MAX_MEMBERS:
                        break
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValidationError(f"{archive.name} is not a readable .zip or .tar(.gz) archive ({type(e).__name__}). "
                              "Pack the SAE folder again (zip or tar.gz).") from None
    total = sum(sizes)
    if len(sizes) > MAX_MEMBERS:
        raise ValidationError(f"{archive.name} holds more than {MAX_MEMBERS} files; an SAE folder has a few "
                              "(cfg.json + weights). Archive just the SAE's folder.")
    if total > MAX_UNPACKED_BYTES:
        raise ValidationError(f"{archive.name} would unpack to {total / 1e9:.1f} GB (limit "
                              f"{MAX_UNPACKED_BYTES / 1e9:.0f} GB). Import a folder on the server instead.")
    if total / packed > MAX_RATIO and total > 10 * 1024 ** 2:
        raise ValidationError(f"{archive.name} unpacks {total / packed:.0f}× larger than it is ({packed:,} bytes → "
                              f"{total:,}); SAE weights barely compress, so this is refused as a zip bomb. "
                              "Pack the real SAE folder.")


def read_guarded(read: Callable, folder: Path, archive_name: str = ""):
    """Run a reader; corrupt or truncated files become a message naming the file (inside the upload)."""
    try:
        return read()
    except MistudioError as e:
        raise type(e)(_relative(str(e), folder, archive_name)) from None
    except (SafetensorError, struct.error, OSError, ValueError, KeyError, RuntimeError, EOFError,
            UnicodeDecodeError, TypeError) as e:
        files = sorted(p.name for p in Path(folder).iterdir()) if Path(folder).is_dir() else []
        where = f"{archive_name}: " if archive_name else ""
        raise ValidationError(f"{where}cannot read the SAE files {files}: corrupt, truncated or not what their "
                              f"names say ({type(e).__name__}: {_relative(str(e), folder, archive_name)[:160]}). "
                              "Export the SAE again and re-import it.") from None


def _relative(message: str, folder: Path, archive_name: str) -> str:
    """Replace the unpack folder's server path with the archive's name."""
    return message.replace(str(folder), archive_name or Path(folder).name)


def read_model_guarded(read: Callable, path: Path):
    """Run a model reader on a user's file or folder; a corrupt one (a fake .gguf raises struct.error deep in the
    GGUF reader) becomes a message naming the file and what it should be."""
    try:
        return read()
    except MistudioError:
        raise
    except (struct.error, SafetensorError, OSError, ValueError, KeyError, EOFError, UnicodeDecodeError,
            IndexError, TypeError) as e:
        name = Path(path).name
        kind = "GGUF file" if name.lower().endswith(".gguf") else "transformers model folder (config.json + " \
                                                                   "*.safetensors)"
        raise ValidationError(f"{name} is not a readable {kind}: corrupt, truncated or of another format "
                              f"({type(e).__name__}). Check the file, or download it again.") from None
