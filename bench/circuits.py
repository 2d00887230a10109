"""Attribution graphs on the built-in model: do the graph's top nodes carry the prediction? (issue 28)

For each prompt with a clear next token, the target is the margin m = logit(top-1) − logit(runner-up) at the last
position. The graph (`circuits.service.build_graph`, minus="runner-up") ranks feature nodes by effect; the top N
feature nodes (largest positive effect, error and token nodes excluded) are ablated together (`intervene.run_with`,
scale 0) and the share of the margin removed is (m − m_ablated) / m. Two baselines, each the mean of --draws draws
of N random active features (never a top node, never at position 0, which has no feature nodes: see
GraphSettings.start_features): `layers`, as many per SAE as the top N have (the issue's control); `positions`, as
many per SAE *and position* (the stricter control: the top nodes sit mostly at the last positions, where any feature
moves the logits most). Beside each, the mean |change| of the margin in logits, to read a small margin's
percentages by. Also timed: one graph for a 20-token prompt (wall and CPU seconds, tokens per CPU-second).

    python bench/circuits.py --home ~/.cache/mistudio-circuits-home [--sae ID ...] [--top 5,10,20] [--draws 5]
        [--min-margin LOGITS]

Without --sae it takes, per hook of the `circuits` preset, the newest SAE of the built-in model at that hook.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mistudio_core.model import hooks  # noqa: E402
from mistudio_core.circuits import service  # noqa: E402
from mistudio_core.circuits.graph import feature_nodes, logit_target  # noqa: E402
from mistudio_core.circuits.intervene import run_with  # noqa: E402
from mistudio_core.data.defaults import BUILTIN_MODEL_ID  # noqa: E402
from mistudio_core.sae.presets import CIRCUIT_HOOKS  # noqa: E402
from mistudio_core.platform.store import Store  # noqa: E402

PROMPTS = ["The capital of France is", "The opposite of hot is", "Monday, Tuesday, Wednesday,",
           "One, two, three, four,", "The sun rises in the", "January, February, March,",
           "The Eiffel Tower is in the city of", "Twinkle, twinkle, little", "A, B, C, D,",
           "The first president of the United States was George"]
# More candidates, read in order after PROMPTS when --min-margin skips some (the rule is fixed before any ablation:
# a prompt has "a clear next token" when the unablated model's top-1 beats its runner-up by >= --min-margin logits).
MORE_PROMPTS = ["Once upon a", "Romeo and", "The Statue of", "The Great Wall of", "Thank you very",
                "Ladies and", "The quick brown fox jumps over the lazy", "The United States of",
                "Peanut butter and", "The capital of Germany is", "The capital of Japan is", "Two plus two equals",
                "Harry Potter and the Philosopher's", "Water freezes at zero degrees"]
LONG = ("In the year nineteen hundred and twenty, the people of the small town gathered in the square to hear the")


def pick_saes(store: Store) -> list[str]:
    newest: dict[str, dict] = {}
    for m in store.list("saes"):
        if m.get("model_id") == BUILTIN_MODEL_ID and m.get("hook_name") in CIRCUIT_HOOKS:
            if m["hook_name"] not in newest or (m.get("created") or 0) > (newest[m["hook_name"]].get("created") or 0):
                newest[m["hook_name"]] = m
    if not newest:
        sys.exit("No SAEs of the built-in model at the circuits hooks: run "
                 "`python -m mistudio_core train --preset circuits` first, or pass --sae.")
    return [newest[h]["id"] for h in CIRCUIT_HOOKS if h in newest]


def clean_codes(model, sites, ids) -> list[list[tuple[int, int]]]:
    acts = hooks.capture(model, ids.reshape(1, -1), [s.hook for s in sites])
    out = []
    with torch.no_grad():
        for s in sites:
            codes = s.sae.encode(acts[s.hook][0].float())
            out.append([(p, f) for p, f in torch.nonzero(codes).tolist()])
    return out


def random_nodes(chosen: list[dict], active, rng, same_positions: bool) -> list[dict]:
    """As many random active features as `chosen` has per SAE — and, with `same_positions`, per SAE and position —
    none of them one of `chosen`, none at position 0 (which has no feature nodes: GraphSettings.start_features)."""
    taken = {(n["site"], n["pos"], n["feature"]) for n in chosen}
    counts = Counter((n["site"], n["pos"] if same_positions else -1) for n in chosen)
    nodes = []
    for (s, p), k in sorted(counts.items()):
        pool = [(q, f) for q, f in active[s - 1] if q > 0 and p in (-1, q) and (s, q, f) not in taken]
        nodes += [dict(kind="feature", site=s, pos=q, feature=f) for q, f in rng.sample(pool, min(k, len(pool)))]
    return nodes


def ablation(model, sites, ids, target, m0, chosen, active, draws, rng) -> dict:
    """Share of the margin removed by `chosen` together (`top`), and per control — N random active features of
    the same SAEs (`layers`), of the same SAEs and positions (`positions`) — the mean share over `draws` draws and
    the mean |change| in logits."""
    out = dict(top=(m0 - run_with(model, sites, ids, chosen, 0.0, target)) / m0)
    for name, same_pos in (("layers", False), ("positions", True)):
        changes = [run_with(model, sites, ids, random_nodes(chosen, active, rng, same_pos), 0.0, target) - m0
                   for _ in range(draws)]
        out[name] = statistics.mean(-c / m0 for c in changes)
        out[name + "_abs"] = statistics.mean(abs(c) for c in changes)
    return out


def one_prompt(store, model, sites, sae_ids, prompt, tops, draws, rng, settings, min_margin=0.0) -> dict:
    """The prompt's row; only its margin (`skipped`) when that is under `min_margin`, before any ablation."""
    g = service.build_graph(store, sae_ids, prompt, minus="runner-up", settings=settings, save=False)
    ids = torch.tensor(g["token_ids"])
    target = logit_target(g["target"]["token_id"], g["target"]["minus_id"])
    m0 = run_with(model, sites, ids, [], 1.0, target)
    if m0 < min_margin:
        return dict(prompt=prompt, target=g["target"]["token"], minus=g["target"]["minus"], margin=m0, skipped=True)
    ranked = [n for n in feature_nodes(g) if n["effect"] > 0]
    active = clean_codes(model, sites, ids)
    by_n = {n: ablation(model, sites, ids, target, m0, ranked[:n], active, draws, rng) for n in tops}
    return dict(prompt=prompt, target=g["target"]["token"], minus=g["target"]["minus"], margin=m0, by_n=by_n,
                predicted={n: sum(x["effect"] for x in ranked[:n]) / m0 for n in tops}, graph_s=g["seconds"],
                nodes=len(g["nodes"]), edges=len(g["edges"]), n_ranked=len(ranked))


