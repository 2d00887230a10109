"""`--mcp`: the documented endpoints as MCP tools (Gradio's built-in MCP server), listed and called with the `mcp`
client library; descriptions come from the handlers' docstrings (or docs/API.md); auth and read-only hold."""
from __future__ import annotations

import asyncio
import base64

import pytest

pytest.importorskip("mcp")

from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamablehttp_client  # noqa: E402

from browser import AppServer  # noqa: E402
from mistudio_core.platform.store import Store  # noqa: E402

SAE = {"model_id": "m", "hook_name": "blocks.1.hook_resid_post", "architecture": "topk", "d_in": 32, "d_sae": 64,
       "k": 4, "source": "trained"}


async def _session(url: str, headers: dict | None, work):
    async with streamablehttp_client(url + "gradio_api/mcp/", headers=headers or {}) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)


def _home(tmp_path):
    store = Store(tmp_path / "home")
    with store.create("saes", "demo sae", SAE, artifact_id="demo-sae") as tmp:
        (tmp / "cfg.json").write_text('{"architecture": "topk", "d_in": 32, "d_sae": 64, "k": 4}')
    return store.home


def test_tools_listed_described_and_callable_read_only(tmp_path):
    with AppServer(_home(tmp_path), extra_args=["--mcp", "--read-only"]) as app:
        async def work(session):
            tools = {t.name: t for t in (await session.list_tools()).tools}
            detail = await session.call_tool("saes_detail", {"sae_id": "demo-sae"})
            delete = await session.call_tool("saes_delete", {"sae_id": "demo-sae"})
            return tools, detail, delete

        tools, detail, delete = asyncio.run(_session(app.url, None, work))
    assert {"saes_detail", "datasets_list", "models_summary", "header_status"} <= set(tools)
    assert tools["models_summary"].description.startswith("Architecture, size")  # the handler's docstring
    assert all(t.description for t in tools.values()), [n for n, t in tools.items() if not t.description]
    assert "demo-sae" in str(detail.content) and "✓" in str(detail.content)
    assert "read-only demo mode" in str(delete.content)
    assert (tmp_path / "home" / "saes" / "demo-sae").is_dir()


def test_mcp_honours_auth(tmp_path):
    with AppServer(_home(tmp_path), extra_args=["--mcp", "--auth", "ann:pw"]) as app:
        with pytest.raises(Exception):  # noqa: B017 — 401 surfaces as the client library's own error type
            asyncio.run(_session(app.url, None, lambda s: s.list_tools()))
        good = {"Authorization": "Basic " + base64.b64encode(b"ann:pw").decode()}
        tools = asyncio.run(_session(app.url, good, lambda s: s.list_tools()))
    assert any(t.name == "saes_list" for t in tools.tools)
