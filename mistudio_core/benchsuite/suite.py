"""Run the benchmark suite on one SAE: each part reads bounded amounts of text so the whole suite fits a CPU.

Budget on the built-in model (defaults): core = 64 held-out contexts (3 full forwards each for CE), shrinkage and
auto-interp reuse those contexts' activations; absorption = 1,500 prompts of ~30 tokens stopped after the hook's
layer; probing = ~4 snippets of 64 tokens per document (~2,800 snippets over four tasks), also stopped early;
auto-interp = 12 latents × (1 label + detection + fuzzing) with the labeler. Every part reports its progress
(`report(part, fraction, message)`) and checks `should_stop` between batches; a stopped run returns None.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from . import absorption as absorption_mod
from . import acts, autointerp, probing
from .results import SUITE_VERSION
from .spec import BenchSpec
from .tasks import build_task

Report = Callable[[str, float, str], None]


def _words(split: str) -> str:
    from ..sae.evals import SPLIT_WORDS

    return SPLIT_WORDS.get(split, split)


class Stopped(Exception):
    """The job was asked to stop between batches."""


def _check(value):
    if value is None:
        raise Stopped
    return value


def split_contexts(spec: BenchSpec, loaded, hook: str, tok, should_stop) -> tuple[torch.Tensor, torch.Tensor]:
    """(token ids [N, T-1], activations [N, T-1, d]) of the split's first `n_contexts` contexts, BOS left out:
    the shrinkage and auto-interp parts' text."""
    from ..sae.evals import split_tokens

    ids = split_tokens(tok, spec.split, spec.n_contexts, spec.dataset_id)
    x = _check(acts.token_acts(loaded, hook, ids, spec.batch_size, should_stop))
    return ids[:, 1:], x[:, 1:]


def core_part(spec: BenchSpec, loaded, sae, hook: str, tok, contexts, report: Report, should_stop) -> dict:
    """The stored evaluation's metrics (EV, FVU, NMSE, L0, dead, CE …, `sae/evals.py`) + shrinkage."""
    from ..sae.evals import evaluate_record

    record = _check(evaluate_record(loaded, sae, hook, tok, spec.dataset_id, spec.split, spec.n_contexts,
                                    downstream=spec.downstream, batch_size=spec.batch_size,
                                    progress=lambda f, m: report("core", 0.95 * f, m), should_stop=should_stop))
    x = contexts[1]
    with torch.no_grad():
        flat = x.reshape(-1, x.shape[-1])
        x_hat = sae(flat.to(sae.device)).float().cpu()
    record["l2_ratio"] = float((x_hat.norm(dim=1) / flat.norm(dim=1).clamp(min=1e-8)).mean())
    record["l2_ratio_formula"] = "mean over tokens of ‖x̂‖ / ‖x‖ (< 1: the SAE shrinks activations)"
    report("core", 1.0, "core metrics and shrinkage done")
    return record


def absorption_part(spec: BenchSpec, loaded, sae, hook: str, report: Report, should_stop) -> tuple[dict, str]:
    tokenizer = loaded.tokenizer
    words = absorption_mod.vocab_words(tokenizer, spec.absorption_words, spec.seed)
    rows = absorption_mod.prompt_rows(tokenizer, [i for i, _ in words])
    x = _check(acts.at_position(loaded, hook, rows, -1, progress=lambda f, m: report("absorption", 0.9 * f, m),
                                should_stop=should_stop))
    letters = [w[0].lower() for _, w in words]
    order = torch.randperm(len(words), generator=torch.Generator().manual_seed(spec.seed)).tolist()
    cut = int(0.7 * len(order))
    tr, te = order[:cut], order[cut:]
    out = absorption_mod.absorption(x[tr], [letters[i] for i in tr], x[te], [letters[i] for i in te], sae,
                                    acts.decoder_directions(sae))
    report("absorption", 1.0, f"absorption over {out['n_letters']} letters")
    where = (f"{len(words)} single-token words of {loaded.model_id}'s vocabulary ({len(tr)} fit the letter probes "
             f"and find letter latents, {len(te)} scored), read after a few-shot spelling prompt")
    return out, where