def timing(store, sae_ids, tokenizer, settings) -> dict:
    words = LONG.split()
    prompt = " ".join(words)
    while len(tokenizer(prompt)["input_ids"]) > 19:  # 19 + BOS = 20 tokens
        words = words[:-1]
        prompt = " ".join(words)
    t0, c0 = time.perf_counter(), time.process_time()
    g = service.build_graph(store, sae_ids, prompt, settings=settings, save=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return dict(tokens=len(g["token_ids"]), wall=wall, cpu=cpu, nodes=len(g["nodes"]), edges=len(g["edges"]))


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children (all threads)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def train_preset(home: str, steps: int | None) -> list[str]:
    """Train the `circuits` preset end to end (capture, ten SAEs, evaluation) in this process, as
    `python -m mistudio_core train --preset circuits` does; print wall, CPU-s and the load average seen during
    it (sampled every 30 s: the machine is shared). Returns the new SAEs' ids."""
    from mistudio_core.cli import main as cli
    from mistudio_core.data.defaults import ensure_builtins

    store = Store(home)
    ensure_builtins(store)  # model conversion and tokenization: not part of the measured run
    loads, stop = [os.getloadavg()[0]], threading.Event()

    def sample() -> None:
        while not stop.wait(30):
            loads.append(os.getloadavg()[0])
    threading.Thread(target=sample, daemon=True).start()
    before = {m["id"] for m in store.list("saes")}
    argv = ["--home", home, "--json", "train", "--preset", "circuits", "--name", "circuits-bench"]
    if steps:  # a shorter run: the preset's warm-up and decay shrink in proportion
        from mistudio_core.sae.presets import get_preset

        t = get_preset("circuits").train
        argv += ["--steps", str(steps), "--lr-warmup-steps", str(max(1, t["lr_warmup_steps"] * steps // t["steps"])),
                 "--lr-decay-steps", str(t["lr_decay_steps"] * steps // t["steps"])]
    t0, c0 = time.perf_counter(), cpu_seconds()
    rc = cli(argv)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    stop.set()
    if rc != 0:
        sys.exit(f"training failed (exit {rc})")
    new = [m["id"] for m in store.list("saes") if m["id"] not in before and m.get("hook_name") in CIRCUIT_HOOKS]
    print(f"train --preset circuits{f' --steps {steps}' if steps else ''}: {len(new)} SAEs, {wall:.0f} s wall, "
          f"{cpu:.0f} CPU-s (idle 2-core estimate CPU-s/2 = {cpu / 2:.0f} s), load average 1-min "
          f"{min(loads):.1f}–{max(loads):.1f} (mean {sum(loads) / len(loads):.1f}) on {os.cpu_count()} CPUs",
          flush=True)
    return new


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--sae", action="append")
    ap.add_argument("--top", default="5,10,20", help="numbers of top feature nodes ablated together (comma list)")
    ap.add_argument("--draws", type=int, default=5, help="random draws per prompt")
    ap.add_argument("--max-nodes", type=int, default=80)
    ap.add_argument("--prompts", type=int, default=len(PROMPTS), help="how many prompts to bench")
    ap.add_argument("--min-margin", type=float, default=0.0, help="bench only prompts whose top-1 beats the "
                    "runner-up by this many logits (unablated), reading MORE_PROMPTS after PROMPTS; 0: PROMPTS as is")
    ap.add_argument("--train", action="store_true", help="first train the circuits preset here, timed (wall, CPU-s, "
                    "load), and bench its SAEs")
    ap.add_argument("--train-steps", type=int, help="with --train: override the preset's steps (a shorter run)")
    args = ap.parse_args()
    torch.manual_seed(0)
    trained = train_preset(args.home, args.train_steps) if args.train else None
    store = Store(args.home)
    sae_ids = args.sae or trained or pick_saes(store)
    settings = dict(max_nodes=args.max_nodes, node_share=0.8)
    loaded, sites, _ = service.load_sites(store, sae_ids)
    print(f"SAEs: {', '.join(s.hook.split('.')[1] for s in sites)} (layers) · top {args.top} · {args.draws} draws · "
          f"torch threads {torch.get_num_threads()}")
    rng = random.Random(0)
    tops = [int(x) for x in args.top.split(",")]
    t = timing(store, sae_ids, loaded.tokenizer, settings)
    print(f"graph for a {t['tokens']}-token prompt over {len(sites)} SAEs: {t['wall']:.1f} s wall, {t['cpu']:.1f} "
          f"CPU-s ({t['tokens'] / t['cpu']:.2f} tokens per CPU-second), {t['nodes']} nodes, {t['edges']} edges",
          flush=True)
    cols = " | ".join(f"top {n} / random {n}: layers, layers+positions / predicted" for n in tops)
    print(f"| prompt | target − runner-up | margin | graph nodes | {cols} | random {tops[0]}: mean abs. Δ, logits "
          "| graph s |")
    print("|---|---|---|---|" + "---|" * len(tops) + "---|---|")
    rows = []
    skipped = []
    for p in PROMPTS + MORE_PROMPTS:  # each row as soon as it is measured (a cut-short run keeps its rows)
        if len(rows) == args.prompts:
            break
        r = one_prompt(store, loaded.model, sites, sae_ids, p, tops, args.draws, rng, settings, args.min_margin)
        if r.get("skipped"):
            skipped.append(f"{p!r} ({r['target']!r} − {r['minus']!r} {r['margin']:.2f})")
            continue
        rows.append(r)
        cells = " | ".join(f"{r['by_n'][n]['top']:.0%} / {r['by_n'][n]['layers']:.0%}, {r['by_n'][n]['positions']:.0%}"
                           f" / {r['predicted'][n]:.0%}" for n in tops)
        moved = f"{r['by_n'][tops[0]]['layers_abs']:.2f}, {r['by_n'][tops[0]]['positions_abs']:.2f}"
        print(f"| {r['prompt']!r} | {r['target']!r} − {r['minus']!r} | {r['margin']:.2f} | {r['nodes']} | {cells} | "
              f"{moved} | {r['graph_s']:.1f} |", flush=True)
    print()
    if skipped:
        print(f"skipped, margin under {args.min_margin:g} logits: {'; '.join(skipped)}")
    for n in tops:
        rem = [r["by_n"][n]["top"] for r in rows]
        line = (f"top {n}: median removed {statistics.median(rem):.0%}, ≥50% on {sum(x >= 0.5 for x in rem)}/"
                f"{len(rem)}")
        for ctrl in ("layers", "positions"):
            rnd = [r["by_n"][n][ctrl] for r in rows]
            moved = [r["by_n"][n][ctrl + "_abs"] for r in rows]
            line += (f" · {n} random ({ctrl}): median {statistics.median(rnd):.0%}, ≤10% on "
                     f"{sum(x <= 0.1 for x in rnd)}/{len(rnd)}, mean |Δ margin| {statistics.mean(moved):.2f} logits")
        print(line)


if __name__ == "__main__":
    main()
