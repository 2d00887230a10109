"""Every endpoint of the Datasets, Models, SAEs and System tabs through `gradio_client`, against `app.py` running as
a subprocess; plus read-only mode and login. Tiny tokenizer / tiny model stand in for SmolLM2 (speed)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from gradio_client import handle_file

from browser import AppServer
from mistudio_core.platform.store import Store
from tiny_models import save_tiny_model
from tiny_tokenizer import make_tiny_tokenizer, register_tiny_tokenizer_model

TEXT = "Fellow citizens, the state of the union is strong, and the people are its strength.\n" * 30
SAE = {"model_id": "tiny-tokenizer", "hook_name": "blocks.1.hook_resid_post", "architecture": "topk", "d_in": 32,
       "d_sae": 256, "k": 4, "metrics": {"l0": 4.0, "explained_variance": 0.75}, "source": "trained"}


def make_home(root: Path) -> tuple[Path, Path]:
    home, data = root / "home", root / "data"
    data.mkdir(parents=True)
    (data / "speech.txt").write_text(TEXT)
    save_tiny_model("llama", data / "tiny-llama")
    make_tiny_tokenizer(data / "tiny-llama")
    store = Store(home)
    register_tiny_tokenizer_model(store)
    with store.create("saes", "demo sae", SAE, artifact_id="demo-sae") as tmp:
        (tmp / "cfg.json").write_text('{"architecture": "topk", "d_in": 32, "d_sae": 256, "k": 4}')
    return home, data


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home, data = make_home(tmp_path_factory.mktemp("api"))
    with AppServer(home, allowed_roots=[data]) as app:
        app.data = data
        yield app


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def ids(table: dict) -> list[str]:
    return [row[0] for row in table["data"]]


def datasets_on_disk(server) -> list[str]:
    return sorted(p.name for p in (server.home / "datasets").iterdir() if not p.name.startswith("."))


def test_endpoints_are_named_per_tab(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    expected = {f"/{n}" for n in (
        "datasets_add_builtin datasets_add_local datasets_add_upload datasets_add_hub datasets_tokenize "
        "datasets_stats datasets_delete datasets_list models_add_builtin models_add_hub models_add_local "
        "models_summary models_load models_delete models_list saes_detail saes_delete saes_list system_history "
        "header_status").split()}
    assert expected <= names


def test_datasets_add_tokenize_stats_delete(server, client):
    status, table, dd = client.predict(str(server.data / "speech.txt"), "", "my speech",
                                       api_name="/datasets_add_local")
    assert status.startswith("✓") and "my speech" in status
    ds_id = dd["value"]
    assert ds_id in ids(table)
    status, table, summary, plot, top, preview = client.predict(ds_id, "tiny-tokenizer", 16, True, 0, 0,
                                                                api_name="/datasets_tokenize")
    assert status.startswith("✓"), status
    assert "tokens" in summary and plot["type"] == "plotly" and top["data"] and 'class="tok"' in preview
    status, summary, plot, top, preview = client.predict(ds_id, "tiny-tokenizer", api_name="/datasets_stats")
    assert "Statistics" in status and top["headers"] == ["token", "count"]
    table, ds_dd, model_dd = client.predict(ds_id, None, api_name="/datasets_list")
    assert ds_dd["value"] == ds_id and ["tiny-tokenizer", "tiny-tokenizer"] in model_dd["choices"]
    status, table, _ = client.predict(ds_id, api_name="/datasets_delete")
    assert status.startswith("✓") and ds_id not in ids(table) and ds_id not in datasets_on_disk(server)


def test_datasets_builtin_and_upload(server, client):
    status, table, _ = client.predict(api_name="/datasets_add_builtin")
    assert "State of the Union" in status and "sotu" in ids(table)
    status, table, dd = client.predict(handle_file(str(server.data / "speech.txt")), "", "",
                                       api_name="/datasets_add_upload")
    assert status.startswith("✓") and dd["value"] in ids(table)


@pytest.mark.parametrize("path, words", [("/etc/passwd", "outside the allowed folders"),
                                         ("{data}/nope.txt", "not found")])
def test_datasets_bad_paths_write_nothing(server, client, path, words):
    before = datasets_on_disk(server)
    status, *_ = client.predict(path.format(data=server.data), "", "", api_name="/datasets_add_local")
    assert status.startswith("⚠") and words in status
    assert datasets_on_disk(server) == before


def test_datasets_hub_offline_is_clear_and_the_token_is_not_kept(server, client):
    before = datasets_on_disk(server)
    status, *_ = client.predict("roneneldan/TinyStories", "", "train", 100, "", "hf_SECRET123",
                                api_name="/datasets_add_hub")
    assert "Cannot download" in status and "HF_HUB_OFFLINE" in status
    assert datasets_on_disk(server) == before
    for root, _, files in os.walk(server.home):
        for f in files:
            p = Path(root) / f
            if p.stat().st_size < 5_000_000:
                assert b"hf_SECRET123" not in p.read_bytes(), p
    assert "hf_SECRET123" not in server.log()


def test_models_local_summary_load_delete_and_hub_offline(server, client):
    status, table, dd = client.predict(str(server.data / "tiny-llama"), "tiny llama", api_name="/models_add_local")
    assert status.startswith("✓"), status
    model_id = dd["value"]
    status, info, hooks = client.predict(model_id, api_name="/models_summary")
    assert "LlamaForCausalLM" in info and ["blocks.0.hook_resid_pre"] in hooks["data"]
    status, info, hooks = client.predict(model_id, "auto", "none", api_name="/models_load")
    assert status.startswith("✓") and "cpu" in info and "float32" in info
    status, *_ = client.predict(model_id, "auto", "4bit", api_name="/models_load")
    assert "CUDA" in status or "bitsandbytes" in status
    table, dd = client.predict(model_id, api_name="/models_list")
    assert model_id in ids(table)
    status, table, _ = client.predict(model_id, api_name="/models_delete")
    assert status.startswith("✓") and model_id not in ids(table)
    assert (server.data / "tiny-llama" / "config.json").exists()  # registered by reference: the folder stays
    status, *_ = client.predict("HuggingFaceTB/SmolLM2-135M", "", "hf_SECRET456", api_name="/models_add_hub")
    assert status.startswith("⚠") and "hf_SECRET456" not in status


@pytest.mark.integration
def test_models_add_builtin_returns_the_registered_model(server, client, real_store):
    link = server.home / "models" / "smollm2-135m-instruct"
    if not link.exists():
        link.symlink_to(real_store.path("models", "smollm2-135m-instruct"))
    status, table, dd = client.predict(api_name="/models_add_builtin")
    assert "SmolLM2-135M-Instruct" in status and dd["value"] == "smollm2-135m-instruct"


def test_saes_list_detail_delete(client):
    table, dd, _ = client.predict(None, api_name="/saes_list")
    row = table["data"][ids(table).index("demo-sae")]
    assert "topk (k=4)" in row and "0.75" in row
    status, head, cfg, record = client.predict("demo-sae", api_name="/saes_detail")
    assert cfg["k"] == 4 and record["manifest"]["hook_name"] == "blocks.1.hook_resid_post"
    status, table, _ = client.predict("demo-sae", api_name="/saes_delete")
    assert status.startswith("✓") and "demo-sae" not in ids(table)
    status, *_ = client.predict("demo-sae", api_name="/saes_detail")
    assert status.startswith("⚠") and "No sae with id 'demo-sae'" in status


def test_system_and_header(client):
    header = client.predict(api_name="/header_status")
    assert "CPU" in header and "RAM" in header and ("no GPU (CPU only)" in header or "%" in header)
    summary, plot, devices = client.predict(api_name="/system_history")
    assert "samples over" in summary and plot["type"] == "plotly" and devices["data"][-1][0] == "CPU"


def test_read_only_refuses_writes(tmp_path):
    home, data = make_home(tmp_path)
    with AppServer(home, allowed_roots=[data], extra_args=["--read-only"]) as app:
        c = app.client()
        status, *_ = c.predict(str(data / "speech.txt"), "", "", api_name="/datasets_add_local")
        assert "read-only demo mode" in status
        status, *_ = c.predict("demo-sae", api_name="/saes_delete")
        assert "read-only demo mode" in status
        assert c.predict("demo-sae", api_name="/saes_detail")[0].startswith("✓")  # browsing still works
        assert "read-only demo" in c.predict(api_name="/header_status")
    assert list((home / "datasets").iterdir()) == [] and (home / "saes" / "demo-sae").is_dir()


def test_auth_api_refuses_without_login(tmp_path):
    import urllib.request

    from gradio_client.exceptions import AuthenticationError

    with AppServer(tmp_path / "home", extra_args=["--auth", "ann:pw"]) as app:
        with pytest.raises(AuthenticationError):
            app.client()
        req = urllib.request.Request(app.url + "gradio_api/call/datasets_list", data=b'{"data": [null, null]}',
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 401
        table, *_ = app.client(auth=("ann", "pw")).predict(None, None, api_name="/datasets_list")
        assert table["data"] == []
