"""Feature absorption on SAEBench's first-letter task (Chanin et al. 2024, "A is for Absorption"), compactly.

1. Words: single vocabulary tokens that are a space and ≥ 2 ASCII letters. Each is read after a few-shot
   spelling prompt ("... cat has the first letter: C\\n <word>"), at the word's own position (the model is
   causal: the question that would follow cannot change that activation, so it is not run).
2. A linear probe per letter (one-vs-rest logistic regression on the raw activations of training words) gives
   the ground truth "this word starts with L" and its direction p̂_L (unit norm, raw activation space).
3. The letter's main latents, from the SAE's codes of the training words: the latent whose firing best predicts
   the letter (F1), then up to `max_main` − 1 more while the F1 of "any of them fires" rises by ≥ `f1_jump`
   (feature splitting: a second latent covering a real share of the letter is part of it, not an absorber).
4. On test words of L that the probe gets right, latent i contributes c_i = z_i · (d_i·p̂) along the probe
   (d_i: what one unit of i adds to the reconstruction) and the activation has P = (x − x̂(0))·p̂ there
   (x̂(0) = the SAE's output for zero codes, i.e. its decoder bias). Per word:
   - full absorption: every main latent is silent, the top contributor has cos(d_i, p̂) ≥ 0.025 and carries
     ≥ 40% of P (a single other latent stands in for the letter);
   - absorption fraction: with A = the largest ≤ 3 contributions of other latents with cos ≥ 0.1 and M = the main
     latents' contribution: 0 if M ≥ P or A < 0.4·P, 1 if M ≤ 0, else min(A, P − M) / (min(A, P − M) + M);
   - miss: every main latent is silent where the probe says the letter is there.
   Thresholds are SAEBench's. A letter is scored when it has ≥ `min_words` training and test words.
Scores are means over scored letters. Differences from SAEBench: one fixed few-shot prefix instead of shuffled
ones, F1 of latent firing instead of a k-sparse probe's F1 to find split latents, and P measured from the
decoder bias (SAEBench projects the raw activation, bias included).
"""
from __future__ import annotations

import re
import string

import torch

from .linear import fit_logistic

LETTERS = string.ascii_lowercase
PREFIX = " tartan has the first letter: T\n mirror has the first letter: M\n bubble has the first letter: B\n"
WORD = re.compile(r"^[Ġ▁][A-Za-z]{2,}$")  # byte-level BPE (Ġ) or sentencepiece (▁) space
EPS = 1e-8
FULL_COS, FRACTION_COS, SHARE, MAX_ABSORBERS = 0.025, 0.1, 0.4, 3


def vocab_words(tokenizer, n_words: int, seed: int = 0) -> list[tuple[int, str]]:
    """Up to `n_words` (token id, word) pairs of single-token space-led alphabetic words, a seeded sample."""
    vocab = tokenizer.get_vocab()
    found = sorted((i, t[1:]) for t, i in vocab.items() if WORD.match(t))
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(found), generator=g)[:n_words].tolist()
    return [found[j] for j in sorted(order)]


def prompt_rows(tokenizer, word_ids: list[int]) -> torch.Tensor:
    """[N, T] rows `BOS + PREFIX + word`, equal length; the word is the last position."""
    from .acts import bos_id

    prefix = tokenizer(PREFIX, add_special_tokens=False)["input_ids"]
    bos = bos_id(tokenizer)
    head = ([bos] if bos is not None else []) + list(prefix)
    return torch.tensor([head + [w] for w in word_ids], dtype=torch.long)


