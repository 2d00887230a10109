"""Circuits tab handlers, called directly on a tiny Llama with two random residual SAEs (see
test_circuits_service): the page builds, shows a graph as a figure, opens a node's feature page, ablates with
the graph's prediction beside the result, pins, exports and imports, and refuses bad requests in one line."""
import json

import gradio as gr
import pytest

from mistudio_core.circuits import service
from pages import circuits as page
from pages.context import AppContext
from test_circuits_service import home  # noqa: F401  (the fixture)


@pytest.fixture
def ctx_graph(home):  # noqa: F811
    store, model, saes = home
    graph = service.build_graph(store, saes, "The state of the union", settings={"max_nodes": 25})
    return AppContext(store=store), graph, saes


def test_the_page_builds_and_shows_a_graph(ctx_graph):
    ctx, graph, saes = ctx_graph
    with gr.Blocks():
        page.build(ctx)
    status, fig, nodes, summary, node_box = page.show_graph(ctx, graph["id"])
    assert status.startswith("✓") and graph["id"] in summary and node_box == ""  # the last graph's node goes
    markers = [t for t in fig.data if t.mode == "markers"]
    assert sum(len(t.x) for t in markers) == len(graph["nodes"])
    assert [v for _, v in nodes["choices"]][0] == max(graph["nodes"], key=lambda n: abs(n["effect"]))["id"]
    choices = page.sae_choices(ctx)["choices"]
    assert sorted(v for _, v in choices) == sorted(saes)


def test_node_actions_and_exchange(ctx_graph, tmp_path):
    ctx, graph, saes = ctx_graph
    feat = next(n["id"] for n in graph["nodes"] if n["kind"] == "feature")
    status, card, node = page.open_feature(ctx, graph["id"], [feat])
    assert "no extracted features" in card and "Feature" in card  # says how to get the feature page's examples
    assert node == feat and page.open_feature(ctx, graph["id"], feat)[1] == card  # a click: one id, same card
    status, table = page.ablate(ctx, graph["id"], [feat], 0.0)
    assert status.startswith("✓") and "predicted change" in table
    assert "1 feature" in page.pin(ctx, graph["id"], [feat], "mine")
    status, path = page.export(ctx, graph["id"])
    assert json.loads(open(path).read())["metadata"]["prompt"] == graph["prompt"]
    status, dd = page.import_graph(ctx, path)
    assert status.startswith("✓") and dd["value"].startswith("imported")


def test_bad_requests_are_one_line_each(ctx_graph):
    ctx, graph, saes = ctx_graph
    assert "No SAE selected" in page.start_build(ctx, [], "hi", "", "", 0.8, 80)[0]
    assert "job runner is not running" in page.start_build(ctx, saes, "hi", "", "", 0.8, 80)[0]
    assert "No node chosen" in page.ablate(ctx, graph["id"], [], 0.0)[0]
    assert "No graph open" in page.open_feature(ctx, None, ["F1.0@0"])[0]
    err = next((n["id"] for n in graph["nodes"] if n["kind"] != "feature"), None)
    if err:
        assert "no feature page" in page.open_feature(ctx, graph["id"], [err])[0]
        assert "no feature page" in page.goto_feature(ctx, graph["id"], err, [])[0]
    assert "not in this graph" in page.open_feature(ctx, graph["id"], "F9.9@9")[0]
    assert "No node chosen" in page.goto_feature(ctx, graph["id"], "", [])[0]


def test_build_queues_a_circuit_job_and_the_watcher_selects_its_graph(ctx_graph):
    from mistudio_core.jobs import JobRegistry, Runner

    ctx, graph, saes = ctx_graph
    ctx.jobs = JobRegistry(ctx.store)
    status, job_id = page.start_build(ctx, saes, "Our people", "", "runner-up", 0.8, 20)
    assert status.startswith("✓") and job_id
    Runner(ctx.store, registry=ctx.jobs).run_here(job_id)
    *_, (last, dd) = list(page.watch_build(ctx, job_id, poll_s=0.01))
    assert last.startswith("✓") and dd["value"] == ctx.jobs.get(job_id)["result"]["graph_id"]
    assert service.load_graph(ctx.store, dd["value"])["target"]["minus"] is not None


def test_a_node_opens_in_the_features_tab_with_its_sae_and_index(ctx_graph, tmp_path):
    """"Open in the Features tab": the Features tab selected, its SAE dropdown on the node's SAE (with the
    library's choices), its index on the feature; `went` False on a refusal so the Features tab is left alone."""
    from pages import features

    ctx, graph, saes = ctx_graph
    with gr.Blocks(), gr.Tabs() as tabs:
        ctx.shared["tabs"] = tabs
        with gr.Tab("Features", id="features"):
            features.build(ctx)
        with gr.Tab("Circuits", id="circuits"):
            page.build(ctx)
    node = next(n for n in graph["nodes"] if n["kind"] == "feature")
    status, tab, sae, index, went = page.goto_feature(ctx, graph["id"], node["id"], [])
    assert status.startswith("✓") and went is True and tab.selected == "features"
    assert sae["value"] == graph["sites"][node["site"] - 1]["sae_id"] and index == node["feature"]
    assert sorted(v for _, v in sae["choices"]) == sorted(saes)
    other = next((n for n in graph["nodes"] if n["kind"] == "feature" and n["id"] != node["id"]), node)
    assert page.goto_feature(ctx, graph["id"], "", [other["id"]])[3] == other["feature"]  # the list, if no box
    imported = dict(graph, id="imported-x", sites=[dict(s, sae_id=None) for s in graph["sites"]])
    from mistudio_core.platform.store import write_json_atomic

    write_json_atomic(service.graphs_dir(ctx.store, create=True) / "imported-x.json", imported)
    status, *rest, went = page.goto_feature(ctx, "imported-x", node["id"], [])
    assert "not in the library" in status and went is False
