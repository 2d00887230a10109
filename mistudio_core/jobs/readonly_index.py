"""The job registry's index opened for reading only: what `--read-only` (a demo, perhaps on a read-only disk) uses.

Why not diskcache's `Index`: opening one writes — it creates the tables, stores its settings and switches the
database to WAL, which leaves `cache.db-wal` / `cache.db-shm` beside it; on a read-only disk it fails outright
("attempt to write a readonly database"). Even SQLite's `mode=ro` creates the -wal/-shm files of a WAL database
when the folder is writable. Only `immutable=1` reads without writing a byte; it is right while nobody writes,
which holds when no `-wal` file exists (a live writer keeps one). When one exists, `mode=ro` reads through it
(those files exist already, so nothing new appears). Each thread keeps its connection while the files stay as
they were; a writer that appears (a `-wal`, a new size or mtime) makes the next read reopen, and an `immutable`
read that a new writer disturbs is retried once in `mode=ro`.

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

from ..platform.errors import MistudioError

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
        # Read once now: beside a live writer, a WAL database's first reader sets its read mark in the writer's
        # -shm; at start-up that happens before anyone browses, as it did when the app opened a writable Index.
        self.keys()

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
        """Reads inside the block share this thread's connection (each statement reads one snapshot)."""
        yield

    # ---- refusing ------------------------------------------------------------------------------------------
    def __setitem__(self, key, value):
        raise ReadOnlyError(READ_ONLY_MESSAGE)

    def pop(self, key, default=None):
        self.__setitem__(key, None)

    # ---- plumbing ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self):
        """This thread's connection, kept while the files it was opened on are unchanged: reopening per read
        would rewrite a live writer's -shm read marks, and a kept connection costs no open per read."""
        db = self.dir / DB_NAME
        try:
            st = db.stat()
        except OSError:
            yield None
            return
        try:
            live = db.with_name(DB_NAME + "-wal").stat().st_size > 0
        except OSError:
            live = False
        # Immutable reads assume the file never changes: a new size or mtime (a writer came and went) reopens.
        key = (live, None if live else (st.st_mtime_ns, st.st_size))
        held = getattr(self._local, "held", None)
        if held is None or held[0] != key:
            if held is not None:
                held[1].close()
            held = self._local.held = (key, self._open(db, live))
        yield held[1]

    @staticmethod
    def _open(db: Path, live: bool) -> sqlite3.Connection:
        uri = f"file:{quote(str(db.resolve()))}?mode=ro" + ("" if live else "&immutable=1")
        con = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10)
        try:
            con.execute("SELECT 1 FROM Cache LIMIT 1").fetchall()
        except sqlite3.DatabaseError:
            con.close()
            if not live:  # a writer appeared under an immutable read: read through its WAL instead
                return ReadOnlyIndex._open(db, live=True)
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
