"""Feature absorption on planted SAEs: one where token latents swallow the letter "a", one where they do not."""
from __future__ import annotations

import torch

from mistudio_core.benchsuite.absorption import absorption, main_latents
from mistudio_core.benchsuite.acts import decoder_directions
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.model import SAE

LETTERS, N_TOKENS, D = "abcd", 8, 20  # activations: 4 letter directions, 8 token directions, 8 noise dims


def _words(n_per_letter: int, seed: int):
    """x = s·e_letter (+ e_token on 20% of words, any letter) + noise; returns (x, letters)."""
    g = torch.Generator().manual_seed(seed)
    xs, labels = [], []
    for j, c in enumerate(LETTERS):
        for _ in range(n_per_letter):
            x = 0.05 * torch.randn(D, generator=g)
            x[j] += 0.8 + 0.4 * torch.rand((), generator=g)
            if torch.rand((), generator=g) < 0.2:
                x[4 + int(torch.randint(N_TOKENS, (), generator=g))] += 1.0
            xs.append(x)
            labels.append(c)
    return torch.stack(xs), labels


def _sae(absorbing: bool) -> SAE:
    """Latents 0-3: letters; 4-11: tokens; 12-19 (absorbing only): "token t AND letter a" latents."""
    d_sae = 4 + N_TOKENS + (N_TOKENS if absorbing else 0)
    sae = SAE(SAEConfig(architecture="standard", d_in=D, d_sae=d_sae))
    enc, dec, b = torch.zeros(D, d_sae), torch.zeros(d_sae, D), torch.zeros(d_sae)
    eye = torch.eye(D)
    tokens = eye[4:4 + N_TOKENS]
    for j in range(4):
        enc[:, j] = eye[j] - (2 * tokens.sum(0) if absorbing and j == 0 else 0)  # "a" goes silent under a token
        dec[j] = eye[j]
    for t in range(N_TOKENS):
        enc[:, 4 + t] = tokens[t] - (2 * eye[0] if absorbing else 0)
        dec[4 + t] = tokens[t]
        if absorbing:  # fires only on (token t, letter a) and writes both: it has absorbed "a" there
            enc[:, 12 + t], b[12 + t], dec[12 + t] = tokens[t] + eye[0], -1.3, tokens[t] + eye[0]
    with torch.no_grad():
        sae.W_enc.copy_(enc)
        sae.W_dec.copy_(dec)
        sae.b_enc.copy_(b)
        sae.b_dec.zero_()
    return sae


def _score(sae: SAE) -> dict:
    x_tr, y_tr = _words(160, seed=1)
    x_te, y_te = _words(80, seed=2)
    return absorption(x_tr, y_tr, x_te, y_te, sae, decoder_directions(sae))


def test_planted_absorber_gives_positive_absorption_and_clean_sae_none():
    absorbed, clean = _score(_sae(True)), _score(_sae(False))
    assert absorbed["probe_accuracy"] > 0.95 and clean["probe_accuracy"] > 0.95
    a = absorbed["letters"]["a"]
    assert a["main_latents"] == [0]  # each absorber covers ~2.5% of "a": not a split of it
    assert 0.1 < a["full_absorption"] < 0.35  # ~20% of "a" words carry a token
    assert a["miss_rate"] >= a["full_absorption"]
    assert all(absorbed["letters"][c]["full_absorption"] == 0 for c in "bcd")
    assert absorbed["absorption_rate"] > 0.025 and absorbed["absorption_fraction"] > 0.025
    assert clean["absorption_rate"] < 0.005 and clean["absorption_fraction"] < 0.005
    assert clean["main_miss_rate"] < 0.005


def test_feature_splitting_is_not_absorption():
    """A second latent covering half of a letter joins its main latents (F1 jumps)."""
    y = torch.tensor([True] * 40 + [False] * 60)
    fires = torch.zeros(100, 3, dtype=torch.bool)
    fires[:20, 0] = True   # half of the letter
    fires[20:40, 1] = True  # the other half
    fires[::2, 2] = True   # unrelated, fires everywhere
    assert sorted(main_latents(fires, y)) == [0, 1]
