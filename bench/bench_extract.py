"""Feature extraction at SAE widths 4.6k–131k: one-pass extraction time against capture, peak memory, export time.

Rates and ratios are in CPU seconds of the benchmark process (fair on a shared machine: run it with --threads 1
there), wall-clock figures beside them. Per width, in its own process (so peak RSS is that width's): SmolLM2-135M at
`blocks.8.hook_resid_post`, sotu
contexts of 128 tokens, a random TopK SAE (k=32: as sparse as a trained TopK SAE's codes).
- dtypes: the model is loaded in `resolve_model_dtype(--model-dtype)` and capture and extraction both run in it
  (bf16 where this machine is faster in bf16); "search" is the TopK search's dtype (`resolve_search_dtype`: bf16
  candidates rescored in fp32), "agree" the share of the fp32 encode's (token, latent) pairs it finds on 8 contexts;
- capture tok/s: `hooks.capture` alone (forward stopped after layer 8), best of --repeats — the floor;
- encode s/Mtok: the SAE's encode to its k codes per token, alone, on one captured batch (best of 2): the part
  of extraction that grows with width and cannot be skipped (every pre-activation is needed to pick the top k);
- extract tok/s: `extract_features` end to end (capture, sparse encode, statistics, top examples with their
  windows, quantiles, decoder logits); ratio = extraction ÷ capture time at this token count (goal ≤ 1.25);
- fixed s / per-token ratio: extraction time = fixed + rate × tokens, with rate from the pass after its first
  batch (conservative: later batches still fill empty slots) and fixed = the rest (vocabulary strings, first
  batch's slot fills, decoder logits over the vocabulary, quantile picks); "ratio at 1M" extrapolates to the
  default 1M-token extraction, "per-token" is the limit for a long run;
- peak RSS (CPU; CUDA max allocated on a GPU), and the RSS with just the model and tokens loaded;
- scores (`--scores both`): the extraction also run with `ExtractConfig.scores` off first; "scores CPU-s" is the
  input/output scores' own part of the extraction with them (`meta["cpu_seconds"]["scores"]`: the batched
  steered forwards of every live latent), "extra" that part over the extraction without them, at this token count
  and extrapolated to the default 1M tokens with every latent live (the scores' cost is per live latent; the
  goal: ≤ 10% at 4,608 latents);
- export: `export_neuronpedia` of the first --export-features features (a slice of the results, registered as
  its own SAE) in a throw-away store; ms per feature and the estimate for all live features (the export is
  linear in the number of features; it writes ~108 JSON activation records per feature).

    .venv/bin/python bench/bench_extract.py --tokens 32768 --widths 4608,16384,65536,131072 --model-dtype auto
    .venv/bin/python bench/bench_extract.py --widths 4608 --scores both --export-features 0   # scores' cost
"""
from __future__ import annotations

import argparse
import dataclasses
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


def setup(device: str, model_dtype: str = "auto"):
    from mistudio_core.model.compute import resolve_model_dtype
    from mistudio_core.data.defaults import ensure_builtins
    from mistudio_core.model.models import load_model
    from mistudio_core.platform.store import Store
    from mistudio_core.data.tokenize import load_tokenized

    home = Path(os.environ.get("MISTUDIO_TEST_HOME", Path.home() / ".cache" / "mistudio-test-home"))
    store = Store(home)
    ensure_builtins(store)
    loaded = load_model(store, "smollm2-135m-instruct", device=device,
                        dtype=resolve_model_dtype(model_dtype, device))
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


