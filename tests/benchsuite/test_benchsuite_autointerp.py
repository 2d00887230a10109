"""Auto-interpretation score through the labeling module against the fake OpenAI server: a latent that fires on
one word (the fake labeler's label names it) scores perfectly, a latent firing at random scores chance."""
from __future__ import annotations

import torch

from mistudio_core.benchsuite.autointerp import eligible_latents, score_latents
from fake_openai_server import FakeOpenAI

VOCAB = [" the", " cat", " sat", " on", " a", " mat", " and", " ran", " far", " away", " word3"]
WORD3 = VOCAB.index(" word3")


class Tok:
    def decode(self, ids):
        return "".join(VOCAB[i] for i in ids)


def _codes(n: int = 40, t: int = 24, width: int = 10):
    """Latent 3 fires exactly on " word3" (in half of the contexts); latent 7 fires at random places."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, WORD3, (n, t), generator=g)
    ids[::2, 10] = WORD3
    z = torch.zeros(n, t, width)
    z[:, :, 3] = (ids == WORD3).float() * 2.0
    z[1::2, 5, 7] = 1.5  # the other half of the contexts, an arbitrary position
    return ids, z


def test_interpretable_latent_scores_high_random_latent_scores_chance():
    ids, z = _codes()
    assert eligible_latents(z, 5, 5) == [3, 7]
    server = FakeOpenAI().start()
    try:
        out = score_latents(z, ids, Tok(), {"base_url": server.url, "model": "fake-model"}, "sk-test",
                            n_latents=2, n_show=5, n_score=5)
    finally:
        server.stop()
    by_latent = {r["latent"]: r for r in out["latents"]}
    assert by_latent[3]["label"] == "word3"
    assert by_latent[3]["detection"]["balanced_accuracy"] == 1.0
    assert by_latent[3]["fuzzing"]["balanced_accuracy"] == 1.0
    assert by_latent[7]["detection"]["balanced_accuracy"] == 0.5
    assert out["n_scored"] == 2 and 0.5 < out["score"] < 1.0
    assert out["labeler"] == {"base_url": server.url, "model": "fake-model"}
    assert "sk-test" not in repr(out)
