"""Feature labels of one SAE, in `saes/<sae_id>/labels.json`.

File format (compact JSON, rewritten atomically on every change; shown indented here)::

    {"version": 1, "labels": {"12": {"label": "...", "category": "...", "description": "...",
                                     "source": "manual" | "auto" | "neuronpedia", "score": {...} | null,
                                     "model": "gpt-4o-mini" | null, "updated": 1732350000.0,
                                     "neuronpedia": {"description", "model", "scores", "source"}?, ...}}}

Neuronpedia's explanations (`interop/np_explanations.py`) live beside ours: a feature with no label gets an entry
with source "neuronpedia"; a feature we labelled keeps its label and carries the explanation under `neuronpedia`,
which later manual or LLM labels keep too. Nothing imported ever replaces a manual or LLM label.

Two writers can be live at once: the Features tab (manual edits) and a labeling job (auto labels). Each change
is a read-modify-write of the file under a lock (a thread lock per file plus an advisory `flock` across
processes), so neither loses the other's labels and a manual label set while a job runs is still never
overwritten by `set_auto`.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..platform.errors import ValidationError
from ..platform.store import Store, read_json

try:  # POSIX only; elsewhere the thread lock still guards one process
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

FILENAME = "labels.json"
SOURCES = ("manual", "auto", "neuronpedia")
_SEARCH_FIELDS = (("label", 3.0), ("category", 1.0), ("description", 1.5))
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
# Parsed files keyed by path, valid while (inode, mtime, size) match: at 16k labels parsing costs ~0.4 s, and a
# labeling job rewrites the file after every batch of answers.
_CACHE: dict[str, tuple[tuple, dict]] = {}


def _thread_lock(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path), threading.Lock())


class LabelStore:
    """Labels of SAE `sae_id`: `get`, `set` (manual edits), `set_auto` (never overwrites manual), `all`, `search`."""

    def __init__(self, store: Store, sae_id: str):
        self.store = store
        self.sae_id = sae_id
        self.path = store.path("saes", sae_id) / FILENAME

    # -- reading ---------------------------------------------------------------------------------------------
    def _read(self) -> dict[str, dict]:
        """The labels as `{str(index): entry}`: a fresh outer dict; entries are shared with the cache, so callers
        replace entries and never edit one in place."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = _CACHE.get(str(self.path))
        if cached is None or cached[0] != stamp:
            data = read_json(self.path)
            cached = (stamp, dict(data.get("labels", {})) if isinstance(data, dict) else {})
            _CACHE[str(self.path)] = cached
        return dict(cached[1])

    def _write(self, labels: dict[str, dict]) -> None:
        """Atomic rewrite (temp file, fsync, rename). Compact JSON: indenting triples the cost at 16k labels."""
        tmp = self.path.with_name(f".tmp-{FILENAME}.{uuid.uuid4().hex[:8]}")
        with open(tmp, "w", encoding="utf-8") as f:
            # dumps, not dump: only the one-shot path uses the C encoder (3x faster here)
            f.write(json.dumps({"version": 1, "labels": labels}, separators=(",", ":"), ensure_ascii=False))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        st = os.stat(self.path)
        _CACHE[str(self.path)] = ((st.st_ino, st.st_mtime_ns, st.st_size), dict(labels))

    def get(self, index: int) -> dict | None:
        """The label entry of feature `index`, or None when it has none."""
        entry = self._read().get(str(int(index)))
        return dict(entry) if entry else None

    def all(self) -> dict[int, dict]:
        """Every label entry keyed by feature index."""
        return {int(k): dict(v) for k, v in self._read().items()}

    def search(self, text: str) -> list[int]:
        """Feature indices whose label, category or description contains `text` (case-insensitive), sorted."""
        needle = (text or "").strip().lower()
        if not needle:
            return []
        hits = [i for i, e in self.all().items()
                if any(needle in str(e.get(k) or "").lower() for k in ("label", "category", "description"))]
        return sorted(hits)

    def search_hits(self, text: str, limit: int | None = None) -> list[dict]:
        """Word search, best first: `{index, label, source, score, matched}`. Each word of `text` matches a word of
        the label, category, description or Neuronpedia explanation when they share a stem ("yelling" finds
        "yell", "YELLS"; "capital" finds "capitalized"); features matching more query words rank first, then by
        where they matched (label over description) and how exactly, and the whole phrase gives a bonus."""
        words = _words(text)
        if not words:
            return []
        phrase = " ".join(words)
        hits = []
        for i, e in self.all().items():
            fields = [(_field_text(e, k), w) for k, w in _SEARCH_FIELDS]
            fields.append((str((e.get("neuronpedia") or {}).get("description") or ""), 1.5))
            matched, score = 0, 0.0
            for q in words:
                best = max((w * _word_match(q, _words(t)) for t, w in fields if t), default=0.0)
                matched += best > 0
                score += best
            if matched:
                score += sum(2.0 * w for t, w in fields if t and phrase in " ".join(_words(t)))
                hits.append({"index": i, "label": e.get("label", ""), "source": e.get("source", ""),
                             "score": round(score, 3), "matched": matched})
        hits.sort(key=lambda h: (-h["matched"], -h["score"], h["index"]))
        return hits[:limit] if limit else hits

    def search_words(self, text: str, limit: int | None = None) -> list[int]:
        """Feature indices of `search_hits(text)`, best match first."""
        return [h["index"] for h in self.search_hits(text, limit)]

    # -- writing ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict]]:
        """Yield the current labels for editing; whatever the block leaves in the dict is written back."""
        if not self.path.parent.is_dir():
            raise ValidationError(f"No SAE folder for {self.sae_id!r}; add or train the SAE before labeling it.")
        with _thread_lock(self.path):
            lock_file = open(self.path.with_name(FILENAME + ".lock"), "a")
            try:
                if fcntl:
                    fcntl.flock(lock_file, fcntl.LOCK_EX)
                labels = self._read()
                yield labels
                self._write(labels)
            finally:
                lock_file.close()  # closing releases the flock

    @staticmethod
    def _entry(label: str, category: str, description: str, source: str, score: dict | None,
               model: str | None, extra: dict | None) -> dict:
        if source not in SOURCES:
            raise ValidationError(f"Label source {source!r} is not one of {SOURCES}; use 'manual' or 'auto'.")
        label = (label or "").strip()
        if not label:
            raise ValidationError("A label cannot be empty; type a short name, or delete the label instead.")
        return {"label": label, "category": (category or "").strip(), "description": (description or "").strip(),
                "source": source, "score": score, "model": model, "updated": time.time(), **(extra or {})}

    def set(self, index: int, label: str, category: str | None = None, description: str | None = None,
            source: str = "manual", score: dict | None = None, model: str | None = None) -> dict:
        """Set (or replace) the label of feature `index`; this is the manual edit path. Returns the entry.
        A category/description left as None keeps the previous one (renaming an LLM label keeps its
        description); the replaced LLM label is kept as `replaced_auto` for provenance."""
        with self._locked() as labels:
            old = labels.get(str(int(index))) or {}
            extra = {"replaced_auto": old["label"]} if old.get("source") == "auto" else {}
            extra.update(_carried(old))
            entry = self._entry(label, old.get("category", "") if category is None else category,
                                old.get("description", "") if description is None else description,
                                source, score, model, extra)
            labels[str(int(index))] = entry
        return entry

    def set_auto(self, index: int, label: str, category: str = "", description: str = "",
                 score: dict | None = None, model: str | None = None, **extra: Any) -> bool:
        """Store an LLM label unless the feature has a manual one. Returns whether it was written.
        `extra` keys (e.g. `fingerprint` of the labeling settings) are kept in the entry."""
        return self.set_auto_many([(index, dict(label=label, category=category, description=description,
                                                score=score, model=model, **extra))])[0]

    def set_auto_many(self, items: Iterable[tuple[int, dict]]) -> list[bool]:
        """`set_auto` for several features in one file rewrite (a job flushes whatever finished together)."""
        items = list(items)
        written = []
        with self._locked() as labels:
            for index, fields in items:
                fields = dict(fields)
                key = str(int(index))
                if (labels.get(key) or {}).get("source") == "manual":
                    written.append(False)
                    continue
                base = {k: fields.pop(k, d) for k, d in
                        (("label", ""), ("category", ""), ("description", ""), ("score", None), ("model", None))}
                fields = {**_carried(labels.get(key) or {}), **fields}
                labels[key] = self._entry(base["label"], base["category"], base["description"], "auto",
                                          base["score"], base["model"], fields)
                written.append(True)
        return written

    def set_imported_many(self, items: Iterable[tuple[int, dict]], source: str = "neuronpedia") -> dict:
        """Store explanations from another tool (`{description, model, scores, source}` per feature) in one
        rewrite. A feature without a label, or with one from the same tool, gets an entry with `source`; a feature
        with a manual or LLM label keeps it and carries the explanation under `source`'s key. Returns counts
        `{new, beside, updated}`."""
        counts = {"new": 0, "beside": 0, "updated": 0}
        with self._locked() as labels:
            for index, fields in items:
                key, old = str(int(index)), labels.get(str(int(index))) or {}
                note = {k: fields.get(k) for k in ("description", "model", "scores", "source")}
                if old.get("source") in ("manual", "auto"):
                    labels[key] = {**old, source: note}
                    counts["beside"] += 1
                    continue
                text = (fields.get("description") or "").strip()
                labels[key] = self._entry(_short(text), "", text, source, fields.get("scores"), fields.get("model"),
                                          {source: note})
                counts["updated" if old else "new"] += 1
        return counts

    def delete(self, index: int) -> bool:
        """Remove the label of feature `index`; returns whether there was one."""
        with self._locked() as labels:
            return labels.pop(str(int(index)), None) is not None


