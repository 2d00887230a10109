"""Attribution graphs on a tiny planted model whose only path to the target is known.

Two Llama layers (d 16): layer 0 is the identity (attention and MLP outputs zeroed); layer 1's attention attends
uniformly (zero queries and keys) and writes direction 14 whenever token 3 is in the context (and direction 15 for
token 7, which the target ignores); the unembedding of token 5 reads direction 14 only. SAEs at both layers are the
identity dictionary, so the path is: token 3's embedding → feature 3 at layer 0 (its position) → feature 14 at
layer 1 (last position) → logit 5.
"""
import torch

from mistudio_core.circuits.attribute import Site, run
from mistudio_core.circuits.graph import GraphSettings, logit_target, trace
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.model import SAE

PROMPT = [0, 3, 7, 2, 4]
HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


def planted_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=12, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=1, num_key_value_heads=1, head_dim=16, max_position_embeddings=32,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.zero_()
        for tok in range(12):
            model.model.embed_tokens.weight[tok, tok] = 1.0
        for layer in model.model.layers:
            for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                        layer.self_attn.o_proj, layer.mlp.down_proj):
                lin.weight.zero_()
        attn = model.model.layers[1].self_attn
        attn.v_proj.weight[0, 3] = 1.0  # token 3 -> head dim 0
        attn.v_proj.weight[1, 7] = 1.0  # token 7 -> head dim 1
        attn.o_proj.weight[14, 0] = 4.0  # head dim 0 -> residual direction 14
        attn.o_proj.weight[15, 1] = 4.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[5, 14] = 3.0
        model.lm_head.weight[6, 15] = 3.0
    return model


def identity_sae(hook):
    sae = SAE(SAEConfig(architecture="standard", d_in=16, d_sae=16, metadata={"hook_name": hook}))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(16))
        sae.W_dec.copy_(torch.eye(16))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def sites():
    return [Site(h, identity_sae(h), f"planted-{i}") for i, h in enumerate(HOOKS)]


def test_the_graph_finds_the_planted_path_and_nothing_else():
    graph = trace(planted_model(), sites(), torch.tensor(PROMPT), token_id=5,
                  settings=GraphSettings(node_share=0.99, edge_share=0.99))
    features = sorted(n["id"] for n in graph["nodes"] if n["kind"] == "feature")
    assert features == ["F1.3@1", "F2.14@4"], features
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert {("E@1", "F1.3@1"), ("F1.3@1", "F2.14@4"), ("F2.14@4", "T")} <= edges
    assert not any("F2.15" in e[0] or "F1.7" in e[0] for e in edges), "the distractor token's path is not in it"
    assert graph["stats"]["target_value"] > 0.5


def test_each_site_accounts_for_the_target_and_out_edges_sum_to_the_node_effect():
    model, ss = planted_model(), sites()
    att = run(model, ss, torch.tensor(PROMPT), logit_target(5, 6))
    for s in (1, 2):  # frozen attention and norms, linear SAEs, no biases: the decomposition is exact
        total = float(att.feature_effects(s).sum() + att.error_effects(s).sum())
        assert abs(total - att.value) < 1e-4 * max(1.0, abs(att.value))
    graph = trace(model, ss, torch.tensor(PROMPT), token_id=5, minus_id=6,
                  settings=GraphSettings(node_share=1.0, edge_share=1.0, max_nodes=500))
    out = {}
    for e in graph["edges"]:
        out[e["source"]] = out.get(e["source"], 0.0) + e["weight"]
    for n in graph["nodes"]:
        if n["site"] < 2 and abs(n["effect"]) > 1e-6:
            assert abs(out.get(n["id"], 0.0) - n["effect"]) < 1e-4, n


def test_ablating_the_path_removes_the_target_as_the_graph_predicts_and_a_distractor_does_not():
    from mistudio_core.circuits.intervene import intervention

    model, ss = planted_model(), sites()
    graph = trace(model, ss, torch.tensor(PROMPT), token_id=5, settings=GraphSettings(node_share=0.99))
    ids = torch.tensor(PROMPT)
    hit = intervention(model, ss, ids, dict(graph, target=dict(token_id=5)), ["F1.3@1"], scale=0.0)
    assert hit["after"] < 0.05 * hit["before"]
    assert abs(hit["predicted_change"] - hit["change"]) < 0.25 * abs(hit["change"])
    miss = intervention(model, ss, ids, dict(graph, target=dict(token_id=5)), ["F1.2@3"], scale=0.0)
    assert abs(miss["change"]) < 1e-4 and miss["predicted_change"] is None  # not in the graph: no prediction
    double = intervention(model, ss, ids, dict(graph, target=dict(token_id=5)), ["F2.14@4"], scale=2.0)
    assert double["after"] > double["before"] + 1.0  # the final norm damps it below the linear 2x