def best_time(fn, items, device, repeats: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `repeats` runs of `fn` over all `items` (the minimum is the least
    disturbed by other load; CPU seconds of this process stay fair on a busy machine)."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        for item in items:
            fn(item)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return best, best_cpu


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB."""
    vals = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            vals[line.split(":")[0]] = int(line.split()[1]) / 1024
    peak = vals.get("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return vals.get("VmRSS", peak), peak


def encode_seconds(model, sae, batch, dev, search, repeats: int = 2) -> tuple[float, float]:
    """(CPU seconds of the sparse encode alone for one captured batch, best of `repeats`; share of the fp32
    encode's pairs that the `search` finds on its first 8 contexts, 1.0 without a search)."""
    from mistudio_core.features.extract import MAX_CODE_ELEMENTS
    from mistudio_core.features.sparse_encode import sparse_codes
    from mistudio_core.model.hooks import capture

    with torch.no_grad():
        acts = capture(model, batch.to(dev), [HOOK])[HOOK].float()  # as extraction hands them to the SAE
    secs = best_time(lambda a: sparse_codes(sae, a, MAX_CODE_ELEMENTS, search), [acts], dev, repeats)[1]
    if search is None:
        return secs, 1.0
    pairs = [set(zip(*(t.tolist() for t in sparse_codes(sae, acts[:8], MAX_CODE_ELEMENTS, s)[:2])))
             for s in (None, search)]
    return secs, len(pairs[0] & pairs[1]) / max(len(pairs[0]), 1)


def bench_width(loaded, tokens, d_sae, args) -> dict:
    """One width, in its own process (peak RSS is per width): capture alone, encode alone, the full one-pass
    extraction (split into fixed and per-token seconds), and the Neuronpedia export of a slice of its results."""
    from mistudio_core.features.extract import ExtractConfig, extract_features, resolve_search_dtype
    from mistudio_core.features.sparse_encode import prepare_search
    from mistudio_core.model.hooks import capture

    dev, model = args.device, loaded.model
    base_rss = rss_mib()[0]
    sae = random_sae(model.config.hidden_size, d_sae, dev)
    T = tokens.shape[1]
    n_ctx = args.tokens // T
    rows = tokens[:n_ctx].long()
    batches = [rows[s:s + args.batch] for s in range(0, n_ctx, args.batch)]

    def cap(b):
        with torch.no_grad():
            capture(model, b.to(dev), [HOOK])
    cap(batches[0])  # warm-up
    t_cap, c_cap = best_time(cap, batches, dev, args.repeats)
    cfg = ExtractConfig(n_tokens=args.tokens, top_k=args.top_k, batch_contexts=args.batch,
                        model_dtype=args.model_dtype, search_dtype=args.search_dtype)
    search = prepare_search(sae, resolve_search_dtype(cfg, next(model.parameters()).dtype, torch.device(dev)))
    t_enc, agree = encode_seconds(model, sae, batches[0], dev, search)
    t_enc *= n_ctx / len(batches[0])
    del search
    target = SimpleNamespace(model=model, tokenizer=loaded.tokenizer, model_id="smollm2-135m-instruct")
    off = None
    if args.scores != "on":
        c0 = time.process_time()
        extract_features(target, sae, tokens, dataclasses.replace(cfg, scores=False), hook_name=HOOK)
        off = time.process_time() - c0
        if args.scores == "off":
            cfg = dataclasses.replace(cfg, scores=False)
    t0, c0 = time.perf_counter(), time.process_time()
    res = extract_features(target, sae, tokens, cfg, hook_name=HOOK)
    t_full, c_full = time.perf_counter() - t0, time.process_time() - c0
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.startswith("cuda") else rss_mib()[1]
    n, sec = n_ctx * T, res.meta["seconds"]
    n_first = min(args.batch, n_ctx) * T
    csec = res.meta.get("cpu_seconds")  # the split in CPU seconds (wall splits swing with the machine's load)
    split, full, scale = (csec, c_full, 1.0) if csec else (sec, t_full, c_full / t_full)
    rate = (split["pass"] - split["first_batch"]) / max(n - n_first, 1) if n > n_first else split["pass"] / n
    fixed = max(full - rate * n, 0.0)
    cap_rate = c_cap / n  # ratios in CPU seconds: fair on a busy machine (use --threads 1 there)
    out = {"d_sae": d_sae, "tokens": n, "capture_tok_s": n / t_cap, "capture_tok_cpu_s": n / c_cap,
           "encode_cpu_s_per_mtok": 1e6 * t_enc / n, "extract_tok_s": n / t_full, "extract_tok_cpu_s": n / c_full,
           "ratio_wall": t_full / t_cap, "ratio": c_full / c_cap, "fixed_cpu_s": fixed * scale,
           "per_token_ratio": rate * scale / cap_rate, "ratio_1m": (fixed + rate * 1e6) * scale / (cap_rate * 1e6),
           "seconds": sec, "cpu_seconds": csec, "peak_mib": peak, "base_rss_mib": base_rss,
           "live": int((res.t["count"] > 0).sum()),
           "pass2_contexts": res.meta["pass2_contexts"], "dtypes": res.meta["dtypes"], "agree": agree}
    if off is not None and cfg.scores:  # the scores' own CPU seconds over the extraction without them
        s_cpu = (csec or sec)["scores"]
        off_1m = max(off - rate * n, 0.0) + rate * 1e6
        out.update(scores_cpu_s=s_cpu, extract_off_cpu_s=off, extract_on_cpu_s=c_full,
                   scores_extra=s_cpu / off, scores_extra_1m=s_cpu * d_sae / max(out["live"], 1) / off_1m)
    if args.export_features:
        n_exp = min(args.export_features, d_sae)
        secs = export_time(sae, res, n_exp)
        out.update(export_features=n_exp, export_ms_per_feature=1000 * secs / n_exp,
                   export_all_s_est=secs / n_exp * out["live"])
    return out


def sliced(res, n: int):
    """The first `n` features of extraction results, as results of an n-wide SAE (for a bounded export run)."""
    from mistudio_core.features.results import FeatureResults

    per_feature = {k: v for k, v in res.t.items() if v.dim() and v.shape[0] == res.n_features
                   and k not in ("ctx_ids", "ctx_tokens", "cooc", "cooc_ids")}
    t = dict(res.t, **{k: v[:n].contiguous() for k, v in per_feature.items()})
    if "cooc_ids" in t:
        keep = t["cooc_ids"] < n
        t["cooc_ids"], t["cooc"] = t["cooc_ids"][keep], t["cooc"][keep][:, keep].contiguous()
    windows = {k: v[:n].contiguous() for k, v in res._windows.items()}
    return FeatureResults(dict(res.meta, d_sae=n), t, res.vocab, windows)


def export_time(sae, res, n: int) -> float:
    """Register the first `n` features of the SAE + results in a throw-away store; time `export_neuronpedia`."""
    import tempfile

    from mistudio_core.features.results import features_dir
    from mistudio_core.interop.export_neuronpedia import export_neuronpedia
    from mistudio_core.sae.library import register_sae
    from mistudio_core.sae.model import SAE
    from mistudio_core.platform.store import Store

    small = SAE(dataclasses.replace(sae.cfg, d_sae=n, metadata=dict(sae.cfg.metadata,
                                                                    model_name="smollm2-135m-instruct")))
    with torch.no_grad():
        for name, p in small.named_parameters():
            src = getattr(sae, name)
            p.copy_(src[:n] if name in ("W_dec", "b_enc") else src[:, :n] if name == "W_enc" else src)
    with tempfile.TemporaryDirectory() as home:
        store = Store(home)
        m = register_sae(store, small, f"random-{sae.W_dec.shape[0]}-first-{n}",
                         {"model_id": "smollm2-135m-instruct", "hook_name": HOOK, "dataset_id": "sotu"})
        sliced(res, n).save(features_dir(store, m["id"]))
        t0 = time.perf_counter()
        export_neuronpedia(store, m["id"])
        return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=32768)
    p.add_argument("--widths", default="4608,16384,65536,131072", help="comma-separated SAE widths")
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--batch", type=int, default=32, help="contexts per forward")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--repeats", type=int, default=2, help="best of N for the capture row")
    p.add_argument("--export-features", type=int, default=2048, help="features exported for the export timing "
                   "(0 = skip); the full export is estimated from the time per feature")
    p.add_argument("--model-dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="dtype of the model (capture and extraction alike); auto: bf16 where it is faster here")
    p.add_argument("--search-dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="dtype of the TopK search (ExtractConfig.search_dtype)")
    p.add_argument("--scores", default="on", choices=["on", "off", "both"],
                   help="input/output scores in the extraction (ExtractConfig.scores); both: also time it without")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: one width, print JSON
    args = p.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    if args.one:
        loaded, tokens = setup(args.device, args.model_dtype)
        print(json.dumps(bench_width(loaded, tokens, widths[0], args)))
        return
    print(f"device {args.device}, {args.threads} threads, {args.tokens:,} tokens, top-k {args.top_k}, batch "
          f"{args.batch} contexts, --model-dtype {args.model_dtype}, --search-dtype {args.search_dtype}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("Rates in tokens per CPU-second of this process (wall tok/s in brackets); ratios = extraction ÷ capture "
          "CPU time.")
    print("| d_sae | model / search dtype (agree) | capture tok/s | encode CPU-s/Mtok | extract tok/s | ratio (wall) "
          "| fixed CPU-s (logits CPU-s) "
          "| per-token ratio | ratio at 1M | peak RSS MiB (model only) | live | export ms/feature "
          "| export all live s (est.) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for d_sae in widths:
        cmd = [sys.executable, __file__, "--one", "--widths", str(d_sae), "--tokens", str(args.tokens), "--top-k",
               str(args.top_k), "--batch", str(args.batch), "--device", args.device, "--repeats", str(args.repeats),
               "--threads", str(args.threads), "--export-features", str(args.export_features),
               "--model-dtype", args.model_dtype, "--search-dtype", args.search_dtype, "--scores", args.scores]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(f"| {d_sae:,} | failed: {done.stderr.strip().splitlines()[-1:]} |", flush=True)
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(r)
        exp = "" if "export_ms_per_feature" not in r else f"{r['export_ms_per_feature']:.1f}"
        est = "" if "export_all_s_est" not in r else f"{r['export_all_s_est']:,.0f}"
        dt = r["dtypes"]
        print(f"| {d_sae:,} | {dt['model']} / {dt['search']} ({100 * r['agree']:.2f}%) "
              f"| {r['capture_tok_cpu_s']:,.0f} ({r['capture_tok_s']:,.0f}) | "
              f"{r['encode_cpu_s_per_mtok']:,.0f} | {r['extract_tok_cpu_s']:,.0f} ({r['extract_tok_s']:,.0f}) "
              f"| {r['ratio']:.2f} ({r['ratio_wall']:.2f}) "
              f"| {r['fixed_cpu_s']:.1f} ({(r.get('cpu_seconds') or r['seconds'])['logits']:.1f}) "
              f"| {r['per_token_ratio']:.2f} "
              f"| {r['ratio_1m']:.2f} | {r['peak_mib']:,.0f} ({r['base_rss_mib']:,.0f}) | {r['live']:,} | {exp} "
              f"| {est} |", flush=True)
    scored = [r for r in rows if "scores_cpu_s" in r]
    if scored:
        print("\n| d_sae | live | extraction CPU-s without scores | with | scores CPU-s | extra here | extra at 1M "
              "tokens, all live |\n|---|---|---|---|---|---|---|")
        for r in scored:
            print(f"| {r['d_sae']:,} | {r['live']:,} | {r['extract_off_cpu_s']:.1f} | {r['extract_on_cpu_s']:.1f} "
                  f"| {r['scores_cpu_s']:.1f} | {100 * r['scores_extra']:.1f}% | {100 * r['scores_extra_1m']:.1f}% |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "load": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
