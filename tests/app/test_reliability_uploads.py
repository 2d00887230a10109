"""Upload lifecycle and HTTP Basic, against the real server (`app.py` in a subprocess).

Uploads: nothing stays under `<home>/.uploads` after an action that used the file, after Gradio's own type-check
refusal, or (after `$MISTUDIO_UPLOAD_TTL_S`) after a raw `POST /gradio_api/upload` no action used; the upload's
answer names no server path, and an action given that answer still finds the file (the API and a real browser).

HTTP Basic with `--auth`: the right user and password are accepted on every route family (page, /config,
/gradio_api/info, files, the JSON read API, MCP); a wrong password and anonymous requests are not.
"""
from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest
import requests

from browser import AppServer, Browser

TTL_S = 2
TEXT = "Fellow citizens, the state of the union is strong. " * 20


def leftovers(home) -> list[str]:
    folder = home / ".uploads"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.is_dir() else []


def wait_empty(home, timeout: float = 5.0) -> list[str]:
    end = time.time() + timeout
    while leftovers(home) and time.time() < end:
        time.sleep(0.1)
    return leftovers(home)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("uploads")
    (root / "speech.txt").write_text(TEXT)
    (root / "weights.pt").write_bytes(b"\x80\x04not a text file")
    env = {"MISTUDIO_TABS": "datasets,share,features", "MISTUDIO_UPLOAD_TTL_S": str(TTL_S)}
    with AppServer(root / "home", env=env) as server:
        server.root = root
        yield server


def test_an_action_leaves_no_upload_and_answers_name_no_server_path(app):
    from gradio_client import handle_file

    client = app.client()
    status, _ = client.predict(handle_file(str(app.root / "speech.txt")), "", "speech one",
                               api_name="/datasets_add_upload")[:2]
    assert "Added" in status, status
    assert wait_empty(app.home) == [], "the used upload (or a stray temp file) stayed"
    with pytest.raises(Exception, match="Invalid file type"):  # refused by Gradio before any handler ran
        client.predict(handle_file(str(app.root / "weights.pt")), "", "bad", api_name="/datasets_add_upload")
    assert wait_empty(app.home) == [], "the refused upload stayed"


def test_a_raw_upload_names_no_server_path_and_goes_when_unused(app):
    r = requests.post(app.url + "gradio_api/upload", files={"files": ("notes.txt", TEXT.encode())}, timeout=30)
    assert r.status_code == 200
    (answer,) = r.json()
    assert str(app.home) not in r.text and not answer.startswith("/"), r.text
    assert leftovers(app.home), "the upload is kept a while for the action that will use it"
    payload = {"data": [{"path": answer, "meta": {"_type": "gradio.FileData"}, "orig_name": "notes.txt"}, "",
                        "from raw upload"]}
    r = requests.post(app.url + "gradio_api/call/datasets_add_upload", json=payload, timeout=30)
    event = r.json()["event_id"]
    result = requests.get(app.url + f"gradio_api/call/datasets_add_upload/{event}", timeout=60).text
    assert "Added" in result and str(app.home) not in result, result[:500]
    assert wait_empty(app.home) == []
    requests.post(app.url + "gradio_api/upload", files={"files": ("never-used.txt", b"x")}, timeout=30)
    assert wait_empty(app.home, timeout=TTL_S * 4) == [], "an upload no action used stayed past the TTL"


def test_a_browser_upload_is_added_and_leaves_nothing(app, artifacts_dir):
    with Browser(artifacts_dir) as b:
        page = b.open(app.url)
        page.get_by_role("tab", name="Upload").click()
        with page.expect_file_chooser() as chooser:  # the visible drop zone: the Datasets tab's
            page.get_by_text("Click to Upload").locator("visible=true").first.click()
        chooser.value.set_files(str(app.root / "speech.txt"))
        page.get_by_label("Name (optional)").last.fill("from the browser")
        page.get_by_role("button", name="Add uploaded file").click()
        page.get_by_text("Added from the browser").first.wait_for(timeout=60_000)
        assert str(app.home) not in page.inner_text("body")
    assert wait_empty(app.home) == []


def test_features_table_page_size_is_an_integer_in_the_schema_and_accepted(app):
    info = json.loads(urllib.request.urlopen(app.url + "gradio_api/info", timeout=30).read())
    params = info["named_endpoints"]["/features_table"]["parameters"]
    (size,) = [p for p in params if p["parameter_name"] == "page_size"]
    assert size["type"] == {"type": "integer", "enum": [25, 50, 100, 200]}
    for value in (50, "50"):  # as the schema says, and as a string (what the old schema told clients to send)
        status = app.client().predict(None, "", "", "frequency", "all", 1, value, 0, 0, api_name="/features_table")[0]
        assert "No SAE selected" in status and "not in the list of choices" not in status, status


# ---- HTTP Basic ----------------------------------------------------------------------------------------------
def _get(url: str, headers: dict | None = None, data: bytes | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(200_000).decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_http_basic_reaches_every_route_family(tmp_path):
    home = tmp_path / "home"
    with AppServer(home, extra_args=["--auth", "ann:s3cret-pw", "--mcp"], env={"MISTUDIO_TABS": "datasets,share"}) \
            as app:
        good, bad = _basic("ann", "s3cret-pw"), _basic("ann", "wrong")
        mcp_body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}).encode()
        mcp_headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        routes = {
            "page": ("", None), "config": ("config", None), "info": ("gradio_api/info", None),
            "read API": ("mistudio/api/datasets", None), "theme (a file route)": ("theme.css", None),
            "MCP": ("gradio_api/mcp/", mcp_body),
        }
        for family, (path, body) in routes.items():
            extra = mcp_headers if body else {}
            code, text = _get(app.url + path, {**good, **extra}, body)
            assert code == 200, f"{family}: Basic credentials got {code}: {text[:300]}"
            if family == "page":
                assert "gradio_api_info" in text or "gradio_config" in text, "the app itself, not the login form"
            if family == "MCP":
                assert "datasets" in text, text[:300]
            code, text = _get(app.url + path, {**bad, **extra}, body)
            assert code in (200, 401) and ("Log in" in text if code == 200 else True), family
            assert "gradio_config" not in text and "datasets_add" not in text, f"{family} leaked with a wrong password"
            code, text = _get(app.url + path, extra, body)
            assert (code == 200 and "Log in" in text) or code == 401, f"{family}: anonymous got {code}"
            assert "datasets_add" not in text, f"{family} leaked to an anonymous visitor"
        # A file the app serves (the page's own uploaded-file route family): Basic gets through the gate to Gradio.
        code, _ = _get(app.url + "gradio_api/file=" + str(home / "nothing.txt"), good)
        assert code != 401, "the file route refused Basic credentials"