def probing_part(spec: BenchSpec, loaded, sae, hook: str, report: Report, should_stop) -> tuple[dict, str]:
    """k-sparse probing on every task; a snippet shared by tasks (the sotu ones overlap) runs through once."""
    tasks = [build_task(name, spec.probing_per_doc) for name in spec.tasks]
    texts = list(dict.fromkeys(t for task in tasks for t in task.texts))
    ids, lengths = acts.encode_texts(loaded.tokenizer, texts, spec.probing_tokens)
    raw, lat = _check(acts.pooled(loaded, hook, sae, ids, lengths, progress=lambda f, m: report(
        "probing", 0.9 * f, m), should_stop=should_stop))
    row = {t: i for i, t in enumerate(texts)}
    results = {}
    for task in tasks:
        rows = torch.tensor([row[t] for t in task.texts])
        results[task.name] = probing.probe_task(task, raw[rows], lat[rows], seed=spec.seed)
    report("probing", 1.0, "; ".join(f"{n}: k=1 {r['k1']:.3f}" for n, r in results.items()))
    where = "; ".join(dict.fromkeys(f"{r['source']}" for r in results.values()))
    return {"summary": probing.summarize(results), "tasks": results, "n_snippets": len(texts),
            "snippet_tokens": spec.probing_tokens,
            "split": "documents split 70/30 per class (probes fit on 70%, scored on 30%)"}, where


def autointerp_part(spec: BenchSpec, loaded, sae, contexts, store, api_key, report: Report) -> tuple[dict, str]:
    from ..platform.errors import MistudioError

    ids, x = contexts
    with torch.no_grad():
        z = sae.encode(x.to(sae.device)).float().cpu()
    try:
        out = autointerp.score_latents(z, ids, loaded.tokenizer, spec.labeler, api_key, store=store,
                                       n_latents=spec.autointerp_latents, seed=spec.seed,
                                       progress=lambda f, m: report("autointerp", f, m))
    except MistudioError as err:  # the labeler is down or refuses: the other parts' numbers still count
        out = {"error": str(err), "score": None}
    report("autointerp", 1.0, "auto-interpretation done")
    where = (f"examples from {spec.dataset_id} {_words(spec.split)} contexts ({len(ids)}); labeler "
             f"{spec.labeler.get('model')} at {spec.labeler.get('base_url')}")
    return out, where


def run_suite(spec: BenchSpec, loaded, sae, hook: str, tok, store=None, api_key: str | None = None,
              report: Report | None = None, should_stop: Callable[[], bool] | None = None) -> dict | None:
    """The result record of every part of `spec` (see results.py), or None when stopped."""
    report = report or (lambda part, frac, msg: None)
    record = {"suite_version": SUITE_VERSION, "dataset_id": spec.dataset_id, "split": spec.split,
              "model_id": loaded.model_id, "hook_name": hook, "parts": spec.parts, "spec": spec.to_dict(),
              "seconds": {}, "provenance": {}}
    try:
        contexts = split_contexts(spec, loaded, hook, tok, should_stop) \
            if {"core", "autointerp"} & set(spec.parts) else None
        for part in spec.parts:
            t0 = time.perf_counter()
            if part == "core":
                record["core"] = core = core_part(spec, loaded, sae, hook, tok, contexts, report, should_stop)
                record["provenance"]["core"] = (f"{spec.dataset_id} {_words(spec.split)} contexts "
                                                f"({core['n_contexts']}, {core['n_tokens']} tokens)")
            elif part == "absorption":
                record["absorption"], record["provenance"]["absorption"] = absorption_part(
                    spec, loaded, sae, hook, report, should_stop)
            elif part == "probing":
                record["probing"], record["provenance"]["probing"] = probing_part(
                    spec, loaded, sae, hook, report, should_stop)
            elif part == "autointerp":
                record["autointerp"], record["provenance"]["autointerp"] = autointerp_part(
                    spec, loaded, sae, contexts, store, api_key, report)
            record["seconds"][part] = round(time.perf_counter() - t0, 2)
    except Stopped:
        return None
    record["created"] = time.time()
    return record
