"""One pass over the built app that makes every endpoint keep the API contract, whatever each page did.

Run by `app.create_app` after all tabs are built (pages are written side by side; this is the one place that
enforces what they all promise in docs/API.md):

- **Any existing id works.** A dropdown that some event refills (SAE, dataset, job, session lists) is served with
  the choices it had at build time, often `[]`, and Gradio rejects every value outside them ("Value … is not in the
  list of choices: []"). Such dropdowns accept custom values; the handlers check ids against the store. Dropdowns
  that no event refills (methods, dtypes) keep Gradio's strict check.
- **No traceback reaches a user.** Every handler is wrapped: an exception that escaped the page's own handling is
  logged with its traceback and answered with a short message (the status line when the first output is one,
  else a `gr.Error`). Every string output is scrubbed of server paths (`common.scrub`).
- **Uploads do not outlive their request.** A file the event received from the upload folder is deleted after the
  event (ingested or refused), so nothing accumulates and nothing can be fetched back.
- **Every endpoint describes itself** (API page, MCP tool list): the handler's docstring, else its line in
  docs/API.md.
- **Cheap reads never queue behind long work.** Lists, headers, status and job watchers get no concurrency limit
  (each call is short or mostly sleeps); everything else keeps the queue's default. Jobs run in a child process
  (`mistudio_core/jobs/worker.py`), and `tune_queue()` (called before the queue is made) stops Gradio from redoing
  its per-function statistics over every recorded event after each event.
"""
from __future__ import annotations

import functools
import inspect
import os
import re
import shutil
import time
import typing
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from .common import failed, scrub, unexpected

# Endpoints that only read (or sleep while watching a job): they run outside the queue's concurrency limit.
CHEAP = re.compile(r"(^header_status$|_list$|_choices$|_history$|_detail$|_summary$|_stats$|_hooks$|watch|"
                   r"_refresh|_latest_job$|_labels$|_select|_attach$|_load_on_select$|_status$)")


# Gradio recomputes its monitoring summary (a pandas group-by over up to 10,000 recorded events) after every
# event by default: 10–25 ms of CPU per request, growing with the history (measured: 10 ms at 500 events, 24 ms at
# 10,000), which is most of a cheap read's cost once 30 pages poll. Every 1,000 events keeps the summary current.
ANALYTICS_EVERY = "1000"


def tune_queue() -> None:
    """Per-request overheads of Gradio's queue, set through its environment variables (read when the queue is made;
    a value the operator set wins)."""
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", ANALYTICS_EVERY)


def patient_localhost_check(wait_s: float = 60.0) -> None:
    """Gradio's launch asks its own server for a page (a HEAD with a 3 s timeout) and gives up at the first
    timeout, exiting with "When localhost is not accessible, a shareable link must be created" — on a loaded CPU
    (a training beside the app, a workshop machine) the freshly started server can take longer than that to answer,
    and the app dies at start-up. Retry each attempt's timeout instead, for up to `wait_s`; a refused connection
    still fails fast (that is a real proxy or firewall problem, and Gradio's message is right for it)."""
    import httpx
    from gradio import networking

    if getattr(networking.url_ok, "patient", False):
        return

    def url_ok(url: str) -> bool:
        deadline, answers = time.monotonic() + wait_s, 0
        while time.monotonic() < deadline and answers < 5:  # Gradio's own five tries for a wrong answer
            try:
                if httpx.head(url, timeout=3, verify=False).status_code in (200, 401, 301, 302, 303, 307, 308):
                    return True
                answers += 1
            except httpx.TimeoutException:
                pass
            except (ConnectionError, httpx.ConnectError):
                return False
            time.sleep(0.5)
        return False

    url_ok.patient = True
    networking.url_ok = url_ok


def refillable_dropdowns(demo: gr.Blocks) -> list[gr.Dropdown]:
    """Dropdowns that appear as an output of some event (their choices change at run time)."""
    outputs = {id(c) for fn in demo.fns.values() for c in fn.outputs}
    return [b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and id(b) in outputs]


def api_docs(path: Path) -> dict[str, str]:
    """`{endpoint: one-line description}` from docs/API.md's tables and bullet lists."""
    out = {}
    text = Path(path).read_text(encoding="utf-8") if Path(path).is_file() else ""
    for line in text.splitlines():
        row = re.match(r"^\| `(\w+)` \| (.*?) \| (.*?) \|\s*$", line)
        bullet = re.match(r"^- `(\w+)`\s*(.*?)\s*$", line)
        if row:
            out[row.group(1)] = f"Parameters: {row.group(2)}. Returns: {row.group(3)}."
        elif bullet:
            out[bullet.group(1)] = f"Parameters: {bullet.group(2).strip('()—: ') or 'none'}."
    return out


