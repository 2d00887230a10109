"""Activation capture throughput on the shipped SmolLM2-135M: early stop at the hook layer vs. a full forward.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_capture.py [--home DIR] [--hook blocks.8.hook_resid_post]
        [--contexts 16] [--context-size 128] [--repeats 3] [--threads 2] [--device cpu]

Rows (tokens/s, best of `repeats`, each over `contexts` x `context-size` tokens):
  full forward       model(input_ids) with logits, as a naive capture via output_hidden_states would pay
  capture            mistudio_core.model.hooks.capture: stops after the hook's layer (no upper layers, no LM head)
  capture (eager)    the same with eager attention instead of SDPA
  stream             ActivationStream batches (capture + masking + shuffling), the trainer's real input;
                     counts only kept tokens (position 0 is skipped), so it reads ~1% under capture
Ratios are against the full forward; tokens/CPU-s is the steadier figure on a busy machine. Anchor (2-core CPU):
full ~430-530 tokens/s, layer-8 capture ~2.3k.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from mistudio_core.model.activations import ActivationStream
from mistudio_core.model.hooks import capture
from mistudio_core.model.models import BUILTIN_ID, add_builtin_model, load_model
from mistudio_core.platform.store import Store


def _tokens(store: Store, n: int, size: int, vocab: int) -> torch.Tensor:
    try:
        from mistudio_core.data.tokenize import load_tokenized

        toks = load_tokenized(store, "sotu", BUILTIN_ID).tokens
        if toks.shape[1] >= size and toks.shape[0] >= n:
            return toks[:n, :size]
    except Exception:  # noqa: BLE001 - any reason: fall back to random ids, the cost is the same
        pass
    return torch.randint(3, vocab, (n, size), generator=torch.Generator().manual_seed(0))


def _best_rate(fn, n_tokens: int, repeats: int) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second), best of `repeats`. CPU seconds (all threads) are the
    honest cost on a shared machine, where wall time mostly measures the neighbours."""
    fn()  # warm-up (allocator, kernels)
    wall = cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return n_tokens / wall, n_tokens / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", default=None)
    ap.add_argument("--hook", default="blocks.8.hook_resid_post")
    ap.add_argument("--contexts", type=int, default=16)
    ap.add_argument("--context-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    store = Store(args.home)
    add_builtin_model(store)
    loaded = load_model(store, BUILTIN_ID, device=args.device)
    model = loaded.model
    x = _tokens(store, args.contexts, args.context_size, model.config.vocab_size).to(model.device)
    n = x.numel()

    def full():
        with torch.inference_mode():
            model(input_ids=x, use_cache=False)

    def cap():
        with torch.inference_mode():
            capture(model, x, args.hook)

    rows = [("full forward", _best_rate(full, n, args.repeats)), ("capture", _best_rate(cap, n, args.repeats))]
    model.set_attn_implementation("eager")
    rows.append(("capture (eager)", _best_rate(cap, n, args.repeats)))
    model.set_attn_implementation("sdpa")
    # One batch = one whole epoch = one refill (buffer = all contexts), so every next() pays one forward.
    kept = ActivationStream(loaded, x.cpu(), args.hook, buffer_contexts=args.contexts).tokens_per_epoch
    stream = ActivationStream(loaded, x.cpu(), args.hook, batch_tokens=kept, contexts_per_forward=args.contexts,
                              buffer_contexts=args.contexts)
    rows.append(("stream", _best_rate(lambda: next(stream), kept, args.repeats)))

    base = rows[0][1]
    print(f"SmolLM2-135M, {args.hook}, {args.contexts}x{args.context_size} tokens, device {loaded.device} "
          f"({loaded.dtype}), {args.threads} threads")
    print(f"{'path':<18} {'tokens/s':>10} {'x full':>7} {'tokens/CPU-s':>13} {'x full':>7}")
    for name, (wall, cpu) in rows:
        print(f"{name:<18} {wall:>10,.0f} {wall / base[0]:>7.2f} {cpu:>13,.0f} {cpu / base[1]:>7.2f}")

if __name__ == "__main__":
    main()
