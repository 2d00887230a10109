"""UI helpers every page shares: error handling, read-only refusal, progress adapters, tables, charts, formatting.

Handlers follow one shape: their first output is a status Markdown. `guarded(n)` turns a `MistudioError` into
that status (plus a toast) and leaves the handler's other `n - 1` outputs as they were, so a failed action shows
what went wrong and changes nothing else on the page. Anything else is a bug: its traceback goes to the server log
and the page gets a short message naming the action and the exception type, never a traceback (`unexpected`).

Messages never show server paths: `scrub` rewrites the data directory to relative paths and drops the upload
folder (the app registers both with `hide_paths` at start-up).
"""
from __future__ import annotations

import functools
import html
import logging
import os
from datetime import datetime
from typing import Any, Callable, Iterable

import gradio as gr
import pandas as pd
import plotly.graph_objects as go
from gradio.context import LocalContext

from mistudio_core.platform.errors import MistudioError, ValidationError

from .context import AppContext


log = logging.getLogger("mistudio.app")
_HIDDEN: list[tuple[str, str]] = []  # (server path prefix, what to show instead), longest first


def hide_paths(*pairs: tuple[str, str]) -> None:
    """Register server path prefixes that messages must not show, e.g. (data dir + '/', '') for relative paths."""
    for prefix, instead in pairs:
        for variant in {str(prefix), os.path.realpath(str(prefix))}:
            if variant and (variant, instead) not in _HIDDEN:
                _HIDDEN.append((variant.rstrip("/") + "/", instead))
    _HIDDEN.sort(key=lambda p: -len(p[0]))


def scrub(text: str) -> str:
    """`text` with registered server paths made relative (data dir) or dropped (upload folders)."""
    if not isinstance(text, str):
        return text
    for prefix, instead in _HIDDEN:
        if prefix in text:
            text = text.replace(prefix, instead)
        bare = prefix.rstrip("/")
        if bare in text:
            text = text.replace(bare, instead.rstrip("/") or ".")
    return text


def unexpected(action: str, err: BaseException) -> str:
    """The page's message for a bug: the traceback goes to the server log, the user gets what and where."""
    log.error("%s failed", action, exc_info=err)
    detail = scrub(str(err)).splitlines()[0][:200] if str(err) else ""
    return (f"Unexpected error in {action} ({type(err).__name__}{': ' + detail if detail else ''}). The action "
            "stopped there: check its inputs and try again; if it happens again, report it with the server log.")


class ReadOnlyError(MistudioError):
    """A write was attempted while the app runs in read-only demo mode."""


def require_writable(ctx: AppContext) -> None:
    """Refuse a write in demo mode with a message that says how to get a writable app."""
    if ctx.read_only:
        raise ReadOnlyError("This miStudio runs in read-only demo mode: browsing works, changes are refused. "
                            "Run your own copy without --read-only to add, tokenize or delete.")


# Text symbols, not emoji: they render with the fonts every system has (a bare Chromium shows emoji as boxes).
def ok(message: str) -> str:
    return f"✓ {message}"


def failed(message: str) -> str:
    return f"⚠ {message}"


def guarded(n_outputs: int) -> Callable:
    """Decorator for a handler with `n_outputs` outputs whose first is the status Markdown (see module doc)."""
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except MistudioError as e:
                message = scrub(str(e))
            except Exception as e:  # a bug: logged with its traceback, reported without it
                message = unexpected(fn.__name__.strip("_").replace("_", " "), e)
            _toast(message)
            rest = tuple(gr.skip() for _ in range(n_outputs - 1))
            return (failed(message), *rest) if rest else failed(message)
        return run
    return wrap


def _toast(message: str) -> None:
    if LocalContext.event_id.get(None) is not None:  # a direct call (tests, scripts) has no page to toast on
        gr.Warning(message)


def progress_adapter(progress: Any) -> Callable[[float, str], None]:
    """The core's `progress(fraction, message)` callback driving a `gr.Progress` bar."""
    def report(fraction: float, message: str = "") -> None:
        try:
            progress(min(max(float(fraction), 0.0), 1.0), desc=message)
        except Exception:  # no request context (direct call): progress is cosmetic
            pass
    return report


def table(rows: Iterable[dict], columns: dict[str, str]) -> pd.DataFrame:
    """A DataFrame with the given `{key: header}` columns (missing keys are blank), in that order."""
    data = [[row.get(k, "") for k in columns] for row in rows]
    return pd.DataFrame(data, columns=list(columns.values()))


def choices(manifests: Iterable[dict]) -> list[tuple[str, str]]:
    """Dropdown choices `(label, id)` for artifacts: the name, with the id where it differs."""
    out = []
    for m in manifests:
        name, mid = m.get("name") or m["id"], m["id"]
        if m.get("hook_name"):  # SAEs: long ids were cut off; show name · hook · short id (value stays the id)
            out.append((sae_choice_label(m), mid))
            continue
        out.append((name if name == mid else f"{name} ({mid})", mid))
    return out


