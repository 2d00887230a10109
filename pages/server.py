"""Serving rules Gradio does not enforce by itself: what an anonymous visitor may see, and where uploads live.

`Gate` is ASGI middleware in front of every route (installed by `install_gate` into the app Gradio builds inside
`launch()`, before its first request):

**Login wall.** With `--auth`, Gradio protects `/config` and the API, but its page route still inlines the whole
API schema (`window.gradio_api_info`: every endpoint and parameter) into the HTML it serves to anyone, `/?view=api`
included. A request without a valid session cookie (or HTTP Basic credentials, for scripts and MCP clients that
cannot post a login form) gets a plain login form at `/`, the login endpoint itself, and 401 for everything else:
no schema, no config, no files, no assets that name the app.

**Uploads are never served back.** Gradio serves every file of its upload folder through `/gradio_api/file=`, to
anyone who knows the path. The gate refuses files that arrived through `/upload` (Gradio's `upload_file_set`);
files the handlers return (exports, downloads) are served as before. `uploads_dir` makes the folder
`<home>/.uploads` (emptied at start-up), and the handler wrapper (`hardening`) deletes each upload after use or
refusal; `start_upload_sweeper` removes uploads no action used. An upload's answer names each file as
`mistudio-upload/<hash>/<name>`, never the server's folder; the gate turns a FileData `"path"` starting so back into
the real path on the way in, so Gradio's own checks see what they always saw.

**HTTP Basic everywhere.** A request let in on Basic credentials carries a session cookie of that user into
Gradio, whose own checks (`/config`, `/gradio_api/info`, files, MCP) know only the cookie.

**Cheap reads skip the queue.** With a `read_api.ReadApi`, the gate itself answers `/mistudio/api/<name>` (JSON,
no Gradio queue), after the login check above.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hmac
import html
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote

UPLOADS = ".uploads"

LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>miStudio: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:22rem;margin:12vh auto;padding:0 1rem}}
input,button{{display:block;width:100%;margin:.4rem 0;padding:.5rem;font-size:1rem;box-sizing:border-box}}
#err{{color:#b91c1c;min-height:1.2em}}</style></head><body>
<h2>miStudio</h2><p>{message}</p>
<form id="login"><label for="u">Username</label>
<input id="u" name="username" autocomplete="username" required>
<label for="p">Password</label>
<input id="p" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button><p id="err"></p></form>
<script>
document.getElementById('login').addEventListener('submit', async (e) => {{
  e.preventDefault();
  const r = await fetch('login', {{method: 'POST', body: new URLSearchParams(new FormData(e.target))}});
  if (r.ok) location.reload(); else document.getElementById('err').textContent = 'Wrong user or password.';
}});
</script></body></html>"""