def harden(demo: gr.Blocks, upload_dirs: list[Path] | None = None, docs: dict[str, str] | None = None) -> None:
    """Apply the module doc's rules to every dropdown and event of `demo` (call once, before launch)."""
    for dd in refillable_dropdowns(demo):
        # Also in the constructor arguments: a session rebuilds a component from them on every update.
        dd.allow_custom_value = dd.filterable = True
        if getattr(dd, "_constructor_args", None):
            dd._constructor_args[0].update(allow_custom_value=True, filterable=True)
        # The schema (API page, gradio_client, MCP tools) would otherwise say `enum: []`: any id is a string.
        dd.api_info = functools.partial(_open_schema, dd.multiselect)
    for dd in demo.blocks.values():
        if isinstance(dd, gr.Dropdown) and not dd.multiselect and not dd.allow_custom_value:  # fixed choices
            _number_choices(dd)
    dirs = [Path(d) for d in upload_dirs or []]
    for block in demo.blocks.values():
        if isinstance(block, (gr.File, gr.UploadButton)):
            _no_stray_temp_file(block)
    _drop_uploads_on_refusal(demo, dirs)
    for block_fn in demo.fns.values():
        if block_fn.fn is None:
            continue
        if _takes_event_data(block_fn.fn):
            # A click on a table row carries Gradio event data that a script cannot send: UI only.
            block_fn.api_visibility = "private"
        block_fn.fn = _wrap(block_fn, dirs)
        if not block_fn.fn.__doc__ and block_fn.api_description is None and block_fn.api_name in (docs or {}):
            block_fn.api_description = docs[block_fn.api_name]
        if isinstance(block_fn.api_name, str) and CHEAP.search(block_fn.api_name):
            block_fn.concurrency_limit = None


def _number_choices(dd: gr.Dropdown) -> None:
    """A dropdown of numbers (rows per page: 25, 50, ...): Gradio's schema calls them strings, then refuses the
    string "50". The schema says integer (or number) and a numeric string is taken as the choice it spells."""
    values = [v for _, v in dd.choices or []]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return
    kind = "integer" if all(isinstance(v, int) for v in values) else "number"
    dd.api_info = lambda: {"type": kind, "enum": list(values)}
    original = dd.preprocess

    def preprocess(payload):
        if isinstance(payload, str):
            payload = next((v for v in values if payload.strip() in (str(v), repr(v))), payload)
        return original(payload)
    dd.preprocess = preprocess


def _no_stray_temp_file(component) -> None:
    """Gradio's File/UploadButton preprocess opens an empty `NamedTemporaryFile` in the upload folder for every file
    it passes on as a path, and never uses or removes it: one stray `tmpXXXXXXXX` per upload action. The same check
    and result without that file."""
    from gradio.utils import NamedString
    from gradio_client import utils as client_utils

    original = component._process_single_file

    def process(f):
        if component.type != "filepath":
            return original(f)
        if component.file_types and not client_utils.is_valid_file(f.path, component.file_types):
            raise gr.Error("Invalid file type. Please upload a file that is one of these formats: "
                           f"{component.file_types}")
        return NamedString(f.path)
    component._process_single_file = process


def _drop_uploads_on_refusal(demo: gr.Blocks, upload_dirs: list[Path]) -> None:
    """Gradio refuses some inputs before any handler runs (a file type outside `file_types`, a value outside a
    dropdown's choices): the uploaded file would stay. Remove the event's uploads when its preprocessing fails."""
    original = demo.preprocess_data

    async def preprocess_data(block_fn, inputs, state, explicit_call=False):
        try:
            return await original(block_fn, inputs, state, explicit_call)
        except BaseException:
            _remove_uploads(_uploaded_paths(tuple(inputs or ()), upload_dirs), upload_dirs)
            raise
    demo.preprocess_data = preprocess_data


def _open_schema(multiselect: bool) -> dict:
    return {"type": "array", "items": {"type": "string"}} if multiselect else {"type": "string"}


def _takes_event_data(fn: Callable) -> bool:
    target = getattr(fn, "func", fn)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 — unresolvable annotations: fall back to their text
        hints = getattr(target, "__annotations__", {})
    return any((isinstance(h, type) and issubclass(h, gr.EventData)) or
               (isinstance(h, str) and h.rsplit(".", 1)[-1] in ("SelectData", "EventData", "KeyUpData", "LikeData"))
               for h in hints.values())


