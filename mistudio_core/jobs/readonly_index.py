"""The job registry's index opened for reading only: what `--read-only` (a demo, perhaps on a read-only disk) uses.

Why not diskcache's `Index`: opening one writes — it creates the tables, stores its settings and switches the
database to WAL, which leaves `cache.db-wal` / `cache.db-shm` beside it; on a read-only disk it fails outright
("attempt to write a readonly database"). Even SQLite's `mode=ro` creates the -wal/-shm files of a WAL database
when the folder is writable. Only `immutable=1` reads without writing a byte; it is right while nobody writes,
which holds when no `-wal` file exists (a live writer keeps one). When one exists, `mode=ro` reads through it
(those files exist already, so nothing new appears). Each read opens a fresh connection, so a writer that starts
later is seen, and an `immutable` read that a new writer disturbs is retried once in `mode=ro`.

The rows are decoded as `JSONDisk` wrote them (zlib'd JSON, inline or in a `.val` file); any other storage mode
(pickle) is refused, never loaded. A missing database is an empty registry. Writing raises `ReadOnlyError`.
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
import zlib
import json
from pathlib import Path
from urllib.parse import quote

from ..errors import MistudioError

DB_NAME = "cache.db"
READ_ONLY_MESSAGE = ("The job registry is open read-only (read-only demo mode): nothing can be queued or changed. "
                     "Start the app without --read-only, on a writable data directory, to do that.")
MODE_RAW, MODE_BINARY = 1, 2  # diskcache's inline bytes and `.val` file modes; JSONDisk uses nothing else


class ReadOnlyError(MistudioError):
    """A change was asked of a registry opened read-only."""


class ReadOnlyIndex:
    """The subset of `diskcache.Index` the registry reads through: `keys`, `get`, `[]`, `in`, `transact`."""

    def __init__(self, directory: Path | str):
        self.dir = Path(directory)
        self._local = threading.local()

    # ---- reading -------------------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        with self._connection() as con:
            return [] if con is None else [_decode(k) for (k,) in con.execute("SELECT key FROM Cache")]

    def get(self, key: str, default=None):
        with self._connection() as con:
            if con is None:
                return default
            row = con.execute("SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1",
                              (_encode(key),)).fetchone()
        return default if row is None else self._value(*row)

    def __getitem__(self, key: str):
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    @contextlib.contextmanager
    def transact(self):
        """One connection (one consistent read) for the reads inside the block."""
        with self._connection():
            yield

    # ---- refusing ------------------------------------------------------------------------------------------
    def __setitem__(self, key, value):
        raise ReadOnlyError(READ_ONLY_MESSAGE)

    def pop(self, key, default=None):
        self.__setitem__(key, None)

    # ---- plumbing ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self):
        con = getattr(self._local, "con", None)
        if con is not None:  # inside transact(): reuse its connection
            yield con
            return
        self._local.con = con = self._open()
        try:
            yield con
        finally:
            self._local.con = None
            if con is not None:
                con.close()

    def _open(self, force_ro: bool = False) -> sqlite3.Connection | None:
        db = self.dir / DB_NAME
        if not db.is_file():
            return None
        wal = db.with_name(DB_NAME + "-wal")
        live = force_ro or (wal.is_file() and wal.stat().st_size > 0)
        uri = f"file:{quote(str(db.resolve()))}?mode=ro" + ("" if live else "&immutable=1")
        con = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10)
        try:
            con.execute("SELECT 1 FROM Cache LIMIT 1").fetchall()
        except sqlite3.DatabaseError:
            con.close()
            if not live:  # a writer appeared under an immutable read: read through its WAL instead
                return self._open(force_ro=True)
            raise
        return con

    def _value(self, mode: int, filename: str | None, value):
        if mode == MODE_RAW:
            data = bytes(value)
        elif mode == MODE_BINARY and filename and ".." not in filename:
            data = (self.dir / filename).read_bytes()
        else:
            raise ReadOnlyError(f"A job record is stored in mode {mode}, which miStudio never writes (pickle?); "
                                "it was not loaded. Remove the data directory's jobs/ folder if you did not put "
                                "it there.")
        return json.loads(zlib.decompress(data).decode("utf-8"))


def _encode(key: str) -> bytes:
    """A key as JSONDisk stores it (zlib'd JSON, compress level 1), so lookups use the table's key index."""
    return zlib.compress(json.dumps(key).encode("utf-8"), 1)


def _decode(key) -> str:
    return json.loads(zlib.decompress(bytes(key)).decode("utf-8"))


_MISSING = object()