def uploads_dir(home: Path) -> Path:
    """`<home>/.uploads`, empty, and made Gradio's upload folder for the server about to start."""
    folder = Path(home).resolve() / UPLOADS
    shutil.rmtree(folder, ignore_errors=True)  # uploads of a previous run were never ingested: drop them
    folder.mkdir(parents=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def start_upload_sweeper(demo, folder: Path, ttl_s: float | None = None) -> threading.Thread:
    """Remove uploads no event used within `ttl_s` ($MISTUDIO_UPLOAD_TTL_S, default an hour): a file posted to
    /gradio_api/upload and never sent to an action would otherwise stay until the next start. Events delete the
    uploads they receive at once (`hardening`); only Gradio's record of uploads (`upload_file_set`) is swept, so
    the files Gradio caches for downloads in the same folder stay."""
    ttl = float(ttl_s if ttl_s is not None else os.environ.get("MISTUDIO_UPLOAD_TTL_S") or 3600)
    folder = Path(folder).resolve()

    def sweep() -> None:
        while True:
            time.sleep(max(0.2, min(60.0, ttl / 2)))
            uploaded = getattr(demo, "upload_file_set", set())
            for name in list(uploaded):
                p = Path(os.path.realpath(name))
                try:
                    if folder in p.parents and time.time() - p.stat().st_mtime > ttl:
                        shutil.rmtree(folder / p.relative_to(folder).parts[0], ignore_errors=True)
                except OSError:
                    pass  # gone already (its event removed it)
                if not p.exists():
                    uploaded.discard(name)
    thread = threading.Thread(target=sweep, name="mistudio-upload-sweeper", daemon=True)
    thread.start()
    return thread


def gradio_temp_dir() -> Path:
    """Gradio's upload and cache folder as it stands ($GRADIO_TEMP_DIR, else its default)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


FILE_ROUTE = "/gradio_api/file="
UPLOAD_ROUTE = "/gradio_api/upload"
UPLOAD_TOKEN = "mistudio-upload"  # what an upload's answer says instead of the server's upload folder
# Gradio's own launch() calls this from localhost without a session; it answers true/false and reveals nothing.
OPEN_PATHS = ("/gradio_api/startup-events",)


class Gate:
    """ASGI middleware: no uploads served back; with auth, anonymous requests see only the login form."""

    def __init__(self, app, gradio_app, message: str = "Log in to continue.", reads=None):
        self.app, self.gradio_app, self.message = app, gradio_app, message
        self.reads = reads  # a `read_api.ReadApi` serving /mistudio/api/… outside Gradio's queue, or None
        self._basic_tokens: dict[str, str] = {}  # user -> the session token their Basic logins carry into Gradio

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "/")
        root = (scope.get("root_path") or "").rstrip("/")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        wanted = unquote(path[len(FILE_ROUTE):]) if path.startswith(FILE_ROUTE) else None
        if wanted is not None and (wanted.startswith(UPLOAD_TOKEN + "/") or self._is_upload(wanted)):
            return await _respond(send, 403, "application/json", '{"detail": "Uploaded files are not served."}')
        method = scope.get("method", "GET")
        if getattr(self.gradio_app, "auth", None) and not (
                self._user(scope) or (path.rstrip("/") == "/login" and method == "POST") or path in OPEN_PATHS):
            if scope["type"] == "http" and path in ("", "/") and method in ("GET", "HEAD"):
                return await _respond(send, 200, "text/html; charset=utf-8",
                                      LOGIN_PAGE.format(message=html.escape(self.message)), method == "HEAD")
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await _respond(send, 401, "application/json", '{"detail": "Not authenticated"}')
        if self.reads is not None and scope["type"] == "http" and self.reads.handles(path):
            return await self.reads(scope, send, path)  # past the login check: --auth covers the read API too
        scope = self._with_session(scope)
        folder = getattr(self.gradio_app, "uploaded_file_dir", None)
        if scope["type"] == "http" and method == "POST" and folder:
            if path.rstrip("/") == UPLOAD_ROUTE:  # the answer names each upload without the server's folder
                send = _rewritten_response(send, _path_swap(folder, to_token=True))
            elif path.startswith("/gradio_api/") and _is_json(scope):  # ...and a call naming one gets it back
                scope, receive = await _rewritten_request(scope, receive, _path_swap(folder, to_token=False))
        return await self.app(scope, receive, send)

    def _with_session(self, scope) -> dict:
        """HTTP Basic credentials count on every route: Gradio itself checks only its session cookie (`/config`,
        `/gradio_api/info`, files, MCP answered 401 to a right Basic login), so a request that passed the gate on
        Basic credentials carries a session cookie of that user (one per user, made on first use) into Gradio."""
        if not getattr(self.gradio_app, "auth", None):
            return scope
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self._cookie_user(headers) is not None:
            return scope
        user = _basic_user(headers.get("authorization", ""), self.gradio_app.auth)
        if user is None:
            return scope
        token = self._basic_tokens.get(user)
        if token is None or token not in self.gradio_app.tokens:
            token = self._basic_tokens[user] = secrets.token_urlsafe(32)
            self.gradio_app.tokens[token] = user
        cookie = f"access-token-{getattr(self.gradio_app, 'cookie_id', '')}={token}"
        old = headers.get("cookie")
        rest = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"cookie"]
        return dict(scope, headers=[*rest, (b"cookie", (f"{old}; {cookie}" if old else cookie).encode("latin-1"))])

    def _is_upload(self, file_path: str) -> bool:
        blocks = self.gradio_app.get_blocks() if hasattr(self.gradio_app, "get_blocks") else None
        uploaded = getattr(blocks, "upload_file_set", None) or set()
        try:
            wanted = os.path.realpath(file_path)
        except (OSError, ValueError):
            return True  # not a path any upload could have: refuse rather than guess
        return file_path in uploaded or wanted in uploaded  # Gradio records resolved absolute paths

    def _user(self, scope) -> str | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        return self._cookie_user(headers) or _basic_user(headers.get("authorization", ""), self.gradio_app.auth)

    def _cookie_user(self, headers: dict) -> str | None:
        cookies = dict(part.strip().partition("=")[::2] for part in headers.get("cookie", "").split(";")
                       if "=" in part)
        cid = getattr(self.gradio_app, "cookie_id", "")
        token = cookies.get(f"access-token-{cid}") or cookies.get(f"access-token-unsecure-{cid}")
        return self.gradio_app.tokens.get(token) if token else None


def _basic_user(header: str, auth) -> str | None:
    """The user of a valid `Authorization: Basic …` header against Gradio's `{user: password}` table."""
    kind, _, value = header.partition(" ")
    if kind.lower() != "basic" or not isinstance(auth, dict):
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    expected = auth.get(user)
    return user if expected is not None and hmac.compare_digest(str(expected), password) else None


def _path_swap(folder: str, to_token: bool):
    """bytes -> bytes: the upload folder (as JSON spells it, also resolved) swapped with `UPLOAD_TOKEN`, or back."""
    real = [json.dumps(str(f).rstrip("/") + "/")[1:-1].encode() for f in (str(folder), os.path.realpath(folder))]
    token = (UPLOAD_TOKEN + "/").encode()

    def swap(body: bytes) -> bytes:
        if to_token:
            for r in real:
                body = body.replace(r, token)
            return body
        return back.sub(lambda m: m.group(1) + real[0], body)  # only a FileData's "path", never typed text
    back = re.compile(rb'("path"\s*:\s*")' + re.escape(token))
    return swap


def _is_json(scope) -> bool:
    return any(k.lower() == b"content-type" and b"json" in v.lower() for k, v in scope.get("headers", []))


def _rewritten_response(send, change):
    """`send` with the (buffered) response body passed through `change`, its content-length fixed."""
    start: dict = {}
    chunks: list[bytes] = []

    async def wrapped(message):
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            return await send(message)
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = change(b"".join(chunks))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    return wrapped


async def _rewritten_request(scope, receive, change):
    """(scope, receive) with the request body read whole and passed through `change`, its content-length fixed."""
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client left: nothing to rewrite
            return scope, _replay(message, receive)
        body += message.get("body", b"")
        more = message.get("more_body", False)
    body = change(body)
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
    scope = dict(scope, headers=[*headers, (b"content-length", str(len(body)).encode())])
    return scope, _replay({"type": "http.request", "body": body, "more_body": False}, receive)


def _replay(first: dict, receive):
    sent = False

    async def wrapped():
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()
    return wrapped


async def _respond(send, status: int, content_type: str, body: str, head: bool = False) -> None:
    data = body.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode()),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b"" if head else data})


_GATE_ARGS: dict = {}  # what the next server app's Gate gets (the latest install_gate call wins)


def install_gate(auth_message: str = "Log in to continue.", reads=None) -> None:
    """Make every Gradio server app built from now on start with `Gate` in front (Gradio builds the app inside
    `launch()`, before its first request, so the gate is in place from the first byte served). `reads`: a
    `read_api.ReadApi` the gate serves at /mistudio/api/ (after its login check)."""
    from gradio.routes import App

    _GATE_ARGS.update(message=auth_message, reads=reads)
    if getattr(App.create_app, "_mistudio_gate", False):
        return
    original = App.create_app

    @functools.wraps(original)
    def create_app(*args, **kwargs):
        app = original(*args, **kwargs)
        app.add_middleware(Gate, gradio_app=app, **_GATE_ARGS)
        return app

    create_app._mistudio_gate = True
    App.create_app = staticmethod(create_app)