def _carried(old: dict) -> dict:
    """What a new manual/LLM label keeps from the entry it replaces: an imported explanation."""
    note = old.get("neuronpedia")
    return {"neuronpedia": note} if note else {}


def _short(text: str, limit: int = 60) -> str:
    """A label from an explanation: the text itself when short, else cut at a word boundary."""
    if len(text) <= limit:
        return text or "(empty explanation)"
    return text[:limit].rsplit(" ", 1)[0] + "…"


def _field_text(entry: dict, key: str) -> str:
    return str(entry.get(key) or "")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", str(text or "").lower())


def _stem(word: str) -> str:
    """A crude stem: common English endings dropped, doubled final consonant undone ("yelling" = "yells" =
    "yell", "capitalized" ≈ "capital")."""
    for end in ("ization", "ized", "izes", "ize", "ing", "ers", "er", "ed", "es", "ly", "s"):
        if word.endswith(end) and len(word) - len(end) >= 3:
            word = word[: -len(end)]
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]
    return word


# Words a search should treat as one concept (stems): "capital letters" finds "ALL CAPS", "yelling" finds "shouting".
_ALIASES = {"cap": "capital", "uppercase": "capital", "allcap": "capital", "upper": "capital", "shout": "yell",
            "scream": "yell"}


def _concept(word: str) -> str:
    stem = _stem(word)
    return _ALIASES.get(stem, stem)


def _word_match(query: str, words: list[str]) -> float:
    """1 for the same word, 0.8 for the same stem, 0.5 when one stem starts the other (4+ letters), else 0."""
    best, qs = 0.0, _concept(query)
    for w in words:
        if w == query:
            return 1.0
        ws = _concept(w)
        if ws == qs:
            best = max(best, 0.8)
        elif min(len(ws), len(qs)) >= 4 and (ws.startswith(qs) or qs.startswith(ws)):
            best = max(best, 0.5)
    return best
