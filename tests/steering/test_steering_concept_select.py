"""Concept features chosen by what they write (`concept_select`): a planted feature that *is* the concept's direction
is found first and steered at the strength that reproduces the vector; the opposite direction is never chosen."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.steering import concept as C
from mistudio_core.steering import concept_select as S
from steering_helpers import tiny_target

POS = ["THE STATE OF THE UNION IS STRONG!", "WE THE PEOPLE!", "FELLOW CITIZENS OF THE SENATE!"]
NEG = ["The state of the union is strong.", "We the people.", "Fellow citizens of the Senate."]
PLANT, OPPOSITE = 7, 11


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    t = tiny_target(tmp_path_factory.mktemp("tok"))
    cv = C.concept_vector(t.model, t.tokenizer, t.sae, t.hook_name, POS, NEG, "shout")
    v = torch.tensor(cv["vector"])
    with torch.no_grad():                      # feature 7 writes exactly the concept, 11 exactly its opposite
        t.sae.W_dec[PLANT] = v / v.norm()
        t.sae.W_dec[OPPOSITE] = -v / v.norm()
    return t, cv


def test_the_feature_that_is_the_concept_is_found_first_at_the_vectors_strength(planted):
    t, cv = planted
    m = S.measure_pushes(t.model, t.tokenizer, t.sae, t.hook_name, cv["vector"], NEG)
    assert m["candidates"][0] == PLANT and m["push"][0] == pytest.approx(1.0, abs=1e-4)
    assert m["push"] == sorted(m["push"], reverse=True)
    assert OPPOSITE not in m["candidates"][:S.N_WRITERS]
    rows = S.select_writers(t.model, t.tokenizer, t.sae, t.hook_name, cv["vector"], NEG)
    assert rows[0]["index"] == PLANT and OPPOSITE not in [r["index"] for r in rows]
    # multiplier 1 = "as much as the vector": the planted unit row at strength ‖v‖ adds v itself
    assert rows[0]["strength"] == pytest.approx(cv["norm"], rel=0.05)
    assert sum(r["strength"] for r in rows[1:]) < 0.1 * cv["norm"]


def test_dead_features_are_never_candidates(planted):
    t, cv = planted
    dead = torch.zeros(t.sae.W_dec.shape[0], dtype=torch.bool)
    dead[PLANT] = True
    m = S.measure_pushes(t.model, t.tokenizer, t.sae, t.hook_name, cv["vector"], NEG, extra=[PLANT], dead=dead)
    assert PLANT not in m["candidates"]


def test_nnls_solves_a_small_nonnegative_least_squares():
    A = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    target = A @ torch.tensor([0.5, 1.5])
    c = S.nnls(A.T @ A, A.T @ target)
    assert torch.allclose(c, torch.tensor([0.5, 1.5]), atol=1e-4)
    assert float(S.nnls(A.T @ A, A.T @ (-target)).max()) == 0.0    # no negative coefficient, ever
