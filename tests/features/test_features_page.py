"""Features tab handlers, called directly on a store holding a tiny extraction."""
from __future__ import annotations

import json

import gradio as gr
import pandas as pd
import pytest
import torch

from pages import features as page
from pages import features_data
from pages.common import failed, ok
from pages.context import AppContext
from tests.features_helpers import D_SAE, HOOK, saved_features


OK, FAIL = ok("").strip(), failed("").strip()


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from mistudio_core.platform.store import Store

    store = Store(tmp_path_factory.mktemp("home"))
    setup = saved_features(store, tmp_path_factory.mktemp("tok"))
    c = AppContext(store=store, allowed_roots=[store.home])
    c.shared["setup"] = setup
    return c


def test_overview_table_sort_filter_page(ctx):
    status, summary, fig, table, info = page.overview(ctx, "tiny-sae")
    assert status.startswith(OK) and f"{D_SAE} features" in summary and HOOK in summary
    assert info.startswith("Page 1 of") and "Page" not in summary  # one page counter, under the table
    assert fig.layout.yaxis.type == "log"
    assert list(table["frequency"]) == sorted(table["frequency"], reverse=True)
    _, t, info = page.feature_table(ctx, "tiny-sae", "", "", "max activation", "alive", 2, 3)
    assert len(t) == 3 and info.startswith("Page 2 of")
    _, all_alive, _ = page.feature_table(ctx, "tiny-sae", "", "", "max activation", "alive", 1, 1000)
    assert len(all_alive) >= 6 and list(t["index"]) == list(all_alive["index"][3:6])
    assert (all_alive["max_activation"].diff().dropna() <= 0).all() and not all_alive["dead"].any()
    _, by_index, _ = page.feature_table(ctx, "tiny-sae", "", "", "index", "all", 1, 1000)
    assert list(by_index["index"]) == list(range(D_SAE))


def test_token_search_finds_feature_peaking_there(ctx):
    res, _ = page.results(ctx, "tiny-sae")
    f = int(res.t["count"].argmax())
    ex = res.feature(f)["top_examples"][0]
    tok = ex["tokens"][ex["peak"]]
    status, t, _ = page.feature_table(ctx, "tiny-sae", "", tok, "frequency", "all", 1, 50)
    assert f in list(t["index"]) and (t["examples_on_token"] >= 1).all()
    status, _, _ = page.feature_table(ctx, "tiny-sae", "", "no-such-token-xyz", "frequency", "all", 1, 50)
    assert status.startswith(FAIL) and "leading space" in status


@pytest.fixture
def tiny_seams(ctx, monkeypatch):
    """The tab's model/SAE loaders answer with the tiny model and SAE the extraction used."""
    from pages import features_data

    loaded, sae, _ = ctx.shared["setup"]
    monkeypatch.setattr(features_data, "model_and_sae", lambda c, s: (loaded, sae, HOOK))
    monkeypatch.setattr(features_data, "sae_only", lambda c, s: sae)
    return loaded, sae


def test_open_feature_label_and_search(ctx, tiny_seams):
    f = int(page.results(ctx, "tiny-sae")[0].t["count"].argmax())
    out = page.open_feature(ctx, "tiny-sae", f)
    status, summary, examples, quantiles, hist, top, bottom, label = out[:8]
    assert f"Feature {f}" in summary and "<span" in examples and len(top) == 10 and label == ""
    assert examples.count("ctx ") == 4 and len(hist.data[0].y) > 0
    assert page.save_label(ctx, "tiny-sae", f, "  dates and years ").startswith(OK)
    assert page.open_feature(ctx, "tiny-sae", f)[7] == "dates and years"
    _, t, _ = page.feature_table(ctx, "tiny-sae", "YEARS", "", "frequency", "all", 1, 50)
    assert list(t["index"]) == [f]
    _, t, _ = page.feature_table(ctx, "tiny-sae", "", "", "frequency", "labelled", 1, 50)
    assert list(t["index"]) == [f]
    features_data._CACHE.clear()  # a fresh load reads the label back from labels.json
    assert page.open_feature(ctx, "tiny-sae", f)[7] == "dates and years"
    assert page.open_feature(ctx, "tiny-sae", 999)[0].startswith(FAIL)


def test_exports(ctx):
    status, file = page.export_table(ctx, "tiny-sae", "CSV")
    assert file["visible"] and len(pd.read_csv(file["value"])) == D_SAE  # the download box appears with a file
    status, file = page.export_feature(ctx, "tiny-sae", 2, "JSON")
    data = json.loads(open(file["value"]).read())
    assert data["index"] == 2 and "top_examples" in data
    status, file = page.export_feature(ctx, "tiny-sae", 2, "CSV")
    assert "peak_token" in pd.read_csv(file["value"]).columns


def test_feature_page_neighbours_logit_histogram_score_card(ctx, tiny_seams):
    loaded, sae = tiny_seams
    out = page.open_feature(ctx, "tiny-sae", 3)
    neighbours, logit_fig, card = out[8:]
    W = sae.W_dec.detach()
    cos = torch.nn.functional.cosine_similarity(W, W[3:4], dim=1)
    cos[3] = -2
    assert list(neighbours["feature"]) == cos.argsort(descending=True)[:10].tolist()
    assert list(neighbours["cosine"]) == sorted(neighbours["cosine"], reverse=True)
    assert sum(logit_fig.data[0].y) == loaded.model.config.vocab_size  # every vocab entry, not the top/bottom 10
    assert "No label yet" in card
    from mistudio_core.labeling.store import LabelStore

    LabelStore(ctx.store, "tiny-sae").set_auto(3, "loud text", score={"method": "detection", "accuracy": 0.9,
                                                                      "chance": 0.5, "n": 10},
                                               fuzzing={"method": "fuzzing", "accuracy": 0.7, "chance": 0.5, "n": 10})
    card = page.open_feature(ctx, "tiny-sae", 3)[-1]
    assert "loud text" in card and "90%" in card and "70%" in card and "chance" in card


