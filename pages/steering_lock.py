"""The Steering tab's one lock: the loaded target model is shared by every steering handler (baseline/steered
generation, sweeps, concept vectors), and its hooks must not interleave — so they generate one at a time."""
from __future__ import annotations

import threading

GENERATE_LOCK = threading.Lock()
