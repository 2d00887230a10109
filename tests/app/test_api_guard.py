"""Read-only mode leaves the data directory byte-identical after every endpoint has been called; with `--auth`, an
anonymous visitor gets the login form and nothing else (no schema, no config, no files)."""
from __future__ import annotations

import base64
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from api_calls import call_all, problems
from api_home import build_home, snapshot
from browser import AppServer


@pytest.fixture(scope="module")
def ids(tmp_path_factory):
    return build_home(tmp_path_factory.mktemp("guard"))


def test_read_only_changes_nothing_on_disk(ids):
    with AppServer(ids.home, allowed_roots=[ids.data], extra_args=["--read-only"]) as app:
        client = app.client()
        before = snapshot(ids.home)
        results = call_all(client, ids, cancel=False)
        after = snapshot(ids.home)
    assert len(results) > 60
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"read-only mode changed: {changed}"
    bad = problems(results)
    assert not bad, "\n".join(bad)
    refused = [n for n, r in results.items() if "read-only demo mode" in str(r)]
    assert {"datasets_delete", "saes_delete", "training_template_save", "training_start"} <= set(refused)


def _get(url: str, headers: dict | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def _small_home(root):
    """A dataset and an SAE (manifests only): names an anonymous visitor must never see."""
    from mistudio_core.platform.store import Store

    store = Store(root / "home")
    with store.create("datasets", "speech", {"n_docs": 1}, artifact_id="speech-secret"):
        pass
    with store.create("saes", "sae", {"model_id": "m", "hook_name": "blocks.1.hook_resid_post"},
                      artifact_id="sae-secret") as tmp:
        (tmp / "cfg.json").write_text("{}")
    (root / "speech.txt").write_text("hello")
    return SimpleNamespace(home=store.home, sae="sae-secret", dataset="speech-secret",
                           text_file=root / "speech.txt")


def test_anonymous_sees_only_the_login(tmp_path):
    ids = _small_home(tmp_path)
    with AppServer(ids.home, extra_args=["--auth", "ann:pw"]) as app:
        page_status, page = _get(app.url)
        assert page_status == 200 and 'name="password"' in page
        secret_words = ("gradio_api_info", "datasets_add_local", "saes_delete", ids.sae, "miStudio —", "components")
        for path in ("", "?view=api", "?view=api&page=", "config", "gradio_api/info", "gradio_api/info?page=",
                     "gradio_api/openapi.json", "gradio_api/mcp/schema", "gradio_api/queue/status",
                     f"gradio_api/file={ids.home}/saes/{ids.sae}/cfg.json", f"gradio_api/file={ids.text_file}",
                     "gradio_api/startup-events", "theme.css", "gradio_api/app_id", "openapi.json", "docs"):
            status, body = _get(app.url + path)
            assert status in (200, 401, 403, 404), (path, status)
            leaked = [w for w in secret_words if w in body]
            assert not leaked, f"/{path} leaks {leaked}"
            if path == "gradio_api/startup-events":  # Gradio's launch() calls it without a session: a bare bool
                assert body.strip() in ("true", "false", ""), body
                continue
            assert status != 200 or 'name="password"' in body, f"/{path} served content to an anonymous visitor"
        # HTTP Basic credentials work for scripts; wrong ones do not
        good = {"Authorization": "Basic " + base64.b64encode(b"ann:pw").decode()}
        bad = {"Authorization": "Basic " + base64.b64encode(b"ann:nope").decode()}
        assert _get(app.url + "config", bad)[0] == 401
        status, body = _get(app.url + "config", good)
        assert status in (200, 401)  # Gradio's own check wants its cookie; the gate let the request through
        table, *_ = app.client(auth=("ann", "pw")).predict(None, None, api_name="/datasets_list")
        assert [row[0] for row in table["data"]] == [ids.dataset]