def _f1(fires: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """F1 of each column of `fires` [N, F] as a predictor of `y` [N]."""
    tp = (fires & y[:, None]).sum(0).float()
    return 2 * tp / (fires.sum(0).float() + y.sum().float()).clamp(min=1)


def main_latents(fires: torch.Tensor, y: torch.Tensor, max_main: int = 3, f1_jump: float = 0.03) -> list[int]:
    """The letter's latents: best single F1, then greedy additions while the OR's F1 rises by ≥ `f1_jump`."""
    f1 = _f1(fires, y)
    chosen, best = [int(f1.argmax())], float(f1.max())
    current = fires[:, chosen[0]].clone()
    while len(chosen) < max_main:
        f1 = _f1(current[:, None] | fires, y)
        f1[chosen] = -1
        j = int(f1.argmax())
        if float(f1[j]) < best + f1_jump:
            break
        chosen.append(j)
        best, current = float(f1[j]), current | fires[:, j]
    return chosen


def word_scores(z: torch.Tensor, total: torch.Tensor, along: torch.Tensor, cos: torch.Tensor,
                main: list[int]) -> dict[str, torch.Tensor]:
    """Per-word full absorption, absorption fraction and miss (see the module docstring) for codes `z` [N, F],
    probe projections `total` [N], per-latent projection `along` [F] and cosine `cos` [F] of the decoder."""
    contrib = z * along
    main_t = torch.tensor(main)
    silent = (z[:, main_t] < EPS).all(1)
    m = contrib[:, main_t].sum(1)
    top_val, top_idx = contrib.max(1)
    full = silent & (cos[top_idx] >= FULL_COS) & (total > 0) & (top_val >= SHARE * total)
    others = torch.ones(z.shape[1], dtype=torch.bool)
    others[main_t] = False
    cand = torch.where((others & (cos >= FRACTION_COS))[None, :] & (contrib > 0), contrib, torch.zeros(()))
    a = cand.topk(min(MAX_ABSORBERS, z.shape[1]), dim=1).values.sum(1)
    absorbed = torch.minimum(a, total - m)
    frac = (absorbed / (absorbed + m).clamp(min=EPS)).clamp(0, 1)
    frac = torch.where((m >= total) | (a < SHARE * total), torch.zeros(()), torch.where(m <= 0, torch.ones(()), frac))
    return {"full": full.float(), "fraction": frac, "miss": silent.float()}


def absorption(x_train: torch.Tensor, letters_train: list[str], x_test: torch.Tensor, letters_test: list[str],
               sae, directions: torch.Tensor, min_words: int = 5, max_main: int = 3, f1_jump: float = 0.03) -> dict:
    """Absorption scores of `sae` from word activations (see the module docstring); `directions` [d_sae, d_in]
    from `acts.decoder_directions(sae)`."""
    scored = [c for c in LETTERS if letters_train.count(c) >= min_words and letters_test.count(c) >= min_words]
    if not scored:
        return {"n_letters": 0, "letters": {}}
    y_tr = torch.tensor([[lab == c for c in scored] for lab in letters_train], dtype=torch.float32)
    probe = fit_logistic(x_train, y_tr, l2=1e-3)
    with torch.no_grad():
        z_tr = sae.encode(x_train.to(sae.device)).float().cpu()
        z_te = sae.encode(x_test.to(sae.device)).float().cpu()
        bias = sae.decode(torch.zeros(1, sae.cfg.d_sae, device=sae.device)).float().cpu()[0]
    logits = probe.logits(x_test)
    truth = torch.tensor([scored.index(c) if c in scored else -1 for c in letters_test])
    known = truth >= 0
    probe_acc = float((logits[known].argmax(1) == truth[known]).float().mean())
    norms = directions.norm(dim=1).clamp(min=EPS)
    letters = {}
    for j, c in enumerate(scored):
        p = probe.direction[j] / probe.direction[j].norm()
        main = main_latents(z_tr > EPS, y_tr[:, j].bool(), max_main, f1_jump)
        rows = (truth == j) & (logits[:, j] > 0)
        if not rows.any():
            continue
        along = directions @ p
        s = word_scores(z_te[rows], (x_test[rows] - bias) @ p, along, along / norms, main)
        letters[c] = {"main_latents": main, "n_words": int(rows.sum()), "full_absorption": float(s["full"].mean()),
                      "absorption_fraction": float(s["fraction"].mean()), "miss_rate": float(s["miss"].mean())}

    def mean(key):
        return sum(v[key] for v in letters.values()) / len(letters) if letters else None

    return {"absorption_rate": mean("full_absorption"), "absorption_fraction": mean("absorption_fraction"),
            "main_miss_rate": mean("miss_rate"), "probe_accuracy": probe_acc, "n_letters": len(letters),
            "split_latents": sum(len(v["main_latents"]) for v in letters.values()) / len(letters) if letters else None,
            "letters": letters}
