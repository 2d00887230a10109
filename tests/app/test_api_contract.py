"""The API contract of docs/API.md, checked against the running app: every named endpoint is documented, and every
one answers a `gradio_client` call made with existing ids (no "not in the list of choices", no traceback), also
for artifacts created after the page was built; uploads never stay in, or come back out of, the data directory."""
from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gradio_client import handle_file

from api_calls import call, call_all, endpoints, problems
from api_home import build_home
from browser import AppServer

DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "API.md"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    ids = build_home(tmp_path_factory.mktemp("contract"))
    with AppServer(ids.home, allowed_roots=[ids.data]) as server:
        server.ids = ids
        yield server


@pytest.fixture(scope="module")
def client(app):
    return app.client()


def test_every_endpoint_is_documented(client):
    documented = set(re.findall(r"`([a-z]+_[a-z0-9_]+)`", DOC.read_text(encoding="utf-8")))
    missing = sorted(set(endpoints(client)) - documented)
    assert not missing, f"endpoints missing from docs/API.md: {missing}"


def test_an_sae_made_after_start_up_is_accepted(app, client):
    """The dropdowns were built when this SAE did not exist: its id must still be accepted everywhere."""
    from mistudio_core.sae.io import load_sae
    from mistudio_core.sae.library import register_sae
    from mistudio_core.platform.store import Store

    store = Store(app.ids.home)
    sae = load_sae(app.ids.sae_folder)
    new = register_sae(store, sae, "late sae", {"model_id": app.ids.model, "hook_name": sae.cfg.metadata["hook_name"],
                                                "source": "trained"})["id"]
    status, *_ = client.predict(new, api_name="/saes_detail")
    assert status.startswith("✓"), status
    out = call(client, "steering_list", [new])
    assert not isinstance(out, Exception), out
    out = call(client, "features_load", [new])
    assert not isinstance(out, Exception), out
    assert "not in the list of choices" not in str(out)


def test_every_endpoint_answers_valid_ids(app, client):
    results = call_all(client, app.ids)
    assert len(results) > 60
    bad = problems(results)
    assert not bad, "\n".join(bad)
    assert "Traceback" not in "".join(str(v) for v in results.values())


def test_uploads_are_removed_after_use_and_never_served(app, client):
    uploads = (app.ids.home / ".uploads").resolve()
    status, *_ = client.predict(handle_file(str(app.ids.text_file)), "", "uploaded", api_name="/datasets_add_upload")
    assert status.startswith("✓"), status
    assert str(app.ids.home) not in status and "/tmp/" not in status
    assert uploads.is_dir() and not list(uploads.rglob("speech.txt"))  # ingested, then deleted
    # an upload that no action has used yet is not served back either
    import httpx

    r = httpx.post(f"{app.url}gradio_api/upload", files={"files": ("secret.txt", b"not for you")}, timeout=30)
    uploaded = r.json()[0]  # named without the server's folder (issue 26): mistudio-upload/<hash>/<name>
    real = uploads / uploaded.split("/", 1)[1]
    assert uploaded.startswith("mistudio-upload/") and real.is_file()
    for name in (uploaded, str(real)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{app.url}gradio_api/file={name}", timeout=10)
        assert err.value.code == 403


def test_downloads_still_work(app, client):
    """Files the app returns (exports) are served: the upload folder's block does not catch them."""
    out = client.predict("mine", "topk", 8, 0, 32, 5.0, 3e-4, 1024, 10, 0, 0, api_name="/training_template_export")
    status, path = out
    assert status.startswith("✓") and Path(path).read_text().startswith("{")
