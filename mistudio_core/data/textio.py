"""Read local text files into a table with one `text` column (plus a `file` column for folders).

Supported: a `.txt` file (the whole file is one document), a folder of `.txt` files (one document per file,
sorted by name), `.jsonl` (one JSON object or string per line), `.json` (a list of objects or strings), `.csv`,
`.tsv` and `.parquet`. Tabular formats need a text column: `text` if there is one, else the only string column;
otherwise the user names it and a wrong name lists the valid ones.

Text files are decoded as strict UTF-8 (a leading BOM is allowed): silently replacing bad bytes would put
garbage tokens into the SAE's training data, so a non-UTF-8 file is an error that says how to re-encode it.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from ..platform.errors import NotFoundError, UnsupportedError, ValidationError

SUPPORTED = (".txt", ".jsonl", ".json", ".csv", ".tsv", ".parquet")


def read_local(path: str | Path, text_column: str | None = None) -> pd.DataFrame:
    """The documents in `path` as a DataFrame with a string column `text` (empty documents kept; the caller
    decides). Raises `NotFoundError`, `UnsupportedError` or `ValidationError` with the fix in the message."""
    path = Path(path).expanduser()
    if not path.exists():
        raise NotFoundError(f"File or folder not found: {path}. Check the path (absolute paths are safest).")
    if path.is_dir():
        return _read_txt_folder(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED:
        raise UnsupportedError(
            f"Unsupported file type {ext or '(no extension)'!r} for {path.name}. Supported: "
            f"{', '.join(SUPPORTED)}, or a folder of .txt files. Convert the file to one of these."
        )
    if ext == ".txt":
        return pd.DataFrame({"text": [_decode(path)]})
    if ext == ".parquet":
        frame = _read_parquet(path)
    elif ext == ".jsonl":
        frame = _read_jsonl(path)
    elif ext == ".json":
        frame = _read_json(path)
    else:
        frame = _read_delimited(path, sep="\t" if ext == ".tsv" else ",")
    return _pick_text(frame, text_column, path)


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValidationError(
            f"{path} is not valid UTF-8 (bad byte at position {e.start}). Re-encode it as UTF-8 and add it "
            f"again, e.g. `iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`."
        ) from e


def _read_txt_folder(folder: Path) -> pd.DataFrame:
    files = sorted(p for p in folder.rglob("*.txt") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise NotFoundError(
            f"Folder {folder} has no .txt files. Put one document per .txt file in it, or pick a file "
            f"({', '.join(SUPPORTED)})."
        )
    return pd.DataFrame({"text": [_decode(p) for p in files], "file": [str(p.relative_to(folder)) for p in files]})


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pandas()
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for corrupt files
        raise ValidationError(f"Could not read {path} as Parquet ({e}). Check the file is a valid Parquet file.") from e


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    for n, line in enumerate(_decode(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValidationError(f"{path} line {n} is not valid JSON ({e.msg}). Fix or remove that line.") from e
    return _rows_to_frame(rows, path)


def _read_json(path: Path) -> pd.DataFrame:
    try:
        data = json.loads(_decode(path))
    except json.JSONDecodeError as e:
        raise ValidationError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}). Fix the file.") from e
    if isinstance(data, dict):  # {"data": [...]} / {"rows": [...]}: accept one list-valued key
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else data
    if not isinstance(data, list):
        raise ValidationError(
            f"{path} must hold a JSON list of objects (or of strings). For one object per line use .jsonl."
        )
    return _rows_to_frame(data, path)


def _rows_to_frame(rows: list, path: Path) -> pd.DataFrame:
    if rows and all(isinstance(r, str) for r in rows):
        return pd.DataFrame({"text": rows})
    if not all(isinstance(r, dict) for r in rows):
        raise ValidationError(f"{path}: every record must be a JSON object (or every record a string).")
    return pd.DataFrame.from_records(rows)


def _read_delimited(path: Path, sep: str) -> pd.DataFrame:
    try:
        return pd.read_csv(io.StringIO(_decode(path)), sep=sep, keep_default_na=False)
    except pd.errors.ParserError as e:
        raise ValidationError(f"Could not parse {path} as {'TSV' if sep == chr(9) else 'CSV'}: {e}") from e


def string_columns(frame: pd.DataFrame) -> list[str]:
    """Columns whose non-missing values are all strings (and at least one is)."""
    out = []
    for col in frame.columns:
        values = frame[col].dropna()
        if len(values) and values.map(lambda v: isinstance(v, str)).all():
            out.append(str(col))
    return out


def _pick_text(frame: pd.DataFrame, text_column: str | None, path: Path) -> pd.DataFrame:
    columns = [str(c) for c in frame.columns]
    candidates = string_columns(frame)
    if text_column is None:
        if "text" in candidates:
            text_column = "text"
        elif len(candidates) == 1:
            text_column = candidates[0]
        else:
            raise ValidationError(
                f"Cannot tell which column of {path.name} holds the text: "
                f"{'string columns are ' + ', '.join(candidates) if candidates else 'no column holds strings'}. "
                f"Choose one with the text column option (all columns: {', '.join(columns) or '(none)'})."
            )
    if text_column not in columns:
        raise ValidationError(
            f"Column {text_column!r} is not in {path.name}. Valid columns: {', '.join(columns) or '(none)'}"
            f"{' (text-like: ' + ', '.join(candidates) + ')' if candidates else ''}."
        )
    if text_column not in candidates:
        raise ValidationError(
            f"Column {text_column!r} of {path.name} does not hold text. Text columns: "
            f"{', '.join(candidates) or '(none)'}."
        )
    texts = frame[text_column].fillna("").astype(str)
    return pd.DataFrame({"text": texts.tolist()})
