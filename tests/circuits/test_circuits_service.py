"""The library door to circuits on a tiny Llama (3 layers, d 32) with random TopK SAEs at two residual hooks:
graphs saved and listed, interventions, pinned groups, circuit-tracer JSON both ways, and one clear message for
each bad input the issue names."""
import json

import pytest
import torch

from mistudio_core.circuits import exchange, groups, service
from mistudio_core.circuits.intervene import intervene_graph
from mistudio_core.platform.errors import MistudioError, ValidationError
from tiny_models import save_tiny_model

HOOKS = ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]


def _sae(store, model, hook, seed, name=None, context_size=64, hook_out=None):
    from mistudio_core.sae.config import SAEConfig
    from mistudio_core.sae.library import register_sae
    from mistudio_core.sae.model import SAE

    torch.manual_seed(seed)
    out = {"d_out": 32, "hook_name_out": hook_out} if hook_out else {}  # a transcoder: reads hook, writes hook_out
    sae = SAE(SAEConfig("topk", 32, 96, k=6, d_out=out.get("d_out"), apply_b_dec_to_input=not hook_out, metadata={
        "hook_name": hook, "model_name": model, "context_size": context_size, "prepend_bos": True,
        **({"hook_name_out": hook_out} if hook_out else {})}))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
    return register_sae(store, sae, name or f"sae-{seed}", {"model_id": model, "hook_name": hook})["id"]


@pytest.fixture
def home(store, tmp_path):
    from mistudio_core.model.models import add_local_model

    save_tiny_model("llama", tmp_path / "tiny-llama")
    model = add_local_model(store, tmp_path / "tiny-llama", name="tiny llama")["id"]
    saes = [_sae(store, model, h, i) for i, h in enumerate(HOOKS)]
    return store, model, saes


def test_a_graph_is_saved_listed_exported_and_reimported(home):
    store, model, saes = home
    g = service.build_graph(store, saes, "The state of the union is", settings={"max_nodes": 30})
    assert g["target"]["token_id"] >= 0 and g["tokens"][0] == "<bos>"  # BOS added: the SAEs saw it in training
    assert {n["kind"] for n in g["nodes"]} <= {"feature", "error", "embedding"} and g["edges"]
    assert [s["layer"] for s in g["sites"]] == [0, 2] and g["stats"]["kept_nodes"] <= 30
    assert service.list_graphs(store)[0]["id"] == g["id"] and service.load_graph(store, g["id"])["nodes"] == g["nodes"]
    np_json = json.loads(json.dumps(exchange.to_neuronpedia(g, n_layers=3)))
    assert {"metadata", "qParams", "nodes", "links"} <= set(np_json)
    logit = [n for n in np_json["nodes"] if n["feature_type"] == "logit"]
    assert len(logit) == 1 and logit[0]["node_id"] == f"4_{g['target']['token_id']}_{len(g['tokens']) - 1}"
    back = exchange.from_neuronpedia(np_json)
    assert sorted(n["id"] for n in back["nodes"]) == sorted(n["id"] for n in g["nodes"])
    assert len(back["edges"]) == len(g["edges"]) and back["sites"] == g["sites"]


def test_a_foreign_circuit_tracer_graph_imports_for_viewing():
    data = {"metadata": {"prompt": "Dallas is in", "prompt_tokens": ["<bos>", "Dallas", " is", " in"], "scan": "g"},
            "qParams": {}, "nodes": [
                {"node_id": "E_651_1", "feature_type": "embedding", "layer": "E", "ctx_idx": 1, "feature": 1},
                {"node_id": "3_1234_1", "feature_type": "cross layer transcoder", "layer": "3", "ctx_idx": 1,
                 "feature": 99, "clerp": "Texas", "influence": 0.4},
                {"node_id": "7_-1_3", "feature_type": "mlp reconstruction error", "layer": "7", "ctx_idx": 3},
                {"node_id": "27_9822_3", "feature_type": "logit", "layer": "27", "ctx_idx": 3, "feature": 9822,
                 "is_target_logit": True, "clerp": "Output \" Texas\""}],
            "links": [{"source": "E_651_1", "target": "3_1234_1", "weight": 2.0},
                      {"source": "3_1234_1", "target": "27_9822_3", "weight": 1.5}]}
    g = exchange.from_neuronpedia(data)
    assert {n["id"] for n in g["nodes"]} == {"E@1", "F1.1234@1", "R2@3"}
    assert {(e["source"], e["target"]) for e in g["edges"]} == {("E@1", "F1.1234@1"), ("F1.1234@1", "T")}
    assert g["nodes"][1]["label"] == "Texas" and g["source"] == "imported"
    with pytest.raises(ValidationError, match="nodes"):
        exchange.from_neuronpedia({"metadata": {}, "edges": []})


