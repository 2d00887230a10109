"""A training preset end to end on the real model, scored on held-out text of ANOTHER domain.

    .venv/bin/python bench/quality_preset.py [--preset quality] [--home DIR] [--steps N --lr X --cache-tokens N ...]

Phases (each timed in wall seconds and CPU-seconds of this process, `time.process_time`): load the model, capture
(or reuse) the activation cache of the corpus's TRAIN contexts, train on it for the preset's steps (several epochs),
evaluate on the corpus's held-out slice (the job's final evaluation, in the job's model dtype) — that is the preset's
time — and then, as extra phases outside it, on out-of-domain text with the model in float32 as an outside evaluator
would: the Python language reference that ships inside CPython (`pydoc_data.topics`: ~465k characters of code-heavy
technical prose, nothing like State of the Union), the standard library's docstrings (~610k characters of technical
prose about software, little code) and, where the OS ships it, Debian's /usr/share/common-licenses (legal prose),
each registered once as a local dataset (`python-reference`, `stdlib-docstrings`, `licenses`) and tokenized like
sotu.

The idle-machine wall time is estimated as CPU-seconds / threads used (the machine this was written on is shared,
so wall time measures the neighbours as much as the code): printed beside the measured wall.
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

from mistudio_core.actcache import cache as actcache  # noqa: E402
from mistudio_core.actcache.job import noise_options  # noqa: E402
from mistudio_core.model.compute import resolve_model_dtype  # noqa: E402
from mistudio_core.data.defaults import ensure_builtins  # noqa: E402
from mistudio_core.model.models import load_model  # noqa: E402
from mistudio_core.sae.evaluate import evaluate_sae  # noqa: E402
from mistudio_core.sae.train_config import TrainConfig  # noqa: E402
from mistudio_core.sae.presets import get_preset  # noqa: E402
from mistudio_core.sae.train_spec import resolve  # noqa: E402
from mistudio_core.sae.trainer import train_saes  # noqa: E402
from mistudio_core.platform.store import Store  # noqa: E402
from mistudio_core.data.tokenize import load_tokenized  # noqa: E402

MODEL, DATASET, OOD = "smollm2-135m-instruct", "sotu", "python-reference"


def _pydoc_topics() -> dict[str, str]:
    import pydoc_data.topics as topics
    return dict(topics.topics)


def _licenses() -> dict[str, str]:
    """Debian's /usr/share/common-licenses (GPL, Apache, MPL, GFDL, …): legal English prose, ~250 kB."""
    folder = Path("/usr/share/common-licenses")
    return {f.name: f.read_text(encoding="utf-8", errors="replace") for f in sorted(folder.iterdir())
            if f.is_file() and not f.is_symlink()} if folder.is_dir() else {}


