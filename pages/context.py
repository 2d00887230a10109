"""What every page gets from the app: the store, the job registry, the allowed roots for user paths, and whether
the app is read-only (demo mode)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mistudio_core.platform.store import Store


@dataclass
class AppContext:
    store: Store
    """The data directory all artifacts live in."""
    jobs: Any = None
    """The `mistudio_core.jobs.JobRegistry` (None until the jobs module exists)."""
    allowed_roots: list[Path] = field(default_factory=list)
    """Folders the UI may read user files from (the data directory is always allowed)."""
    read_only: bool = False
    """Demo mode: browsing only; every action that writes raises a clear message."""
    shared: dict = field(default_factory=dict)
    """Components one page exposes to others (e.g. a refresh trigger), keyed by name."""