def test_interventions_and_pinned_groups(home):
    store, model, saes = home
    g = service.build_graph(store, saes, "We shall build roads", minus="runner-up", settings={"max_nodes": 20})
    feats = [n["id"] for n in g["nodes"] if n["kind"] == "feature"][:3]
    res = intervene_graph(store, g, feats, scale=0.0)
    assert res["before"] == pytest.approx(g["stats"]["target_value"], abs=1e-3)
    assert res["predicted_change"] is not None and res["after"] != res["before"]
    grp = groups.pin(store, g, feats[:2], "roads")
    again = groups.pin(store, g, feats[:2], "roads")
    assert len(again["features"]) == len(grp["features"]) == 2, "pinning twice adds nothing"
    assert grp["features"][0]["sae_id"] in saes and groups.list_groups(store) == [{"name": "roads", "features": 2}]
    with pytest.raises(ValidationError, match="only SAE features"):
        groups.pin(store, g, [next(n["id"] for n in g["nodes"] if n["kind"] == "error")], "roads")


def test_each_bad_input_is_one_clear_message(home):
    store, model, saes = home
    cases = [
        (lambda: service.build_graph(store, [], "hi"), "No SAE selected"),
        (lambda: service.build_graph(store, saes, "hi", target="Fellow citizens"), "first piece"),
        (lambda: service.build_graph(store, saes, "hi", target="#99999"), "not in the vocabulary"),
        (lambda: service.build_graph(store, saes, "the state " * 40), "longer than the context of 64"),
        (lambda: service.build_graph(store, saes + [_sae(store, "other-model", HOOKS[1], 5, "x")], "hi"),
         "different models"),
        (lambda: service.build_graph(store, [_sae(store, model, "blocks.9.hook_resid_post", 6, "y")], "hi"),
         "does not have"),
        (lambda: service.build_graph(store, [_sae(store, model, "blocks.1.hook_mlp_out", 7, "z")], "hi"),
         "not a residual hook"),
        (lambda: service.build_graph(store, [saes[0], _sae(store, model, "blocks.1.hook_resid_pre", 8, "w")], "hi"),
         "same residual point"),
        (lambda: service.build_graph(store, [saes[0], _sae(store, model, "blocks.1.hook_resid_post", 9, "tc",
                                                                hook_out="blocks.2.hook_resid_post")], "hi"),
         "is a transcoder .*not supported yet"),
    ]
    for call, words in cases:
        with pytest.raises(MistudioError, match=words):
            call()


def test_the_cli_builds_shows_ablates_exports_and_imports(home, tmp_path, capsys):
    from mistudio_core.cli import main

    store, model, saes = home
    h = ["--home", str(store.home), "--json", "circuit"]
    sae_args = [a for s in saes for a in ("--sae", s)]
    assert main([*h, "build", "The people are", *sae_args, "--max-nodes", "20"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["nodes"] > 0 and built["top"][0]["node"]
    node = next(r["node"] for r in built["top"] if r["kind"] == "feature")
    assert main([*h, "ablate", built["id"], node]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["nodes"] == [node] and res["predicted_change"] is not None
    out = tmp_path / "g.json"
    assert main([*h, "export", built["id"], "--file", str(out)]) == 0 and out.is_file()
    capsys.readouterr()
    assert main([*h, "import", "--file", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["nodes"] == built["nodes"]
    assert main([*h, "build", "The people are"]) == 2
    assert "No SAE selected" in capsys.readouterr().err


def test_position_zero_is_one_error_node_unless_asked(home):
    store, model, saes = home
    full = dict(node_share=1.0, edge_share=1.0, max_nodes=2000)
    g = service.build_graph(store, saes, "The people are", settings=full, save=False)
    assert not [n for n in g["nodes"] if n["kind"] == "feature" and n["pos"] == 0]
    assert [n for n in g["nodes"] if n["kind"] == "error" and n["pos"] == 0]
    g0 = service.build_graph(store, saes, "The people are", settings=dict(full, start_features=True), save=False)
    assert [n for n in g0["nodes"] if n["kind"] == "feature" and n["pos"] == 0]
