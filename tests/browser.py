"""Test harness for the app: launch `app.py` as a subprocess on a free port with its own MISTUDIO_HOME, talk to it
with `gradio_client`, and drive it in Debian's Chromium through Playwright.

    with AppServer(home, allowed_roots=[data]) as app:          # waits until the page answers
        client = app.client()                                   # gradio_client.Client
        with Browser(artifacts_dir) as b:                       # Chromium, console errors collected
            page = b.open(app.url)
            b.screenshot(page, "datasets")                      # -> artifacts_dir/datasets.png
            b.settle(page)                                      # every event the page sent has answered
        assert not b.console_errors

On a busy machine answers come seconds late and out of order: wait for what the user would see (a status line, a
value), or `settle` / `answered` before acting on a page whose refreshes are still in flight; never a fixed pause.

Import from tests as `from browser import AppServer, Browser` (pytest puts `tests/` on sys.path).
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
# Console noise that is not the app's fault: Chromium's own complaints about features it was started without.
IGNORED_CONSOLE = ("favicon.ico", "Permissions policy", "ERR_BLOCKED_BY_CLIENT")


# Which Gradio events the page sent (queue/join: event id → dependency id) and which have answered (a
# process_completed message on the page's event stream, read from a copy of that stream). Gradio's client calls the
# global fetch, so wrapping it before the page's scripts run sees both.
TRACK_EVENTS_JS = """(() => {
  const t = window.__mistudioEvents = {joined: {}, done: {}, inflight: 0};
  const orig = window.fetch.bind(window);
  async function read(stream) {
    const reader = stream.getReader(), dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buf += dec.decode(value, {stream: true});
      const lines = buf.split('\\n');
      buf = lines.pop();
      for (const line of lines) {
        if (!line.startsWith('data:')) continue;
        try { const m = JSON.parse(line.slice(5)); if (m.msg === 'process_completed') t.done[m.event_id] = true; }
        catch (e) {}
      }
    }
  }
  window.fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : (input && input.url) || String(input);
    if (url.includes('queue/join')) {
      t.inflight++;
      try {
        const res = await orig(input, init);
        const fn = init && typeof init.body === 'string' ? JSON.parse(init.body).fn_index : undefined;
        try { const j = await res.clone().json(); if (j && j.event_id) t.joined[j.event_id] = fn; } catch (e) {}
        return res;
      } finally { t.inflight--; }
    }
    const res = await orig(input, init);
    if (url.includes('queue/data') && res.body) {
      const [mine, theirs] = res.body.tee();
      read(mine).catch(() => {});
      return new Response(theirs, {status: res.status, statusText: res.statusText, headers: res.headers});
    }
    return res;
  };
})();"""
SETTLED_JS = ("() => { const t = window.__mistudioEvents; return !!t && t.inflight === 0 && "
              "Object.keys(t.joined).every(id => t.done[id]); }")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`python app.py` on 127.0.0.1:<free port>; stopped (its own process group only) on exit."""

    def __init__(self, home: Path, allowed_roots: list[Path] = (), extra_args: list[str] = (),
                 builtins: bool = False, start_timeout: float = 120.0, env: dict | None = None):
        self.home, self.port = Path(home), free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.args = [sys.executable, str(REPO / "app.py"), "--home", str(home), "--port", str(self.port),
                     "--host", "127.0.0.1", *[a for r in allowed_roots for a in ("--allowed-root", str(r))],
                     *([] if builtins else ["--no-builtins"]), *extra_args]
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                    "GRADIO_ANALYTICS_ENABLED": "False", "MISTUDIO_AUTH": "", **(env or {})}
        self.start_timeout = start_timeout
        self.log_path = self.home.parent / f"app-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "AppServer":
        self.home.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + self.start_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log()}")
            try:
                urllib.request.urlopen(self.url + "config", timeout=2)
                return self
            except urllib.error.HTTPError as e:  # 401/403 behind auth still means the server is up
                if e.code in (401, 403):
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise TimeoutError(f"app did not answer within {self.start_timeout} s:\n{self.log()}")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group we started, nothing else
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, **kwargs):
        from gradio_client import Client

        return Client(self.url, verbose=False, **kwargs)


@contextlib.contextmanager
def served(demo) -> Iterator[str]:
    """Serve a `gr.Blocks` (one page built in-process, e.g. with a model swapped for a tiny one) on a free port;
    yields its URL and closes it afterwards."""
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


class Browser:
    """Chromium via Playwright; every console error and uncaught page error lands in `console_errors`."""

    def __init__(self, artifacts_dir: Path, width: int = 1400, height: int = 1000):
        self.artifacts_dir = Path(artifacts_dir)
        self.viewport = {"width": width, "height": height}
        self.console_errors: list[str] = []

    def __enter__(self) -> "Browser":
        from playwright.sync_api import expect, sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        self._context = self._browser.new_context(viewport=self.viewport)
        # Bounds for waits that name no timeout (a click waiting for its element, an `expect`): on 2 shared cores
        # under load a page answers in tens of seconds, not Playwright's 30 s / 5 s. The waits are for conditions,
        # so a fast machine pays nothing.
        self._context.set_default_timeout(60_000)
        self._context.set_default_navigation_timeout(120_000)
        expect.set_options(timeout=30_000)
        return self

    def __exit__(self, *exc) -> None:
        self._context.close()
        self._browser.close()
        self._pw.stop()

    def open(self, url: str, wait_for: str | None = "#mistudio-status", keep_others: bool = False):
        """A new tab on `url`. Earlier tabs are closed unless `keep_others`: Chromium allows 6 connections per host
        and every open Gradio page holds one for its event stream, so a pile of stale pages starves new ones."""
        if not keep_others:
            for old in self._context.pages:
                old.close()
        page = self._context.new_page()
        page.on("console", lambda m: m.type == "error" and self._record(f"console: {m.text}"))
        page.on("pageerror", lambda e: self._record(f"pageerror: {e}"))
        page.add_init_script(TRACK_EVENTS_JS)  # for `settle` and `answered`
        page.goto(url, wait_until="domcontentloaded")
        if wait_for:
            page.wait_for_selector(wait_for, timeout=180_000)  # the whole app renders first: slow on a busy box
        return page

    @staticmethod
    def settle(page, timeout_s: float = 180.0) -> None:
        """Wait until every event the page has sent has answered: on-load refreshes and `.then` chains have landed
        and will not overwrite what the test does next (a busy machine delivers them many seconds late)."""
        for _ in range(2):  # twice, a moment apart: an answer may chain a new event (`.then`)
            page.wait_for_function(SETTLED_JS, timeout=timeout_s * 1000, polling=300)
            page.wait_for_timeout(300)
        page.wait_for_function(SETTLED_JS, timeout=timeout_s * 1000, polling=300)

    @staticmethod
    def answered(page, fn_index: int, timeout_s: float = 180.0) -> None:
        """Wait until an event of the dependency `fn_index` (its id in /config) was sent and has answered."""
        page.wait_for_function("fn => Object.entries(window.__mistudioEvents.joined).some(([id, f]) => "
                               "f === fn && window.__mistudioEvents.done[id])", arg=fn_index,
                               timeout=timeout_s * 1000, polling=300)

    def _record(self, text: str) -> None:
        if not any(s in text for s in IGNORED_CONSOLE):
            self.console_errors.append(text)

    def screenshot(self, page, name: str) -> Path:
        path = self.artifacts_dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
