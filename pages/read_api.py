"""A plain JSON read API beside Gradio: `GET <root>/mistudio/api/<name>` answers the page's cheap reads (header
status, libraries, training choices, jobs) without Gradio's queue.

Why: through the queue each read costs the server ~20 ms of CPU (queue join, event stream, per-event bookkeeping)
while the handler itself takes 0.03–1.7 ms; 30 open pages polling the header took half a core from a training on a
2-core machine. Here a read is one HTTP request answered by `server.Gate` (ASGI, in front of Gradio, after its
login check: `--auth` protects these routes exactly like every other one), the handler run on a worker thread.

Rules: GET and HEAD only (405 otherwise); an unknown name is a 404 whose JSON lists the valid ones; failures answer
`{"error": message}` with a 4xx/5xx status, never a traceback, and no string in any answer shows a server path
(`common.scrub`). Nothing here writes, so read-only mode stays byte-identical. The routes reuse the pages' own
functions (`saes.refresh`, `datasets.refresh`, `models.refresh`, `training.choices`, `training.jobs_table`), so
the JSON always lists what the page shows.

`POLLER_HEAD` is the page's side: a script (for `launch(head=…)`) that refreshes the header from `status` every
3 s instead of a Gradio timer.
"""
from __future__ import annotations

import html
import json
import re
from typing import Any, Callable
from urllib.parse import parse_qs

import anyio
import anyio.to_thread

from mistudio_core.platform.errors import MistudioError, NotFoundError

from .common import scrub, unexpected
from .context import AppContext

PREFIX = "/mistudio/api"
# Reads are short; a cap keeps a burst of them from taking every worker thread Gradio's own handlers use.
THREADS = 8


def markdown_html(text: str) -> str:
    """Safe HTML for the header's Markdown: escaped first, then `**bold**`, `` `code` ``, paragraphs, line breaks."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"`([^`\n]+)`", r"<code>\1</code>", out)
    paragraphs = [p.strip().replace("\n", "<br>") for p in re.split(r"\n\s*\n", out) if p.strip()]
    return "".join(f"<p>{p}</p>" for p in paragraphs)


def _table(frame) -> dict:
    """A page's DataFrame as `{"columns": [...], "rows": [{column: value}, ...]}` (NaN → null)."""
    return {"columns": [str(c) for c in frame.columns], "rows": json.loads(frame.to_json(orient="records"))}


def _choices(update: dict) -> list[dict]:
    """A dropdown update's `(label, id)` choices as `[{"id", "label"}]`."""
    out = []
    for c in update.get("choices") or []:
        label, value = (c, c) if isinstance(c, str) else c
        out.append({"id": value, "label": label})
    return out


def saes(ctx: AppContext, query: dict) -> dict:
    from . import saes as page

    frame, dropdown, hint = page.refresh(ctx, None)
    return {**_table(frame), "choices": _choices(dropdown), "hint": hint if isinstance(hint, str) else None}


def datasets(ctx: AppContext, query: dict) -> dict:
    from . import datasets as page

    frame, dataset_dd, model_dd = page.refresh(ctx, None, None)
    return {**_table(frame), "choices": _choices(dataset_dd), "models": _choices(model_dd)}


def models(ctx: AppContext, query: dict) -> dict:
    from . import models as page

    frame, dropdown = page.refresh(ctx, None)
    return {**_table(frame), "choices": _choices(dropdown)}


def training(ctx: AppContext, query: dict) -> dict:
    from . import training as page

    dataset_u, model_u, hooks_u, templates_u = page.choices(ctx, query.get("dataset"), query.get("model"))
    return {"models": model_u["choices"], "model": model_u["value"],
            "datasets": dataset_u["choices"], "dataset": dataset_u["value"],
            "hooks": hooks_u["choices"], "hook": hooks_u["value"], "templates": templates_u["choices"],
            "jobs": _table(page.jobs_table(ctx))}


def jobs(ctx: AppContext, query: dict) -> dict:
    kind = query.get("kind") or None
    records = ctx.jobs.list(kind) if ctx.jobs else []
    return {"jobs": [{"id": r["id"], "kind": r.get("kind"), "name": r.get("name"), "status": r["status"],
                      "progress": (r.get("progress") or {}).get("fraction"), "queue_position": r.get("queue_position"),
                      "stale": bool(r.get("stale")), "created": r.get("created")} for r in records]}


DOCS = {
    "status": "the header: {status (Markdown), status_html, ready (built-ins prepared)}",
    "saes": "the SAE library: {columns, rows, choices [{id, label}], hint}",
    "datasets": "the dataset library: {columns, rows, choices, models (tokenizer choices)}",
    "models": "the model library: {columns, rows, choices}",
    "training": "the Training form's choices (?model=&dataset=): {models, model, datasets, dataset, hooks, hook, "
                "templates, jobs (table)}",
    "jobs": "every job (?kind=train|extract|…): {jobs: [{id, kind, name, status, progress, queue_position, stale, "
            "created}]}",
}


