"""Auto-interpretation score: label a random sample of live latents with the configured labeler and score each
label by detection and fuzzing (the labeling module's own `engine.label_one`: same prompts, parser, scorers).

Examples come from the suite's evaluation contexts (held-out slice): for each sampled latent, its contexts are
ranked by the latent's peak; the top `n_show` are shown to the labeler, `n_score` of the remaining firing ones
are held out as positives, and `n_score` contexts where the latent never fires at all are the negatives (exact
negatives: the labeling job, which only has top examples, has to guess them). A latent is eligible when it fires
in at least `n_show + n_score` contexts. Scores (balanced accuracy, chance 0.5):

    detection = does the label say which snippets contain the latent?   fuzzing = which tokens?
    score     = (detection + fuzzing) / 2, mean over the latents whose label and scores came back.
"""
from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

from ..labeling.client import ProviderConfig, make_client
from ..labeling.engine import label_one
from ..labeling.spec import LabelSpec


def _token_strings(tokenizer, ids: torch.Tensor) -> list[list[str]]:
    cache: dict[int, str] = {}
    return [[cache.setdefault(int(t), tokenizer.decode([int(t)])) for t in row] for row in ids.tolist()]


def _example(tokens: list[str], acts: torch.Tensor, ctx: int, peak: int | None = None) -> dict:
    peak = int(acts.argmax()) if peak is None else peak
    return {"tokens": tokens, "acts": [round(float(a), 4) for a in acts], "peak": peak, "context_id": ctx}


def latent_examples(z: torch.Tensor, strings: list[list[str]], latent: int, n_show: int, n_score: int,
                    rng: random.Random) -> tuple[dict, list]:
    """(feature dict for `label_one`, negative pool) of one latent from codes `z` [N, T, d_sae]."""
    acts = z[:, :, latent]
    peaks = acts.max(1).values
    firing = [int(i) for i in torch.argsort(peaks, descending=True) if peaks[i] > 0]
    silent = [int(i) for i in torch.nonzero(peaks <= 0).flatten()]
    shown, rest = firing[:n_show], firing[n_show:]
    held = rng.sample(rest, min(n_score, len(rest)))
    top = [_example(strings[i], acts[i], i) for i in shown + held]
    negatives = [(-1, _example(strings[i], acts[i], i, peak=rng.randrange(1, acts.shape[1])))
                 for i in rng.sample(silent, min(n_score, len(silent)))]
    feature = {"top_examples": top, "quantile_examples": [], "max_activation": float(peaks.max()),
               "frequency": float((acts > 0).float().mean()), "top_logits": [], "bottom_logits": []}
    return feature, negatives


def eligible_latents(z: torch.Tensor, n_show: int, n_score: int) -> list[int]:
    """Latents firing in at least n_show + n_score contexts and silent in at least n_score."""
    fired = (z.amax(1) > 0).sum(0)
    return torch.nonzero((fired >= n_show + n_score) & (fired <= z.shape[0] - n_score)).flatten().tolist()


def score_latents(z: torch.Tensor, ids: torch.Tensor, tokenizer, provider: dict, api_key: str | None,
                  store=None, n_latents: int = 12, n_show: int = 8, n_score: int = 5, seed: int = 0,
                  concurrency: int = 4, progress: Callable[[float, str], None] | None = None) -> dict:
    """Label and score a seeded sample of eligible latents of codes `z` [N, T, d_sae] on token rows `ids`."""
    rng = random.Random(seed)
    pool = eligible_latents(z, n_show, n_score)
    chosen = sorted(rng.sample(pool, min(n_latents, len(pool))))
    cfg = ProviderConfig.from_dict(provider)
    spec = LabelSpec(sae_id="benchmark", provider=cfg.to_dict(), n_top_examples=n_show, n_quantile_examples=0,
                     n_score_examples=n_score, seed=seed)
    client = make_client(cfg, api_key, store=store)
    strings = _token_strings(tokenizer, ids)
    work = [(i, *latent_examples(z, strings, i, n_show, n_score, random.Random(seed * 7919 + i))) for i in chosen]
    done, rows = 0, []

    def one(item):
        i, feature, negatives = item
        return label_one(client, spec, i, feature, negatives)

    workers = 1 if cfg.is_local else max(1, concurrency)
    with ThreadPoolExecutor(workers, thread_name_prefix="bench-label") as ex:
        for out in ex.map(one, work):
            done += 1
            rows.append({"latent": out.index, "label": (out.label or {}).get("label"), "error": out.error or None,
                         "detection": out.score, "fuzzing": out.fuzz})
            if progress:
                progress(done / max(len(work), 1), f"labeled and scored {done}/{len(work)} latents")
    return summarize(rows, eligible=len(pool), provider=cfg)


def summarize(rows: list[dict], eligible: int, provider: ProviderConfig) -> dict:
    scored = [r for r in rows if r["detection"] and r["fuzzing"]]

    def mean(key):
        return sum(r[key]["balanced_accuracy"] for r in scored) / len(scored) if scored else None

    det, fuz = mean("detection"), mean("fuzzing")
    return {"score": (det + fuz) / 2 if scored else None, "detection": det, "fuzzing": fuz, "chance": 0.5,
            "n_scored": len(scored), "n_failed": len(rows) - len(scored), "n_eligible": eligible,
            "labeler": {"base_url": provider.base_url, "model": provider.model}, "latents": rows}
