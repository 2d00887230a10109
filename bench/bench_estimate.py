"""The one estimate (Validate = Start = the job card) against the actual job, phase by phase, for training presets
on the built-in model.

    .venv/bin/python bench/bench_estimate.py [--preset quick --preset quality] [--home DIR] [--keep-cache]

For each preset: (1) the spec `train --preset NAME` submits (`mistudio_core.spec.build`), with the preset's
activation cache deleted first so capture is measured, and its estimate (`spec.estimate`: in this fresh process
it pays the model load and a few-second probe of capture, full forward and SAE step, as Validate does); (2) that
same spec run as a job in this process (`cli.foreground.run_foreground`, the CLI's path); (3) a table of estimated
vs actual seconds per phase — load + capture, training, evaluation — and the ratio. Wall times on the machine as
it is: on a busy machine the probe sees the same load as the run, so the ratio stays meaningful when the seconds
do not describe an idle one (also printed: the run's CPU seconds and the load average).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mistudio_core.actcache import cache as actcache
from mistudio_core import spec  # noqa: E402
from mistudio_core.cli.foreground import outcome, run_foreground  # noqa: E402
from mistudio_core.data.defaults import ensure_builtins  # noqa: E402
from mistudio_core.platform.store import Store  # noqa: E402


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one(store: Store, preset: str, keep_cache: bool) -> list[tuple]:
    job_spec = spec.build("train", preset=preset, store=store, name=f"bench-estimate-{preset}")
    if not keep_cache:  # the estimate must see the capture the run will do
        for m in actcache.list_caches(store):
            if m["identity"]["model_id"] == job_spec["model_id"]:
                actcache.delete_cache(store, m["id"])
    t0 = time.perf_counter()
    plan = spec.estimate("train", job_spec, store)
    validate_s = time.perf_counter() - t0
    cpu0, w0 = _cpu_seconds(), time.perf_counter()
    record = run_foreground(store, "train", job_spec, name=job_spec["name"])
    wall, cpu = time.perf_counter() - w0, _cpu_seconds() - cpu0
    result = outcome(record)
    train_s, eval_s = result["train_seconds"], result["eval_seconds"]
    est = plan.breakdown
    return [(preset, "validate (probe)", None, validate_s),
            (preset, "load + capture", est.get("load", 0) + est.get("capture", 0), wall - train_s - eval_s),
            (preset, "training", est.get("training", 0), train_s),
            (preset, "evaluation", est.get("evaluation", 0), eval_s),
            (preset, f"total (cpu {cpu:.0f} s)", plan.seconds, wall)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", action="append")
    ap.add_argument("--home", default=os.environ.get("MISTUDIO_TEST_HOME",
                                                     str(Path.home() / ".cache" / "mistudio-test-home")))
    ap.add_argument("--keep-cache", action="store_true", help="keep matching activation caches (estimate reuse)")
    base = ap.parse_args()
    store = Store(Path(base.home))
    ensure_builtins(store)
    rows = []
    for name in base.preset or ["quick", "quality"]:
        rows += one(store, name, base.keep_cache)
    print(f"\n{'preset':<9}{'phase':<22}{'estimate s':>12}{'actual s':>10}{'actual/est':>12}")
    for preset, phase, est, wall in rows:
        ratio = f"{wall / est:.2f}" if est else "—"
        print(f"{preset:<9}{phase:<22}{(f'{est:.1f}' if est is not None else '—'):>12}{wall:>10.1f}{ratio:>12}")
    print(f"(load average {os.getloadavg()}; goal: actual/estimate within 0.7–1.3 on an idle machine)")


if __name__ == "__main__":
    main()