def _status_first(block_fn) -> bool:
    return bool(block_fn.outputs) and isinstance(block_fn.outputs[0], (gr.Markdown, gr.Textbox))


def _error_outputs(block_fn, err: Exception) -> Any:
    """What the event returns for an unexpected error: the message in the status line, other outputs untouched."""
    message = unexpected(str(block_fn.api_name or block_fn.name), err)
    n = len(block_fn.outputs)
    if not _status_first(block_fn):
        raise gr.Error(message)
    return failed(message) if n == 1 else (failed(message), *(gr.skip() for _ in range(n - 1)))


TEXT_OUTPUTS = (gr.Markdown, gr.Textbox, gr.HTML)


def _cleaner(block_fn) -> Callable[[Any], Any]:
    """Scrubs server paths from the text outputs (status lines, summaries), never from file outputs."""
    texts = [isinstance(c, TEXT_OUTPUTS) for c in block_fn.outputs]

    def clean(value: Any) -> Any:
        if len(texts) == 1:
            return scrub(value) if texts[0] and isinstance(value, str) else value
        if isinstance(value, (tuple, list)) and len(value) == len(texts):
            return type(value)(scrub(v) if t and isinstance(v, str) else v for v, t in zip(value, texts))
        return value
    return clean


def _uploaded_paths(args: tuple, upload_dirs: list[Path]) -> list[Path]:
    """Files among the event's inputs that live in an upload folder."""
    found, stack = [], list(args)
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict) and "path" in v:
            stack.append(v["path"])
        elif isinstance(v, (str, Path)) and upload_dirs and len(str(v)) < 4096:
            p = Path(v)
            if any(d in p.parents for d in upload_dirs):
                found.append(p)
    return found


def _remove_uploads(paths: list[Path], upload_dirs: list[Path]) -> None:
    """Delete uploaded files with their per-upload folder (Gradio stores each upload as `<dir>/<hash>/name`)."""
    for p in paths:
        for d in upload_dirs:
            if d in p.parents:
                rel = p.relative_to(d).parts
                shutil.rmtree(d / rel[0], ignore_errors=True) if len(rel) > 1 else p.unlink(missing_ok=True)
    for d in upload_dirs if paths else []:  # staging leftovers, empty; a minute old, so never one being written
        for sub in d.iterdir() if d.is_dir() else []:
            try:
                if not sub.name.startswith("tmp") or time.time() - sub.stat().st_mtime <= 60:
                    continue
                if sub.is_dir() and not any(sub.iterdir()):
                    sub.rmdir()
                elif sub.is_file() and sub.stat().st_size == 0:
                    sub.unlink()
            except OSError:
                pass


def _wrap(block_fn, upload_dirs: list[Path]) -> Callable:
    fn, _clean = block_fn.fn, _cleaner(block_fn)

    def done(args: tuple) -> None:
        _remove_uploads(_uploaded_paths(args, upload_dirs), upload_dirs)

    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def run(*args, **kwargs):
            try:
                async for out in fn(*args, **kwargs):
                    yield _clean(out)
            except gr.Error:
                raise
            except Exception as e:  # noqa: BLE001 — see module doc
                yield _error_outputs(block_fn, e)
            finally:
                done(args)
    elif inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                for out in fn(*args, **kwargs):
                    yield _clean(out)
            except gr.Error:
                raise
            except Exception as e:  # noqa: BLE001
                yield _error_outputs(block_fn, e)
            finally:
                done(args)
    elif inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run(*args, **kwargs):
            try:
                return _clean(await fn(*args, **kwargs))
            except gr.Error:
                raise
            except Exception as e:  # noqa: BLE001
                return _error_outputs(block_fn, e)
            finally:
                done(args)
    else:
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return _clean(fn(*args, **kwargs))
            except gr.Error:
                raise
            except Exception as e:  # noqa: BLE001
                return _error_outputs(block_fn, e)
            finally:
                done(args)
    # A handler bound with functools.partial would otherwise carry partial's own docstring (MCP tool descriptions).
    run.__doc__ = inspect.getdoc(getattr(fn, "func", fn)) or ""
    # MCP names each tool after the function: the endpoint's name, not "run" or "partial".
    run.__name__ = block_fn.api_name if isinstance(block_fn.api_name, str) else getattr(fn, "__name__", "fn")
    return run
