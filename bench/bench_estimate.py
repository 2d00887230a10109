"""Validate's estimate against the actual run, phase by phase, for training presets on the built-in model.

    .venv/bin/python bench/bench_estimate.py [--preset quick --preset quality] [--eval-contexts 64] [--home DIR]

For each preset: (1) `validate_training` with the preset's cache options (a fresh process, so the estimate pays
the model load and a few-second probe of capture, full forward and SAE step on this machine); (2) the run itself
(bench/quality_preset.py's phases, with the preset's cache deleted first so capture is measured); (3) a table of
estimated vs actual seconds per phase and the ratio. Both are wall times on the machine as it is: on a shared,
busy machine the probe sees the same load as the run, so the ratio stays meaningful even when the seconds do not
describe an idle machine (also printed: CPU-seconds of the run, and the load average).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import quality_preset as qp  # noqa: E402

from mistudio_core.sae.plan import validate_training  # noqa: E402


def one(preset_name: str, base: argparse.Namespace) -> list[tuple]:
    n_eval = qp.get_preset(preset_name).eval_contexts or base.eval_contexts  # as the job evaluates
    args = qp.parse(["--preset", preset_name, "--home", base.home, "--eval-contexts", str(n_eval),
                     "--threads", str(base.threads), "--fresh"]
                    + (["--register", f"{preset_name}-preset"] if base.register else []))
    store, preset, tcfg, cache_opts = qp.setup(args)
    for m in qp.actcache.list_caches(store):  # the estimate must see the capture the run will do
        if m["identity"]["dataset_id"] == qp.DATASET and m["identity"]["model_id"] == qp.MODEL:
            qp.actcache.delete_cache(store, m["id"])
    t0 = time.perf_counter()
    plan = validate_training(store, qp.MODEL, qp.DATASET, [preset.hook], tcfg, cache=cache_opts,
                             eval_contexts=args.eval_contexts,  # out-of-domain evaluations are extra phases
                             model_dtype=preset.model_dtype)
    validate_s = time.perf_counter() - t0
    clock, results, cache = qp.run(args, store, preset, tcfg, cache_opts)
    qp.report(args, tcfg, clock, results, cache)
    actual: dict[str, list[float]] = {}
    for name, wall, cpu in clock.rows:
        acc = actual.setdefault(name, [0.0, 0.0])
        acc[0], acc[1] = acc[0] + wall, acc[1] + cpu
    rows = [(preset_name, "validate (probe)", None, validate_s, None)]
    for phase in ("load", "capture", "training", "evaluation"):
        est = plan.breakdown.get(phase, 0.0) if phase != "load" else 0.0  # the probe already loaded the model
        wall, cpu = actual.get(phase, [0.0, 0.0])
        rows.append((preset_name, phase, est, wall, cpu))
    job = [v for k, v in actual.items() if not k.startswith("extra")]  # out-of-domain scoring is not the preset's
    rows.append((preset_name, "total", plan.seconds - plan.breakdown.get("load", 0.0),
                 sum(v[0] for v in job), sum(v[1] for v in job)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", action="append")
    ap.add_argument("--home", default=os.environ.get("MISTUDIO_TEST_HOME",
                                                     str(Path.home() / ".cache" / "mistudio-test-home")))
    ap.add_argument("--eval-contexts", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--register", action="store_true", help="keep each preset's SAE in the library")
    base = ap.parse_args()
    rows = []
    for name in base.preset or ["quick", "quality"]:
        rows += one(name, base)
    print(f"\n{'preset':<9}{'phase':<18}{'estimate s':>12}{'actual s':>10}{'actual/est':>12}{'cpu s':>9}")
    for preset, phase, est, wall, cpu in rows:
        ratio = f"{wall / est:.2f}" if est else "—"
        print(f"{preset:<9}{phase:<18}{(f'{est:.1f}' if est is not None else '—'):>12}{wall:>10.1f}{ratio:>12}"
              f"{(f'{cpu:.1f}' if cpu is not None else '—'):>9}")
    print(f"(load average {os.getloadavg()}; goal: actual/estimate within 0.7–1.3 on an idle machine)")


if __name__ == "__main__":
    main()