def _stdlib_docstrings() -> dict[str, str]:
    """Docstrings of the Python standard library's pure-Python modules, their classes and functions: technical
    English prose (parameters, behaviour, caveats) with little code, ~1 MB."""
    import importlib
    import inspect
    import pkgutil
    import sys

    texts = {}
    for info in sorted(pkgutil.iter_modules(), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in ("this", "antigravity", "idlelib", "tkinter", "turtle") or \
                info.name not in sys.stdlib_module_names:
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - platform modules that do not import here
            continue
        docs = [inspect.getdoc(module) or ""]
        for _, obj in sorted(vars(module).items()):
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", "") == info.name:
                docs.append(inspect.getdoc(obj) or "")
        text = "\n\n".join(d for d in docs if d)
        if len(text) > 200:
            texts[info.name] = text
    return texts


# Out-of-domain text found offline: code-heavy technical prose, legal prose (when the OS ships it), and
# technical prose about software (docstrings).
OODS = {OOD: _pydoc_topics, "licenses": _licenses, "stdlib-docstrings": _stdlib_docstrings}


def ensure_ood_dataset(store: Store, name: str = OOD) -> bool:
    """Register an out-of-domain text as a local dataset, tokenized for the model; False if this machine lacks it."""
    from mistudio_core.data.datasets import add_local
    from mistudio_core.data.tokenize import tokenize_dataset

    if not any(d["id"] == name for d in store.list("datasets")):
        texts = OODS[name]()
        if not texts:
            return False
        folder = Path(store.home) / "ood-src" / name
        folder.mkdir(parents=True, exist_ok=True)
        for doc, text in sorted(texts.items()):
            (folder / f"{doc}.txt").write_text(text, encoding="utf-8")
        m = add_local(store, folder, name=name)
        if m["id"] != name:  # ids get a suffix: keep a stable alias folder name
            os.replace(store.path("datasets", m["id"]), store.path("datasets", name))
            store.update_manifest("datasets", name, id=name)
    if MODEL not in (store.manifest("datasets", name).get("tokenizations") or []):
        tokenize_dataset(store, name, MODEL)
    return True


class Clock:
    def __init__(self):
        self.rows: list[tuple[str, float, float]] = []

    def phase(self, name: str, fn, *a, **kw):
        w, c = time.perf_counter(), time.process_time()
        out = fn(*a, **kw)
        self.rows.append((name, time.perf_counter() - w, time.process_time() - c))
        print(f"[{name}] wall {self.rows[-1][1]:.1f} s, cpu {self.rows[-1][2]:.1f} s", flush=True)
        return out


NUMBER_OVERRIDES = ("steps", "lr", "lr_warmup_steps", "lr_decay_steps", "aux_coefficient", "k", "expansion_factor",
                    "token_noise_contexts", "token_noise_rate", "token_noise_rank_offset")
"""TrainConfig fields the bench takes as flags (--steps, --token-noise-rank-offset, ...) over the preset's."""


def parse(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="quality")
    ap.add_argument("--home", default=os.environ.get("MISTUDIO_TEST_HOME",
                                                     str(Path.home() / ".cache" / "mistudio-test-home")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-contexts", type=int, default=64)
    ap.add_argument("--cache-tokens", type=int)
    ap.add_argument("--fresh", action="store_true", help="delete a matching cache first, so capture is measured")
    floats = ("lr", "aux_coefficient", "token_noise_contexts", "token_noise_rate", "token_noise_rank_offset")
    for name in NUMBER_OVERRIDES:
        ap.add_argument("--" + name.replace("_", "-"), dest=name, type=float if name in floats else int)
    ap.add_argument("--b-dec-init")
    ap.add_argument("--register", metavar="NAME", help="add the trained SAE to the store's library under NAME")
    ap.add_argument("--model-dtype", choices=("auto", "float32", "bfloat16"), help="default: the preset's")
    return ap.parse_args(argv)


def setup(args):
    """(store, preset, train config, cache options) for the run `args` describes."""
    torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    over = {k: getattr(args, k) for k in NUMBER_OVERRIDES + ("b_dec_init",)}
    store = Store(args.home)
    ensure_builtins(store)
    args.oods = [name for name in OODS if ensure_ood_dataset(store, name)]
    partial = resolve(args.preset, store, cache_tokens=args.cache_tokens or None, **over)  # the front door's rules
    return store, preset, TrainConfig.from_dict(partial["train"]), partial["cache"]


def run(args, store, preset, tcfg, cache_opts) -> tuple[Clock, dict, dict]:
    """Load, capture (or reuse) the cache, train, evaluate in and out of domain: (clock, results, cache)."""
    clock = Clock()
    dtype = resolve_model_dtype(args.model_dtype or preset.model_dtype, "cpu")
    print(f"model dtype: {dtype}")
    loaded = clock.phase("load", load_model, store, MODEL, device="cpu", dtype=dtype)
    tok = load_tokenized(store, DATASET, MODEL)
    train_ids, _ = tok.split_ids()
    bos = tok.config.get("bos_token_id")
    identity = actcache.cache_identity(store, MODEL, DATASET, context_ids=train_ids, bos_token_id=bos)
    if dtype != "float32":  # as the job keys it (actcache_job.prepare)
        identity["model_dtype"] = dtype
    noise = noise_options(tcfg, loaded)
    if noise:
        identity["token_noise"] = list(tcfg.data.token_noise)
    n_cache = cache_opts.get("tokens") or tcfg.optim.total_steps * tcfg.optim.batch_tokens
    if args.fresh:
        for m in actcache.list_caches(store):
            if m["identity"] == identity:
                actcache.delete_cache(store, m["id"])
    cache = clock.phase("capture", actcache.ensure_cache, store, loaded.model, tok, [preset.hook], n_cache,
                        identity, mode="use", dtype=cache_opts.get("dtype", "bfloat16"), context_ids=train_ids,
                        log=print, **noise)
    cfg = tcfg.sae_config(576, preset.hook, model_name=MODEL, dataset_path=DATASET,
                          context_size=tok.config.get("context_size"))

    def stream(start):
        return actcache.CacheStream(store, cache["id"], [preset.hook], batch_tokens=tcfg.optim.batch_tokens,
                                    seed=0, start_batch=start)

    def show(row):
        if row["step"] % 50 == 0 or row["step"] == row["total_steps"]:
            print(f"step {row['step']} epoch {row.get('epoch', 0):.2f} ev {row['explained_variance']:.3f} "
                  f"l0 {row['l0']:.1f} dead {row['dead_fraction']:.3f} lr {row['lr']:.2g}", flush=True)

    sae = clock.phase("training", train_saes, stream, [cfg], tcfg, on_metrics=show)[0].folded()
    results = {}
    m = clock.phase("evaluation", evaluate_sae, loaded, sae, preset.hook, tok.heldout_tokens(),
                    n_contexts=args.eval_contexts)  # the job's final evaluation, in the job's model dtype
    results["sotu held-out"] = {k: v["value"] for k, v in m.items()}
    # Out of domain: scored as an outside evaluator would, with the model in float32 (not part of the preset's time)
    fp32 = load_model(store, MODEL, device="cpu", dtype="float32")
    for name in args.oods:
        m = clock.phase("extra: out-of-domain evaluation", evaluate_sae, fp32, sae, preset.hook,
                        load_tokenized(store, name, MODEL).tokens, n_contexts=args.eval_contexts)
        results[name] = {k: v["value"] for k, v in m.items()}
    if args.register:  # keep the SAE (e.g. for bench/steer_effect.py); not part of the preset's time
        from mistudio_core.sae.library import register_sae
        m = register_sae(store, sae, args.register,
                         provenance={"model_id": MODEL, "hook_name": preset.hook, "dataset_id": DATASET,
                                     "source": "trained", "bench": "quality_preset", "preset": args.preset},
                         metrics=results["sotu held-out"])
        print(f"registered as {m['id']}")
    return clock, results, cache


def report(args, tcfg, clock: Clock, results: dict, cache: dict) -> None:
    job = [r for r in clock.rows if not r[0].startswith("extra")]  # what `train --preset` itself runs
    wall, cpu = sum(r[1] for r in job), sum(r[2] for r in job)
    print(f"\npreset {args.preset}: {tcfg.optim.total_steps} steps x {tcfg.optim.batch_tokens} = "
          f"{tcfg.optim.total_steps * tcfg.optim.batch_tokens:,} tokens over a cache of {cache['n_tokens']:,} "
          f"({tcfg.optim.total_steps * tcfg.optim.batch_tokens / cache['n_tokens']:.1f} epochs)")
    print(f"{'phase':<22}{'wall s':>9}{'cpu s':>9}{'idle-est s':>12}")
    for name, w, c in clock.rows:
        print(f"{name:<22}{w:>9.1f}{c:>9.1f}{c / args.threads:>12.1f}")
    print(f"{'total (the preset)':<22}{wall:>9.1f}{cpu:>9.1f}{cpu / args.threads:>12.1f}")
    keys = ("explained_variance", "ce_loss_recovered", "l0", "dead_fraction", "kl_divergence")
    print(f"\n{'eval set':<20}" + "".join(f"{k[:18]:>20}" for k in keys))
    for name, flat in results.items():
        print(f"{name:<20}" + "".join(f"{flat.get(k, float('nan')):>20.4f}" for k in keys))
    print(f"(load avg at the end: {os.getloadavg()})")


def main() -> None:
    args = parse()
    store, preset, tcfg, cache_opts = setup(args)
    clock, results, cache = run(args, store, preset, tcfg, cache_opts)
    report(args, tcfg, clock, results, cache)


if __name__ == "__main__":
    main()
