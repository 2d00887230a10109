"""The JSON read API (`pages/read_api.py`) behind `server.Gate`, in-process over ASGI (no server start): each route
answers what the page shows, as plain JSON; unknown names, other methods and bugs answer JSON errors without
tracebacks or server paths; with auth an anonymous caller gets 401 and a session cookie or HTTP Basic gets in."""
from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace

import httpx
import pytest

from mistudio_core.jobs import JobRegistry
from pages.common import hide_paths
from pages.context import AppContext
from pages.read_api import ReadApi, markdown_html, poller_head
from pages.server import Gate

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


def small_store(store):
    """A model, a dataset tokenized for it (its name holds the server path), an SAE and a queued training job."""
    with store.create("models", "tiny", {"architecture": "llama", "hook_points": HOOKS, "n_layers": 2,
                                         "d_model": 32, "source": {"type": "local"}}, artifact_id="tiny"):
        pass
    with store.create("datasets", f"{store.home}/speech", {"n_docs": 3, "tokenizations": ["tiny"],
                                                          "source": {"type": "local", "path": "speech.txt"}},
                      artifact_id="speech"):
        pass
    with store.create("saes", "my sae", {"model_id": "tiny", "hook_name": HOOKS[1], "architecture": "topk", "k": 4,
                                         "d_sae": 64, "metrics": {"l0": 4.0}}, artifact_id="sae-1"):
        pass
    jobs = JobRegistry(store)
    job = jobs.submit("train", {"dataset_id": "speech", "model_id": "tiny", "hook_names": [HOOKS[1]]},
                      name="first run")
    return jobs, job


@pytest.fixture
def ctx(store):
    jobs, job = small_store(store)
    hide_paths((str(store.home), ""))
    c = AppContext(store=store, jobs=jobs, allowed_roots=[store.home])
    c.shared["job"] = job
    return c


def header(ctx):
    return f"Built-ins ready · **read-only demo**\n\nRunning in {ctx.store.home} · CPU 5% <b>x</b>", True


async def _app(scope, receive, send):  # stands in for Gradio: the gate must not reach it for /mistudio/api
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": b"gradio"})


def call(ctx, path, method="GET", headers=None, auth=None, root_path=""):
    """One request through Gate(ReadApi) over ASGI; returns the httpx response."""
    gradio_app = SimpleNamespace(auth=auth, tokens={"tok123": "ann"}, cookie_id="c1")
    gate = Gate(_app, gradio_app=gradio_app, reads=ReadApi(ctx, header))

    async def go():
        transport = httpx.ASGITransport(app=gate, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, root_path + path, headers=headers)
    return asyncio.run(go())


def test_status_is_the_header_with_safe_html(ctx):
    r = call(ctx, "/mistudio/api/status")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["ready"] is True and "**read-only demo**" in body["status"]
    assert str(ctx.store.home) not in r.text  # the server path is hidden
    assert body["status_html"] == ("<p>Built-ins ready · <strong>read-only demo</strong></p>"
                                   "<p>Running in . · CPU 5% &lt;b&gt;x&lt;/b&gt;</p>")


def test_libraries_list_what_the_pages_show(ctx):
    saes = call(ctx, "/mistudio/api/saes").json()
    assert saes["columns"][:3] == ["id", "model", "hook point"]
    assert saes["rows"][0]["id"] == "sae-1" and saes["rows"][0]["architecture"] == "topk (k=4)"
    assert saes["choices"][0]["id"] == "sae-1" and saes["hint"] is None
    datasets = call(ctx, "/mistudio/api/datasets")
    assert str(ctx.store.home) not in datasets.text
    datasets = datasets.json()
    assert [r["id"] for r in datasets["rows"]] == ["speech"] and datasets["rows"][0]["tokenized for"] == "tiny"
    assert datasets["models"] == [{"id": "tiny", "label": "tiny"}]
    models = call(ctx, "/mistudio/api/models").json()
    assert models["rows"][0]["layers"] == 2 and models["choices"] == [{"id": "tiny", "label": "tiny"}]


