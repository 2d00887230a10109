"""Load check: 30 concurrent `gradio_client` clients poll job status and browse while a training runs.

Runs the same small training twice on the launched app — alone, then under load — and prints a table: requests,
errors (must be 0), p50/p95 latency, and the training's tokens/s alone vs. under load (the slowdown ratio), with
the machine's load average before and after (the CPU is shared: a busy machine slows both numbers).

    .venv/bin/python bench/bench_load.py [--clients 30] [--steps 60] [--home DIR]

`--home` defaults to a temp directory linked to the test suite's persistent store (SmolLM2 + sotu tokenized).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from browser import AppServer  # noqa: E402
from mistudio_core.jobs import JobRegistry  # noqa: E402
from mistudio_core.store import Store  # noqa: E402

# What a page viewer's browser asks for, with the inputs each endpoint takes (None: nothing selected yet).
BROWSE = {"header_status": (), "training_choices": ("sotu", "smollm2-135m-instruct"), "saes_list": (None,),
          "datasets_list": ("sotu", "smollm2-135m-instruct"), "models_list": ("smollm2-135m-instruct",)}


def train_args(client, steps: int) -> list:
    """`/training_start`'s arguments by their labels (the form grows; unknown fields keep their defaults)."""
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/training_start"]
    wanted = [("dataset", "sotu"), ("model", "smollm2-135m-instruct"), ("hook", ["blocks.4.hook_resid_post"]),
              ("name", "load-bench"), ("architecture", "topk"), ("expansion", 8), ("k (", 32), ("batch", 1024),
              ("steps", steps), ("activation cache", "off")]
    args = []
    for p in params["parameters"]:
        label = (p.get("label") or "").lower()
        value = next((v for key, v in wanted if label == key or label.startswith(key)), p.get("parameter_default"))
        args.append(value)
    return args


def run_job(client, store: Store, steps: int) -> tuple[str, float]:
    client.predict(*train_args(client, steps), api_name="/training_start")
    jobs = JobRegistry(store)
    job = jobs.list("train")[-1]["id"]
    while jobs.get(job)["status"] in ("queued", "running"):
        time.sleep(0.5)
    rows = [r for r in jobs.metrics_history(job) if "tokens_per_s" in r]
    rate = statistics.median(r["tokens_per_s"] for r in rows[1:] or rows) if rows else float("nan")
    return jobs.get(job)["status"], rate


def poll(url: str, stop: threading.Event, latencies: list, errors: list, i: int) -> None:
    from gradio_client import Client

    stop.wait(0.1 * i)  # users arrive over a few seconds, not in the same millisecond
    try:  # httpx's 5 s default is too short for 30 handshakes at once on a busy 2-core box; a browser waits longer
        client = Client(url, verbose=False, httpx_kwargs={"timeout": 60})
    except Exception as e:  # noqa: BLE001 — a failed connect is an error to count, not a crash
        errors.append(f"connect: {e}")
        return
    n, names = i, list(BROWSE)
    while not stop.is_set():
        name, start = names[n % len(names)], time.perf_counter()
        try:
            client.predict(*BROWSE[name], api_name="/" + name)
            latencies.append(time.perf_counter() - start)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{name}: {e}")
        n += 1
        stop.wait(0.5)


def scratch_home() -> Path:
    """A temp data directory whose model and corpus are symlinks into the test suite's persistent store (converted
    once there), so the bench's jobs and SAEs do not pile up in that store."""
    real = Store(os.environ.get("MISTUDIO_TEST_HOME", Path.home() / ".cache" / "mistudio-test-home"))
    from mistudio_core.defaults import ensure_builtins
    ensure_builtins(real)
    home = Path(tempfile.mkdtemp(prefix="mistudio-bench-load-")) / "home"
    for kind, name in (("models", "smollm2-135m-instruct"), ("datasets", "sotu")):
        (home / kind).mkdir(parents=True)
        (home / kind / name).symlink_to(real.path(kind, name))
    return home


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--home", default=None, help="data directory (default: a temp one linked to the test store)")
    args = ap.parse_args()
    load_before = os.getloadavg()
    store = Store(args.home or scratch_home())
    from mistudio_core.defaults import ensure_builtins
    ensure_builtins(store)
    from gradio_client import Client

    with AppServer(store.home, builtins=True) as app:
        client = Client(app.url, verbose=False)
        status_alone, rate_alone = run_job(client, store, args.steps)
        stop, latencies, errors = threading.Event(), [], []
        threads = [threading.Thread(target=poll, args=(app.url, stop, latencies, errors, i), daemon=True)
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        status_load, rate_load = run_job(client, store, args.steps)
        stop.set()
        for t in threads:
            t.join(30)
    lat = sorted(latencies)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
    print(f"\n{'clients':>8} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'train tok/s alone':>18} {'under load':>11} {'slowdown':>9}")
    print(f"{args.clients:>8} {len(lat):>9} {len(errors):>7} {p(0.5):>8.0f} {p(0.95):>8.0f} "
          f"{rate_alone:>18.0f} {rate_load:>11.0f} {rate_alone / rate_load:>8.2f}x")
    print(f"jobs: {status_alone}, {status_load}")
    print("load average (1/5/15 min) before: {:.2f} {:.2f} {:.2f}; after: {:.2f} {:.2f} {:.2f}; {} CPUs".format(
        *load_before, *os.getloadavg(), os.cpu_count()))
    for e in errors[:5]:
        print("error:", e)


if __name__ == "__main__":
    main()