class ReadApi:
    """The routes of one app; `server.Gate` calls it for paths under `PREFIX` once the request may pass."""

    def __init__(self, ctx: AppContext, header: Callable[[AppContext], tuple[str, bool]]):
        self.ctx, self.header = ctx, header
        self.routes: dict[str, Callable[[AppContext, dict], Any]] = {
            "status": self.status, "saes": saes, "datasets": datasets, "models": models, "training": training,
            "jobs": jobs}
        self.limiter = anyio.CapacityLimiter(THREADS)

    def status(self, ctx: AppContext, query: dict) -> dict:
        text, ready = self.header(ctx)
        text = scrub(text)
        return {"status": text, "status_html": markdown_html(text), "ready": bool(ready)}

    @staticmethod
    def handles(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    async def __call__(self, scope, send, path: str) -> None:
        method = scope.get("method", "GET")
        head = method == "HEAD"
        name = path[len(PREFIX):].strip("/")
        if method not in ("GET", "HEAD"):
            return await _json(send, 405, {"error": f"{method} is not allowed here: the read API answers GET and "
                                                    "HEAD only."}, head, [(b"allow", b"GET, HEAD")])
        if not name:
            return await _json(send, 200, {"routes": {n: f"{PREFIX}/{n}: {DOCS[n]}" for n in self.routes}}, head)
        fn = self.routes.get(name)
        if fn is None:
            return await _json(send, 404, {"error": f"No read named {name[:80]!r}. Valid: {', '.join(self.routes)}.",
                                           "routes": list(self.routes)}, head)
        query = {k: v[-1] for k, v in parse_qs((scope.get("query_string") or b"").decode("latin-1")).items()}
        try:
            result = await anyio.to_thread.run_sync(fn, self.ctx, query, limiter=self.limiter)
        except NotFoundError as e:
            return await _json(send, 404, {"error": str(e)}, head)
        except MistudioError as e:
            return await _json(send, 400, {"error": str(e)}, head)
        except Exception as e:  # noqa: BLE001 — a bug: logged with its traceback, the caller gets a short message
            return await _json(send, 500, {"error": unexpected(f"read {name}", e)}, head)
        return await _json(send, 200, result, head)


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


async def _json(send, status: int, payload: Any, head: bool = False, extra: list | None = None) -> None:
    data = json.dumps(_scrubbed(payload), ensure_ascii=False, default=str).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json; charset=utf-8"),
                            (b"content-length", str(len(data)).encode()), (b"cache-control", b"no-store"),
                            *(extra or [])]})
    await send({"type": "http.response.body", "body": b"" if head else data})


# The header's refresh on the page. Gradio's Markdown is rendered by Svelte, which must keep owning its nodes, so the
# poller writes into its own `.mistudio-live` child of `#mistudio-status` and a style hides Svelte's copy once the
# first answer arrived. The URL is built on Gradio's root (the app's URL behind a proxy path or a Space), else
# relative to the page. Hidden tabs do not poll; a failed poll keeps the last text.
POLLER_HEAD = """<style>#mistudio-status.mistudio-polled > :not(.mistudio-live) { display: none !important; }</style>
<script>
(() => {
  const PERIOD_MS = %(period)d;
  const url = () => {
    const root = window.gradio_config && window.gradio_config.root;
    return new URL('mistudio/api/status', root ? root.replace(/\\/?$/, '/') : document.baseURI).toString();
  };
  let busy = false;
  async function refresh() {
    const host = document.getElementById('mistudio-status');
    if (!host || busy || document.hidden) return;
    busy = true;
    try {
      const r = await fetch(url(), {cache: 'no-store', credentials: 'same-origin'});
      if (!r.ok) return;
      const data = await r.json();
      let live = host.querySelector(':scope > .mistudio-live');
      if (!live) {
        live = document.createElement('div');
        live.className = 'mistudio-live prose';
        host.appendChild(live);
      }
      if (live.dataset.html !== data.status_html) {
        live.innerHTML = data.status_html;  // the server escaped the text before adding <strong>/<p>
        live.dataset.html = data.status_html;
      }
      host.classList.add('mistudio-polled');
    } catch (e) { /* server restarting or offline: keep the last status */ }
    finally { busy = false; }
  }
  window.mistudioRefreshStatus = refresh;
  setInterval(refresh, PERIOD_MS);
  document.addEventListener('visibilitychange', refresh);
  // The page is built after this script runs: a first refresh as soon as the header exists.
  const first = setInterval(() => {
    if (document.getElementById('mistudio-status')) { clearInterval(first); refresh(); }
  }, 200);
})();
</script>"""


def poller_head(period_s: float = 3.0) -> str:
    """The `<head>` HTML of the header poller, polling every `period_s` seconds."""
    return POLLER_HEAD % {"period": int(period_s * 1000)}