def sae_choice_label(m: dict, width: int = 28) -> str:
    """`name · hook · #suffix` for an SAE manifest; the suffix is the id's random tail (unique enough to tell
    two SAEs of the same name apart), the name is shortened in the middle past `width` characters."""
    name, mid, hook = m.get("name") or m["id"], m["id"], m["hook_name"]
    tail = mid.rsplit("-", 1)[-1]
    short = name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width // 2):]
    hexy = "-" in mid and len(tail) >= 4 and all(c in "0123456789abcdef" for c in tail)
    return f"{short} · {hook}" + (f" · #{tail[:8]}" if hexy else "" if short == mid else f" · {mid}")


def pick(choice_list: list[tuple[str, str]], current: str | None) -> str | None:
    """Keep the current selection if it still exists, else the newest artifact, else nothing."""
    ids = [c[1] for c in choice_list]
    if current in ids:
        return current
    return ids[-1] if ids else None


def artifact_dropdown(label: str, **kwargs: Any) -> gr.Dropdown:
    """A dropdown of artifact ids filled at page load. Values outside the current choices are accepted (API
    callers name artifacts created after the page was built); handlers check the id against the store."""
    return gr.Dropdown(label=label, choices=[], allow_custom_value=True, **kwargs)


def dropdown_update(manifests: Iterable[dict], current: str | None) -> Any:
    items = choices(manifests)
    return gr.update(choices=items, value=pick(items, current))


def fmt_count(n: Any) -> str:
    """1234567 → '1.23M' (short, for tables and headers)."""
    if n is None or n == "":
        return ""
    n = float(n)
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.4g}"


def fmt_bytes(n: Any) -> str:
    if n is None:
        return "?"
    n = float(n)
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.1f} {unit}"


def fmt_time(t: Any) -> str:
    """Unix seconds → local 'YYYY-MM-DD HH:MM'."""
    try:
        return datetime.fromtimestamp(float(t)).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError, OSError):
        return ""


def fmt_metric(x: Any, digits: int = 3) -> str:
    try:
        return f"{float(x):.{digits}g}"
    except (TypeError, ValueError):
        return ""


def bar_chart(edges: list[float], counts: list[int], title: str, x_title: str, y_title: str) -> go.Figure:
    """A histogram drawn from precomputed bin edges and counts (the core computes them, the page only draws)."""
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
    fig = go.Figure(go.Bar(x=mids, y=counts, width=widths, marker_line_width=0))
    fig.update_layout(title=title or None, xaxis_title=x_title, yaxis_title=y_title, bargap=0.02, height=320,
                      margin=dict(l=50, r=20, t=50 if title else 20, b=45), template="plotly_white")
    return fig


TOKEN_CSS = ("font-family:ui-monospace,monospace;font-size:0.85em;line-height:1.9;white-space:pre-wrap;"
             "word-break:break-word")
_TOKEN_COLOURS = ("#dbeafe", "#fde68a")


def tokens_html(contexts: list[list[str]], title: str = "") -> str:
    """Decoded contexts with each token on an alternating background so token boundaries are visible."""
    blocks = []
    for i, toks in enumerate(contexts):
        spans = "".join(
            f'<span class="tok" style="background:{_TOKEN_COLOURS[j % 2]};color:#111;border-radius:2px" '
            f'title="token {j}">{html.escape(t).replace(chr(10), "↵<br>") or "&nbsp;"}</span>'
            for j, t in enumerate(toks))
        blocks.append(f'<div style="margin:0 0 10px 0"><b>context {i}</b> · {len(toks)} tokens<br>'
                      f'<div style="{TOKEN_CSS}">{spans}</div></div>')
    head = f"<p>{html.escape(title)}</p>" if title else ""
    return head + ("".join(blocks) or "<p>No contexts.</p>")


def on_show(ctx: AppContext, fn: Callable, inputs: list, outputs: list, api_name: str,
            api_visibility: str = "public", concurrency_id: str | None = None) -> Any:
    """Run `fn` when the page loads, when this page's tab is opened, and when the built-ins become ready (the app
    puts `demo`, `tab` and `builtins_ready` into `ctx.shared`; a page launched on its own has only some).
    `concurrency_id`: run in the queue's order with the page's actions that share it, so a refresh sent before an
    action cannot answer after it (its stale selection would undo the action's)."""
    triggers = [ctx.shared[k].load if k == "demo" else ctx.shared[k].select if k == "tab" else ctx.shared[k].change
                for k in ("demo", "tab", "builtins_ready") if k in ctx.shared]
    if not triggers:
        return None
    return gr.on(triggers=triggers, fn=fn, inputs=inputs, outputs=outputs, api_name=api_name,
                 show_progress="hidden", api_visibility=api_visibility, concurrency_id=concurrency_id)


def then_quietly(dep: Any, fn: Callable, inputs: list, outputs: list, api_name: str) -> None:
    """After `dep` (e.g. a refresh), also run `fn` (e.g. show the selection's details); not a public endpoint."""
    if dep is not None:
        dep.then(fn, inputs, outputs, api_name=api_name, api_visibility="undocumented", show_progress="hidden")


def cancel_job(ctx, job_id: str | None, what: str) -> str:
    """Cancel the job a page started (`what`: "evaluation", "benchmark", ...); says its new status. Jobs that store
    their result only at the end leave nothing behind."""
    require_writable(ctx)
    if not job_id:
        raise ValidationError(f"No {what} to cancel: start one first.")
    return ok(f"{what.capitalize()} `{job_id}` is now {ctx.jobs.cancel(job_id)['status']} (nothing is stored).")
