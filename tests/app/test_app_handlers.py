"""Page handlers called directly (no server): errors become a status message and change nothing, read-only mode
refuses writes, flags and auth parse, and the app builds with the expected tabs and unique endpoint names."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import app
from pages import datasets as dp
from pages import models as mp
from pages import saes as sp
from pages.common import tokens_html
from pages.context import AppContext
from tiny_tokenizer import register_tiny_tokenizer_model


@pytest.fixture
def ctx(store, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "speech.txt").write_text("We the people of the United States, in order to form a more perfect union.\n"
                                     * 20)
    return AppContext(store=store, allowed_roots=[store.home, data])


def n_datasets(ctx) -> int:
    return len(ctx.store.list("datasets"))


def test_add_local_then_tokenize_and_statistics(ctx):
    register_tiny_tokenizer_model(ctx.store)
    status, lib, dd = dp.add_local(ctx, str(ctx.allowed_roots[1] / "speech.txt"), "", "")
    assert status.startswith("✓") and "speech" in status
    ds_id = dd["value"]
    assert list(lib["id"]) == [ds_id]
    out = dp.tokenize_dataset(ctx, ds_id, "tiny-tokenizer", 16, True, 0, 0)
    status, lib, summary, hist, top, preview = out
    assert status.startswith("✓") and "tokens" in summary
    assert lib.loc[0, "tokenized for"] == "tiny-tokenizer"
    assert len(top) > 0 and top["count"].iloc[0] >= top["count"].iloc[-1]
    assert preview.count('class="tok"') == 3 * 16  # three contexts of 16 tokens, each token its own span


@pytest.mark.parametrize("path, words", [("/etc/passwd", "outside the allowed folders"),
                                         ("missing.txt", "not found"), ("", "No path given")])
def test_bad_local_paths_say_why_and_write_nothing(ctx, path, words):
    if path == "missing.txt":
        path = str(ctx.allowed_roots[1] / path)
    status, *rest = dp.add_local(ctx, path, "", "")
    assert status.startswith("⚠") and words in status
    assert n_datasets(ctx) == 0
    assert rest == [{"__type__": "update"}] * 2  # gr.skip(): the table and the selection stay as they were


def test_hub_offline_is_a_clear_message(ctx, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status, *_ = dp.add_hub(ctx, "roneneldan/TinyStories", "", "train", 10, "", "hf_secret")
    assert status.startswith("⚠") and "HF_HUB_OFFLINE" in status and "hf_secret" not in status
    assert n_datasets(ctx) == 0


def test_read_only_refuses_every_write(ctx):
    ctx.read_only = True
    calls = [lambda: dp.add_builtin(ctx), lambda: dp.add_local(ctx, str(ctx.allowed_roots[1] / "speech.txt"), "", ""),
             lambda: dp.delete(ctx, "x"), lambda: mp.add_builtin(ctx), lambda: mp.delete(ctx, "x"),
             lambda: sp.delete(ctx, "x")]
    for call in calls:
        status = call()[0]
        assert "read-only demo mode" in status
    assert n_datasets(ctx) == 0 and ctx.store.list("models") == []


def test_nothing_selected_asks_for_a_selection(ctx):
    assert "No dataset selected" in dp.statistics(ctx, None, "m")[0]
    assert "No model selected" in mp.summary(ctx, None)[0]
    assert "No SAE selected" in sp.detail(ctx, "")[0]
    assert dp.show_selected(ctx, None, None)[1] == ""  # on load, no complaint before anything exists


def test_sae_library_row_and_detail(ctx):
    manifest = {"model_id": "m", "hook_name": "blocks.2.hook_resid_post", "architecture": "topk", "d_in": 32,
                "d_sae": 4096, "k": 8, "metrics": {"l0": 8.0, "explained_variance": 0.8912}, "source": "trained"}
    with ctx.store.create("saes", "demo sae", manifest, artifact_id="demo") as tmp:
        (tmp / "cfg.json").write_text('{"architecture": "topk", "d_in": 32, "d_sae": 4096, "k": 8}')
    lib = sp.library(ctx)
    row = lib.iloc[0]
    assert row["architecture"] == "topk (k=8)" and row["width"] == "4.1k" and row["EV (source unknown)"] == "0.891"
    status, head, cfg, record = sp.detail(ctx, "demo")
    assert cfg["k"] == 8 and record["manifest"]["hook_name"] == "blocks.2.hook_resid_post"
    assert "blocks.2.hook_resid_post" in head
    assert sp.delete(ctx, "demo")[0].startswith("✓") and ctx.store.list("saes") == []


def test_tokens_html_escapes_and_marks_boundaries():
    out = tokens_html([["<b>", " x", "\n"]])
    assert "&lt;b&gt;" in out and "<b>" not in out.replace("<b>context", "")
    assert out.count('class="tok"') == 3


def test_flags_env_and_auth(monkeypatch, tmp_path):
    monkeypatch.setenv("MISTUDIO_PORT", "7999")
    monkeypatch.setenv("MISTUDIO_AUTH", "ann:pw1")
    auth_file = tmp_path / "users"
    auth_file.write_text("# comment\nbob:pw2\n\n")
    args = app.parse_args(["--auth", "cy:pw3", "--auth-file", str(auth_file), "--read-only"])
    assert args.port == 7999 and args.read_only
    assert sorted(app.parse_auth(args)) == [("ann", "pw1"), ("bob", "pw2"), ("cy", "pw3")]
    with pytest.raises(SystemExit, match="user:password"):
        app.parse_auth(argparse.Namespace(auth=["nopassword"], auth_file=None))
    with pytest.raises(SystemExit, match="not found"):
        app.parse_auth(argparse.Namespace(auth=[], auth_file=str(tmp_path / "nope")))


def test_context_always_allows_the_data_dir(tmp_path):
    args = app.parse_args(["--home", str(tmp_path / "h"), "--allowed-root", str(tmp_path / "d")])
    ctx = app.build_context(args)
    assert ctx.allowed_roots[0] == (tmp_path / "h").resolve() and (tmp_path / "d").resolve() in ctx.allowed_roots


OURS = ("datasets", "models", "saes", "system")


def test_app_has_tabs_in_order_and_unique_endpoints(ctx):
    demo = app.create_app(ctx)
    labels = [b.label for b in demo.blocks.values() if type(b).__name__ == "Tab" and b.id in app.TABS]
    present = [t for t in app.TABS if Path(app.__file__).with_name("pages").joinpath(f"{t}.py").exists()]
    assert labels == [app.LABELS.get(t, t.capitalize()) for t in present]
    assert not {t: e for t, e in ctx.shared.get("tab_errors", {}).items() if t in OURS}
    names = [d.api_name for d in demo.fns.values() if d.api_name]
    assert len(names) == len(set(names))
    for expected in ("datasets_add_local", "datasets_tokenize", "models_summary", "saes_detail", "header_status"):
        assert expected in names