def test_training_choices_and_jobs(ctx):
    t = call(ctx, "/mistudio/api/training?model=nope&dataset=speech").json()
    assert t["models"] == ["tiny"] and t["model"] == "tiny" and t["datasets"] == ["speech"]
    assert t["hooks"] == HOOKS and t["hook"] and t["hook"][0] in HOOKS and "quick" in t["templates"]
    assert t["jobs"]["rows"][0]["job"] == ctx.shared["job"] and t["jobs"]["rows"][0]["status"] == "queued"
    jobs = call(ctx, "/mistudio/api/jobs?kind=train").json()["jobs"]
    assert [(j["id"], j["kind"], j["status"], j["queue_position"]) for j in jobs] == [
        (ctx.shared["job"], "train", "queued", 1)]
    assert call(ctx, "/mistudio/api/jobs?kind=extract").json() == {"jobs": []}


def test_unknown_names_methods_and_bugs_answer_json(ctx, monkeypatch):
    r = call(ctx, "/mistudio/api/nope")
    assert r.status_code == 404 and r.json()["routes"] == ["status", "saes", "datasets", "models", "training", "jobs"]
    assert "Valid: status, saes" in r.json()["error"]
    index = call(ctx, "/mistudio/api/").json()["routes"]
    assert set(index) == {"status", "saes", "datasets", "models", "training", "jobs"}
    r = call(ctx, "/mistudio/api/status", method="POST")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD" and "GET" in r.json()["error"]
    head = call(ctx, "/mistudio/api/models", method="HEAD")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 10
    assert call(ctx, "/other").status_code == 299  # everything else still goes to Gradio

    def broken(store, *a, **k):
        raise RuntimeError(f"disk on fire at {store.home}/saes")
    monkeypatch.setattr(type(ctx.store), "list", broken)
    r = call(ctx, "/mistudio/api/saes")
    assert r.status_code == 500 and "Unexpected error in read saes (RuntimeError" in r.json()["error"]
    assert "Traceback" not in r.text and str(ctx.store.home) not in r.text


def test_root_path_is_stripped(ctx):
    r = call(ctx, "/mistudio/api/status", root_path="/proxy/app")
    assert r.status_code == 200 and r.json()["ready"] is True


def test_auth_covers_the_read_api(ctx):
    users = {"ann": "pw"}
    assert call(ctx, "/mistudio/api/status", auth=users).status_code == 401
    assert call(ctx, "/mistudio/api/nope", auth=users).status_code == 401  # not even the route names
    basic = {"Authorization": "Basic " + base64.b64encode(b"ann:pw").decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(b"ann:no").decode()}
    assert call(ctx, "/mistudio/api/saes", headers=basic, auth=users).json()["rows"][0]["id"] == "sae-1"
    assert call(ctx, "/mistudio/api/saes", headers=wrong, auth=users).status_code == 401
    cookie = {"Cookie": "access-token-c1=tok123"}
    assert call(ctx, "/mistudio/api/status", headers=cookie, auth=users).status_code == 200


def test_markdown_html_escapes_before_formatting():
    assert markdown_html("a **<script>** `x`\nb\n\nc") == \
        "<p>a <strong>&lt;script&gt;</strong> <code>x</code><br>b</p><p>c</p>"


def test_poller_head_polls_the_status_route():
    head = poller_head(2.5)
    assert "mistudio/api/status" in head and "const PERIOD_MS = 2500;" in head and "#mistudio-status" in head
    json.dumps(head)  # goes into Gradio's config as a string


@pytest.mark.parametrize("value", ["\x00", "x" * 5000, "../../../etc/passwd", "/etc/passwd", "💥\u202e", "%00", ""])
def test_hostile_query_values_get_json_answers_without_tracebacks_or_paths(ctx, value):
    from urllib.parse import quote

    for route, param in (("training", "model"), ("training", "dataset"), ("jobs", "kind"), ("saes", "x")):
        r = call(ctx, f"/mistudio/api/{route}?{param}={quote(value)}")
        assert r.status_code in (200, 400, 404), (route, param, r.status_code, r.text[:200])
        body = r.json()  # always JSON
        text = json.dumps(body)
        assert "Traceback" not in text and str(ctx.store.home) not in text, text[:300]
        if r.status_code != 200:
            assert body.get("error"), body
