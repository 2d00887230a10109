"""The read API on the launched app (`app.py --auth --read-only`, one server for the file): anonymous → 401, the
login cookie and HTTP Basic get in; calling every route leaves the data directory byte-identical; the page carries
the header poller, and in Chromium the header is refreshed from /mistudio/api/status, not Gradio's queue."""
from __future__ import annotations

import base64
import json

import httpx
import pytest

from api_home import snapshot
from browser import AppServer, Browser
from test_read_api import small_store

ROUTES = ["", "status", "saes", "datasets", "models", "training", "training?model=tiny&dataset=speech", "jobs",
          "jobs?kind=train", "nope"]
BASIC = {"Authorization": "Basic " + base64.b64encode(b"ann:pw").decode()}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from mistudio_core.platform.store import Store

    store = Store(tmp_path_factory.mktemp("read-api") / "home")
    small_store(store)
    with AppServer(store.home, extra_args=["--auth", "ann:pw", "--read-only"], start_timeout=240) as server:
        yield server


def test_auth_and_read_only(app):
    with httpx.Client(base_url=app.url, timeout=30) as anon:
        assert anon.get("mistudio/api/status").status_code == 401
        assert anon.get("mistudio/api/nope").status_code == 401
    before = snapshot(app.home)
    with httpx.Client(base_url=app.url, timeout=30, headers=BASIC) as basic:
        for route in ROUTES:
            for method in ("GET", "HEAD"):
                r = basic.request(method, "mistudio/api/" + route)
                assert r.status_code == (404 if route == "nope" else 200), (route, r.text)
        assert "read-only demo" in basic.get("mistudio/api/status").json()["status"]
        assert basic.get("mistudio/api/saes").json()["rows"][0]["id"] == "sae-1"
    after = snapshot(app.home)
    assert before == after, sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    with httpx.Client(base_url=app.url, timeout=30) as browser_like:  # the login form's cookie
        assert browser_like.post("login", data={"username": "ann", "password": "pw"}).status_code == 200
        status = browser_like.get("mistudio/api/status")
        assert status.status_code == 200 and "CPU" in status.json()["status"]
        page = browser_like.get("")
        assert "mistudio/api/status" in page.text and "mistudio-live" in page.text  # the poller is in the head


@pytest.mark.browser
@pytest.mark.slow  # Chromium plus the whole page on a 2-core box: a minute or more
def test_page_header_polls_without_the_queue(app, artifacts_dir):
    with httpx.Client(base_url=app.url, timeout=30) as session:  # Gradio's /config wants its login cookie
        session.post("login", data={"username": "ann", "password": "pw"}).raise_for_status()
        deps = session.get("config").json()["dependencies"]
    tick = next(d["id"] for d in deps if d.get("api_name") == "header_tick")
    joins: list = []  # fn_index of every event the page sends through Gradio's queue
    polls: list[str] = []
    with Browser(artifacts_dir) as b:
        page = b.open(app.url, wait_for="#u")
        refused: list[str] = []  # 4xx/5xx answers the page got
        page.on("response", lambda r: refused.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.on("request", lambda r: joins.append(json.loads(r.post_data or "{}").get("fn_index"))
                if "queue/join" in r.url else polls.append(r.url) if r.url.endswith("mistudio/api/status") else None)
        page.fill("#u", "ann")
        page.fill("#p", "pw")
        page.click("button[type=submit]")
        try:  # the whole page renders first: minutes when the 2 cores are shared
            page.wait_for_selector("#mistudio-status .mistudio-live", timeout=300_000)
        except Exception:
            b.screenshot(page, "read-api-header-missing")
            raise AssertionError(f"no polled header; status polls {polls}, queue joins {joins}")
        live = page.locator("#mistudio-status .mistudio-live")
        assert "read-only demo" in live.inner_text() and live.locator("strong").count() >= 1
        # The timer ticks once (no built-ins to wait for here) and stops; a quiet window of 7.5 s with no header
        # tick but the poller's requests must follow (waits, not time.sleep: Playwright delivers events only then).
        quiet = False
        for _ in range(8):
            ticks, n_polls = joins.count(tick), len(polls)
            page.wait_for_timeout(7500)
            if joins.count(tick) == ticks and len(polls) - n_polls >= 2:
                quiet = True
                break
        assert quiet, (joins, polls)
        assert 1 <= joins.count(tick) <= 3, joins
        assert page.locator("#mistudio-status.mistudio-polled").count() == 1
        b.screenshot(page, "read-api-header")
    # The login page's favicon is refused to an anonymous visitor (Chromium logs a 401 without the URL); nothing else.
    assert not [r for r in refused if "favicon" not in r], refused
    assert not [e for e in b.console_errors if "status of 401" not in e], b.console_errors