def test_hiding_examples_at_context_start(ctx, tiny_seams):
    res, _ = page.results(ctx, "tiny-sae")
    at_start = (res.t["top_pos"] <= 1) & (res.t["top_ctx"] >= 0)  # BOS sits at 0, so 1 is the token after it
    f = int(at_start.sum(1).argmax())
    assert res.start_token_id() == 1 and at_start[f].any()
    everything, shown = res.feature(f), res.feature(f, skip_start=True)
    assert shown["n_start_hidden"] == int(at_start[f].sum()) >= 1
    assert len(shown["top_examples"]) + shown["n_start_hidden"] == len(everything["top_examples"])
    kept = {(e["context_id"], e["value"]) for e in shown["top_examples"]}
    for e in everything["top_examples"]:  # what was hidden peaked right after the BOS
        if (e["context_id"], e["value"]) not in kept:
            assert e["token_ids"][e["peak"] - 1] == 1 or e["peak"] == 0
    assert "hidden" in page.open_feature(ctx, "tiny-sae", f, True)[1]


def test_label_search_by_words(ctx):
    from mistudio_core.labeling.store import LabelStore

    LabelStore(ctx.store, "tiny-sae").set(5, "shouting", description="Text in capital letters, yelling.")
    _, t, _ = page.feature_table(ctx, "tiny-sae", "capital letters", "", "frequency", "all", 1, 50)
    assert list(t["index"]) == [5]


def test_prompt_view(ctx, monkeypatch):
    loaded, sae, _ = ctx.shared["setup"]
    monkeypatch.setattr(features_data, "model_and_sae", lambda c, s: (loaded, sae, HOOK))
    status, view, table = page.analyze_prompt(ctx, "tiny-sae", "The state of the union")
    assert status.startswith(OK) and "<span" in view and len(table) > 0
    assert (table["max_activation"].diff().dropna() <= 0).all()
    assert page.analyze_prompt(ctx, "tiny-sae", "  ")[0].startswith(FAIL)


def test_errors_name_the_fix(ctx):
    assert "Train or import" in page.overview(ctx, None)[0]
    status, job = page.start_extraction(ctx, "tiny-sae", None, 1000, 10, 0, [])
    assert status.startswith(FAIL) and "Tokenize one" in status
    status, _ = page.start_extraction(ctx, "tiny-sae", "tiny-ds", 1000, 5000, 0, [])
    assert "top_k" in status
    ctx.read_only = True
    try:
        assert "read-only" in page.save_label(ctx, "tiny-sae", 1, "x")
    finally:
        ctx.read_only = False


def test_build_has_prefixed_api_names(ctx):
    with gr.Blocks() as demo:
        page.build(ctx)
    names = [d.api_name for d in demo.fns.values() if d.api_name]
    assert names and all(n.startswith("features_") for n in names)
    assert len(names) == len(set(names))


def test_the_link_other_tabs_use_reloads_the_overview_of_the_sae_it_opens(ctx):
    """Circuits' "Open in the Features tab" sets the SAE without a user `input` event, so the link carries the
    overview too: the table then shows that SAE's features, not the previous SAE's."""
    with gr.Blocks():
        page.build(ctx)
    link = ctx.shared["features_link"]
    status, summary, _, table, _ = link["overview"]("tiny-sae")
    assert status.startswith(OK) and HOOK in summary and len(table) > 0
    assert len(link["overview_outputs"]) == 5


def test_extraction_job_is_submitted_and_watched(ctx, monkeypatch):
    from mistudio_core.features import job as job_mod
    from mistudio_core.jobs import JobRegistry

    monkeypatch.setattr(job_mod, "load_tokens_for", lambda store, ds, model: None)  # dataset check passes
    ctx.jobs = JobRegistry(ctx.store)
    try:
        status, job_id = page.start_extraction(ctx, "tiny-sae", "tiny-ds", 2048, 10, 0.0, ["special"])
        assert status.startswith(OK) and ctx.jobs.get(job_id)["spec"]["top_k"] == 10
        line, again = page.latest_job(ctx, "tiny-sae")
        assert again == job_id and "queued" in line
        ctx.jobs.cancel(job_id)  # no runner here: the watcher must stop once the job has ended
        lines = list(page.watch_job(ctx, job_id, poll_s=0.01))
        assert "cancelled" in lines[-1]
    finally:
        ctx.jobs = None


def test_feature_page_without_sae_weights_still_shows_the_rest(ctx):
    """The tiny SAE has a manifest but no weights on disk: the decoder views say so, the examples still show."""
    status, summary, examples, *_, neighbours, logit_fig, card = page.open_feature(ctx, "tiny-sae", 2)
    assert status.startswith(OK) and "Decoder views need the SAE's weights" in status
    assert "Feature 2" in summary and "<span" in examples and neighbours.empty and logit_fig is None
