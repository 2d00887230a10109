"""Baseline vs steered generation, sampling, the strength sweep, on a tiny Llama with a tiny BPE tokenizer."""
from __future__ import annotations

import math

import pytest
import torch
import transformers as tf

from mistudio_core.platform.errors import ValidationError
from mistudio_core.steering.generate import (SamplingConfig, compare, compare_stream, iter_rows, pick_tokens,
                                             run_prompt_set)
from mistudio_core.steering.methods import SteerFeature, SteeringConfig
from mistudio_core.steering.sweep import parse_strengths, score_continuation, sweep
from steering_helpers import HOOK, TinySAE
from tiny_models import tiny_config
from tiny_tokenizer import make_tiny_tokenizer

PROMPT = "The state of the union is"


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    tok = make_tiny_tokenizer(tmp_path_factory.mktemp("tok"))
    cfg = tiny_config("llama")
    cfg.vocab_size, cfg.eos_token_id, cfg.bos_token_id = len(tok), tok.eos_token_id, tok.bos_token_id
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model, tok, TinySAE()


def _steer(strength, method="additive", index=3):
    return SteeringConfig([SteerFeature(index, strength)], method=method)


def test_strength_zero_reproduces_the_baseline_token_for_token(lm):
    model, tok, sae = lm
    s = SamplingConfig(max_new_tokens=24, temperature=1.0, top_p=0.95, seed=7, stop_at_eos=False)
    r = compare(model, tok, sae, HOOK, PROMPT, _steer(0.0), s)
    assert len(r["baseline_tokens"]) == 24 and r["steered_tokens"] == r["baseline_tokens"]
    strong = compare(model, tok, sae, HOOK, PROMPT, _steer(40.0), s)
    assert strong["baseline_tokens"] == r["baseline_tokens"]       # same seed, same baseline
    assert strong["steered_tokens"] != strong["baseline_tokens"]   # and steering changes the output


def test_batched_baseline_equals_a_lone_generation_and_seeds_matter(lm):
    model, tok, sae = lm
    ids = tok(PROMPT)["input_ids"]
    s = SamplingConfig(max_new_tokens=16, temperature=0.9, seed=3, stop_at_eos=False)
    alone = list(iter_rows(model, ids, 1, s))[-1][0]
    pair = compare(model, tok, sae, HOOK, PROMPT, _steer(5.0), s)
    assert pair["baseline_tokens"] == alone
    other = list(iter_rows(model, ids, 1, SamplingConfig(max_new_tokens=16, temperature=0.9, seed=4,
                                                          stop_at_eos=False)))[-1][0]
    assert other != alone


def test_greedy_matches_transformers_generate(lm):
    model, tok, _ = lm
    ids = tok(PROMPT)["input_ids"]
    ours = list(iter_rows(model, ids, 1, SamplingConfig(max_new_tokens=12, temperature=0, stop_at_eos=False)))
    ref = model.generate(torch.tensor([ids]), max_new_tokens=12, min_new_tokens=12, do_sample=False)
    assert ours[-1][0] == ref[0, len(ids):].tolist()


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    picks = {int(pick_tokens(logits, u, 1.0, 0.8)) for u in torch.linspace(0, 0.999, 50).tolist()}
    assert picks == {0, 1}
    assert int(pick_tokens(logits, 0.99, 0.0, 1.0)) == 0  # temperature 0: greedy whatever u is


def test_streaming_grows_both_columns_and_ends_done(lm):
    model, tok, sae = lm
    states = list(compare_stream(model, tok, sae, HOOK, PROMPT, _steer(8.0),
                                 SamplingConfig(max_new_tokens=6, seed=1, stop_at_eos=False)))
    assert [len(x["steered_tokens"]) for x in states[:-1]] == [1, 2, 3, 4, 5, 6]
    assert states[-1]["done"] and not states[0]["done"]


def test_sweep_scores_each_strength_under_the_unsteered_model(lm):
    model, tok, sae = lm
    s = SamplingConfig(max_new_tokens=10, temperature=0.8, seed=5, stop_at_eos=False)
    res = sweep(model, tok, sae, HOOK, PROMPT, _steer(1.0), [0.0, 4.0, 16.0], s)
    base = compare(model, tok, sae, HOOK, PROMPT, _steer(0.0), s)
    assert [r["strength"] for r in res["rows"]] == [0.0, 4.0, 16.0]
    assert res["rows"][0]["text"] == base["baseline"]
    for r in res["rows"]:
        assert r["perplexity"] > 1 and r["feature_mean"][3] >= 0


def test_perplexity_is_the_mean_nll_of_the_continuation(lm):
    model, tok, sae = lm
    p, g = tok(PROMPT)["input_ids"], tok(" strong and growing")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + g])).logits[0]
    logp = torch.log_softmax(logits, -1)
    nll = -sum(float(logp[len(p) - 1 + i, t]) for i, t in enumerate(g)) / len(g)
    sc = score_continuation(model, sae, HOOK, p, g, [3])
    assert sc["perplexity"] == pytest.approx(math.exp(nll), rel=1e-4)


def test_prompt_set_runs_every_prompt_and_chat_needs_a_template(lm):
    model, tok, sae = lm
    out = run_prompt_set(model, tok, sae, HOOK, ["One", "", "Two"], _steer(2.0), SamplingConfig(max_new_tokens=3))
    assert [o["prompt"] for o in out] == ["One", "Two"]
    with pytest.raises(ValidationError, match="chat template"):
        compare(model, tok, sae, HOOK, PROMPT, _steer(1.0), SamplingConfig(chat=True))


def test_parse_strengths():
    assert parse_strengths("-4, 0, 4") == [-4.0, 0.0, 4.0]
    assert parse_strengths("0:8:2") == [0.0, 2.0, 4.0, 6.0, 8.0]
    with pytest.raises(ValidationError, match="start:stop:step"):
        parse_strengths("a lot")
