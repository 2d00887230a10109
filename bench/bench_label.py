"""Labeling throughput against a local fake OpenAI server that answers every request after a fixed latency
(a stand-in for an LLM), at several concurrencies, with and without detection scoring; plus the cost of saving
labels when `labels.json` already holds many.

Rows: features/s and the ratio to one request in flight. With latency L and no scoring, the ceiling is
concurrency / L features/s; scoring doubles the requests per feature.

    .venv/bin/python bench/bench_label.py [--features 32] [--latency 0.2] [--big 16384]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run from anywhere without installing

from fake_openai_server import FakeFeatures, FakeOpenAI  # noqa: E402
from mistudio_core.labeling import LabelStore  # noqa: E402
from mistudio_core.labeling.engine import label_features  # noqa: E402
from mistudio_core.labeling.spec import LabelSpec  # noqa: E402
from mistudio_core.platform.store import Store  # noqa: E402


def one_run(server, n_features: int, concurrency: int, score: bool) -> float:
    store = Store(tempfile.mkdtemp(prefix="bench-label-"))
    store.path("saes", "s").mkdir(parents=True)
    spec = LabelSpec(sae_id="s", provider={"base_url": server.url, "model": "fake"}, concurrency=concurrency,
                     score=score)
    t0 = time.perf_counter()
    totals = label_features(store, spec, None, FakeFeatures(n=n_features))
    assert totals.labeled == n_features, totals
    return n_features / (time.perf_counter() - t0)


def save_cost(n_big: int) -> float:
    """Milliseconds to add one auto label when labels.json already has `n_big` labels."""
    store = Store(tempfile.mkdtemp(prefix="bench-label-"))
    store.path("saes", "s").mkdir(parents=True)
    labels = LabelStore(store, "s")
    labels.set_auto_many([(i, {"label": f"label {i}", "description": "x" * 80,
                               "score": {"accuracy": 0.8, "chance": 0.5}}) for i in range(n_big)])
    t0 = time.perf_counter()
    for i in range(5):
        labels.set_auto(i, "again")
    return (time.perf_counter() - t0) / 5 * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--big", type=int, default=16384)
    args = ap.parse_args()
    server = FakeOpenAI(latency=args.latency).start()
    try:
        print(f"{args.features} features, {args.latency:.2f} s per request")
        print(f"{'scoring':>8} {'concurrency':>11} {'features/s':>11} {'vs 1':>6} {'ceiling':>8}")
        for score in (False, True):
            base = None
            for c in (1, 4, 8, 16):
                rate = one_run(server, args.features, c, score)
                base = base or rate
                ceiling = c / args.latency / (2 if score else 1)
                print(f"{str(score):>8} {c:>11} {rate:>11.2f} {rate / base:>5.1f}x {ceiling:>8.1f}")
    finally:
        server.stop()
    print(f"saving one label into a labels.json of {args.big:,} labels: {save_cost(args.big):.1f} ms")


if __name__ == "__main__":
    main()
