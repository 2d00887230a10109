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
`<home>/.uploads` (emptied at start-up), and the handler wrapper (`hardening`) deletes each upload after use.

**Cheap reads skip the queue.** With a `read_api.ReadApi`, the gate itself answers `/mistudio/api/<name>` (JSON,
no Gradio queue), after the login check above.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hmac
import html
import os
import shutil
import tempfile
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


def gradio_temp_dir() -> Path:
    """Gradio's upload and cache folder as it stands ($GRADIO_TEMP_DIR, else its default)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


FILE_ROUTE = "/gradio_api/file="
# Gradio's own launch() calls this from localhost without a session; it answers true/false and reveals nothing.
OPEN_PATHS = ("/gradio_api/startup-events",)


class Gate:
    """ASGI middleware: no uploads served back; with auth, anonymous requests see only the login form."""

    def __init__(self, app, gradio_app, message: str = "Log in to continue.", reads=None):
        self.app, self.gradio_app, self.message = app, gradio_app, message
        self.reads = reads  # a `read_api.ReadApi` serving /mistudio/api/… outside Gradio's queue, or None

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "/")
        root = (scope.get("root_path") or "").rstrip("/")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        if path.startswith(FILE_ROUTE) and self._is_upload(unquote(path[len(FILE_ROUTE):])):
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
        return await self.app(scope, receive, send)

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
        cookies = dict(part.strip().partition("=")[::2] for part in headers.get("cookie", "").split(";")
                       if "=" in part)
        cid = getattr(self.gradio_app, "cookie_id", "")
        token = cookies.get(f"access-token-{cid}") or cookies.get(f"access-token-unsecure-{cid}")
        if token and token in self.gradio_app.tokens:
            return self.gradio_app.tokens[token]
        return _basic_user(headers.get("authorization", ""), self.gradio_app.auth)


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
