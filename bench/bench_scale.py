"""Corpus scale: peak RSS and time to add, tokenize and train on a synthetic corpus, at several sizes.

Each phase runs in its own process so its peak RSS (`ru_maxrss`) is its own:
- ingest:   `datasets.add_local` of a synthetic .jsonl (~`--words` words per document), streamed in row groups;
- tokenize: `tokenize.tokenize_dataset` with SmolLM2's tokenizer (contexts of 128 tokens straight to an int32
            file);
- train:    `ActivationStream` over the memory-mapped tokens (train split) + `train_saes` (TopK, 512 latents) for
            `--steps` steps on a small random Llama with SmolLM2's vocabulary (the model is not what is measured:
            the data path is).
The bar (issue 16) is 1M documents / 500M tokens with every phase ≤ 4 GB. On a shared 2-core machine that is
hours of tokenizing, so the default sizes are scaled down: the point shown is that peak RSS is flat in corpus
size (what grows is only the disk). Run the full size with `--docs 1000000`.

    .venv/bin/python bench/bench_scale.py [--docs 20000 80000] [--words 380] [--steps 20] [--home /tmp/x]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOK_SRC = Path.home() / ".cache" / "mistudio-test-home" / "models" / "smollm2-135m-instruct"
MODEL_ID = "smol-tokenizer"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class AnonPeak:
    """Peak anonymous memory (RssAnon, sampled every 0.1 s). Peak RSS also counts the memory-mapped token file's
    pages once read: file-backed and reclaimable, they grow with what is read, not with what is held."""

    def __init__(self):
        import threading

        self.peak, self.done = 0, threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def sample(self) -> None:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                self.peak = max(self.peak, int(line.split()[1]) // 1024)

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.sample()


def write_corpus(path: Path, n_docs: int, words: int, seed: int = 0) -> None:
    """Synthetic documents from a 5,000-word pseudo-vocabulary, written 10k lines at a time."""
    import numpy as np

    rng = np.random.default_rng(seed)
    syll = np.array(["ka", "to", "ri", "men", "sa", "lo", "ve", "dan", "pi", "or", "el", "us", "tri", "na"])
    vocab = np.array(["".join(rng.choice(syll, rng.integers(1, 4))) for _ in range(5000)])
    with open(path, "w") as f:
        for start in range(0, n_docs, 10_000):
            lines = []
            for _ in range(min(10_000, n_docs - start)):
                lines.append(json.dumps({"text": " ".join(vocab[rng.zipf(1.3, words) % 5000]) + "."}))
            f.write("\n".join(lines) + "\n")


def register_tokenizer(store) -> None:
    if store.exists("models", MODEL_ID):
        return
    manifest = {"source": {"type": "bench", "note": "SmolLM2 tokenizer only"}, "architecture": "none",
                "vocab_size": 49152}
    with store.create("models", MODEL_ID, manifest, artifact_id=MODEL_ID) as tmp:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(TOK_SRC / name, tmp / name)


def phase(name: str, home: Path, corpus: Path, steps: int) -> dict:
    from mistudio_core.data import datasets as ds
    from mistudio_core.platform.store import Store

    store = Store(home)
    base = peak_mb()
    anon = AnonPeak()
    t0 = time.perf_counter()
    out: dict = {}
    if name == "ingest":
        ds.STREAM_BYTES = 0  # stream every size, so the small ones measure the path the large ones take
        m = ds.add_local(store, corpus, name="synthetic")
        out = {"n_docs": m["n_docs"], "dataset_id": m["id"]}
    elif name == "tokenize":
        from mistudio_core.data.tokenize import TokenizeConfig, tokenize_dataset

        register_tokenizer(store)
        did = ds.list_datasets(store)[0]["id"]
        stats = tokenize_dataset(store, did, MODEL_ID, TokenizeConfig(context_size=128))
        out = {"n_tokens": stats["n_tokens"], "n_contexts": stats["n_contexts"]}
    else:
        out = train(store, ds.list_datasets(store)[0]["id"], steps)
    anon.sample()
    return {**out, "seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(peak_mb()),
            "import_rss_mb": round(base), "peak_anon_mb": anon.peak}


def train(store, dataset_id: str, steps: int) -> dict:
    import torch
    import transformers as tf

    from mistudio_core.model.activations import ActivationStream
    from mistudio_core.sae.train_config import TrainConfig
    from mistudio_core.sae.trainer import train_saes
    from mistudio_core.data.tokenize import load_tokenized

    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)
    model = tf.LlamaForCausalLM(cfg).eval()
    tok = load_tokenized(store, dataset_id, MODEL_ID)
    train_ids, _ = tok.split_ids()
    hook = "blocks.1.hook_resid_post"
    stream = ActivationStream(model, tok, [hook], batch_tokens=2048, context_ids=train_ids)
    tcfg = TrainConfig.of(architecture="topk", k=16, d_sae=512, batch_tokens=2048, steps=steps)
    sae_cfg = tcfg.sae_config(64, hook)
    train_saes(stream, [sae_cfg], tcfg)
    return {"steps": steps, "train_contexts": int(len(train_ids))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, nargs="+", default=[20_000, 80_000])
    p.add_argument("--words", type=int, default=380, help="words per document (~1.3 SmolLM2 tokens each)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--home", type=Path, default=Path("/tmp/mistudio-bench-scale"))
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.phase:
        print(json.dumps(phase(a.phase, a.home, a.corpus, a.steps)))
        return
    rows = []
    for n in a.docs:
        home = a.home / f"docs-{n}"
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        corpus = home / "corpus.jsonl"
        write_corpus(corpus, n, a.words)
        for name in ("ingest", "tokenize", "train"):
            res = subprocess.run([sys.executable, __file__, "--phase", name, "--home", str(home / "store"),
                                  "--corpus", str(corpus), "--steps", str(a.steps)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append({"docs": n, "phase": name, **r})
            print(f"{n:>9,} docs  {name:<9} {r['seconds']:>8.1f} s  peak RSS {r['peak_rss_mb']:>6,} MB "
                  f"(anon {r.get('peak_anon_mb', '?')}, after imports {r['import_rss_mb']:,})  "
                  f"{r.get('n_tokens', '')}", flush=True)
        shutil.rmtree(home, ignore_errors=True)
    print("\n| docs | phase | seconds | peak RSS MB | peak anon MB | tokens |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['docs']:,} | {r['phase']} | {r['seconds']} | {r['peak_rss_mb']:,} | {r.get('peak_anon_mb')} | "
              f"{r.get('n_tokens', '')} |")
    per_phase = {}
    for r in rows:
        per_phase.setdefault(r["phase"], []).append(r["peak_rss_mb"])
    print("\nRSS ratio largest/smallest corpus: " +
          ", ".join(f"{k} {v[-1] / v[0]:.2f}×" for k, v in per_phase.items()))


if __name__ == "__main__":
    main()
