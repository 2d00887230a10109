"""miStudio app: a Gradio Blocks shell around `pages/<tab>.py`.

    python app.py [--host H] [--port P] [--home DIR] [--share] [--auth user:pass ...] [--auth-file F]
                  [--read-only] [--allowed-root DIR ...] [--mcp] [--jobs-in-process]

Host and port: the flag, else `$MISTUDIO_HOST`/`$MISTUDIO_PORT`, else Gradio's `$GRADIO_SERVER_NAME`/
`$GRADIO_SERVER_PORT` (what a Hugging Face Space of the gradio SDK sets), else 127.0.0.1:7860.

`create_app(ctx)` builds the page (tests build it without launching); `main()` parses flags, prepares the
built-in model and corpus on a background thread (the page opens at once and says how far it got), starts the
system monitor and, where `mistudio_core.jobs` exists, the job runner, and launches.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
import threading
import traceback
from pathlib import Path

import gradio as gr

from mistudio_core.platform.store import Store
from mistudio_core.platform.system import get_monitor
from pages.common import hide_paths
from pages.context import AppContext
from pages.hardening import api_docs, harden, patient_localhost_check, tune_queue
from pages.read_api import ReadApi, poller_head
from pages.server import gradio_temp_dir, install_gate, start_upload_sweeper, uploads_dir

TABS = ["datasets", "models", "training", "saes", "features", "labeling", "steering", "circuits", "share", "system"]
LABELS = {"saes": "SAEs"}
HEADER_TICK_S = 3.0
INTRO = ("**miStudio** — train sparse autoencoders (SAEs) on a language model's activations and explore what "
         "their features mean. Built in: the model **SmolLM2-135M-Instruct** (a small Llama-style chat model) "
         "and the corpus **State of the Union addresses** (1790–today), so everything works offline.")
CSS = ".mistudio-header p { margin: 2px 0 !important; }"


class Builtins:
    """Registers the built-in model and corpus once, off the request path; the header shows `status`."""

    def __init__(self) -> None:
        self.status = "Preparing built-in model and corpus…"
        self.ready = False
        self.done = False  # preparation over, ready or not: the page's header timer stops then

    def prepare(self, store: Store) -> None:
        try:
            from mistudio_core.data.defaults import ensure_builtins
        except ModuleNotFoundError as e:
            self.status, self.done = f"Built-ins unavailable ({e.name} is not installed).", True
            return
        try:
            ensure_builtins(store, progress=self._progress)
            self.status, self.ready = "Built-in model and corpus ready.", True
        except Exception as e:  # shown in the header; the rest of the app keeps working
            self.status = f"Preparing the built-ins failed: {e}"
        finally:
            self.done = True

    def _progress(self, fraction: float, message: str = "") -> None:
        self.status = f"Preparing built-in model and corpus… {fraction:.0%} {message}".rstrip()

    def check(self, store: Store) -> None:
        """Read-only: say whether the built-ins are there, preparing nothing."""
        from mistudio_core.data.defaults import BUILTIN_DATASET_ID, BUILTIN_MODEL_ID

        self.ready = store.exists("datasets", BUILTIN_DATASET_ID) and store.exists("models", BUILTIN_MODEL_ID)
        self.status = "Built-in model and corpus ready." if self.ready else "Built-ins not prepared (read-only)."
        self.done = True

    def start(self, store: Store) -> None:
        threading.Thread(target=self.prepare, args=(store,), name="mistudio-builtins", daemon=True).start()


def _import_tab(name: str):
    """The page module, or None if that tab has not been written yet (or $MISTUDIO_TABS leaves it out)."""
    only = [t.strip() for t in os.environ.get("MISTUDIO_TABS", "").split(",") if t.strip()]
    if only and name not in only:
        return None
    try:
        return importlib.import_module(f"pages.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"pages.{name}":
            return None
        raise


class _Broken:
    """Stands in for a page module whose import failed; its `build` re-raises so `_build_tab` reports it."""

    def __init__(self, error: Exception):
        self.error = error

    def build(self, ctx: AppContext) -> None:
        raise self.error


def _build_tab(ctx: AppContext, name: str, module) -> None:
    """Build one tab; a page that fails to build says so in its tab (traceback in the server log) instead of
    taking the whole app down."""
    try:
        module.build(ctx)
    except Exception as e:
        traceback.print_exc()
        ctx.shared.setdefault("tab_errors", {})[name] = f"{type(e).__name__}: {e}"
        gr.Markdown(f"⚠ The {name} page failed to build ({type(e).__name__}: {e}). See the server log.")


def header_text(ctx: AppContext) -> tuple[str, bool]:
    """The header's status lines and whether the built-ins are ready."""
    from mistudio_core.platform.runtime import describe_runtime
    from pages.system import system_status

    builtins: Builtins = ctx.shared.get("builtins") or Builtins()
    mode = " · **read-only demo**" if ctx.read_only else ""
    where = describe_runtime()["summary"]
    return f"{builtins.status}{mode}\n\nRunning on {where} · {system_status(ctx)}", builtins.ready


def header_tick(ctx: AppContext) -> tuple[str, bool, gr.Timer]:
    """The header on the page's timer, which stops once the built-ins are ready (pages refresh their choices when
    `ready` flips; the JS poller of `read_api` keeps the header current without the queue)."""
    text, ready = header_text(ctx)
    builtins = ctx.shared.get("builtins")
    return text, ready, gr.Timer(active=not (ready or getattr(builtins, "done", False)))


def create_app(ctx: AppContext) -> gr.Blocks:
    """The whole page: header (intro, built-ins status, hardware at a glance) above one tab per page module."""
    ctx.shared.setdefault("builtins", Builtins())
    # delete_cache: downloads cached more than a day ago go (every hour), so the upload folder does not grow.
    with gr.Blocks(title="miStudio", delete_cache=(3600, 86400)) as demo:
        ctx.shared["demo"] = demo
        gr.Markdown(INTRO, elem_classes="mistudio-header")
        status = gr.Markdown(header_text(ctx)[0], elem_id="mistudio-status", elem_classes="mistudio-header")
        ready = gr.State(False)
        ctx.shared["builtins_ready"] = ready
        with gr.Tabs() as tabs:
            ctx.shared["tabs"] = tabs  # a page may switch tabs (Circuits → a feature in the Features tab)
            for name in TABS:
                try:
                    module = _import_tab(name)
                except Exception as e:  # a page that cannot even be imported: its tab says so, the rest works
                    traceback.print_exc()
                    module = _Broken(e)
                if module is None:
                    continue
                with gr.Tab(LABELS.get(name, name.capitalize()), id=name) as tab:
                    ctx.shared["tab"] = tab
                    _build_tab(ctx, name, module)
        ctx.shared.pop("tab", None)
        timer = gr.Timer(HEADER_TICK_S)  # outside the tabs so it always ticks; only until the built-ins are ready
        gr.on([demo.load], functools.partial(header_text, ctx), outputs=[status, ready],
              api_name="header_status", show_progress="hidden")
        timer.tick(functools.partial(header_tick, ctx), outputs=[status, ready, timer], api_name="header_tick",
                   api_visibility="private", show_progress="hidden", concurrency_limit=None)
    hide_paths((str(ctx.store.home), ""), *((str(d), "") for d in ctx.shared.get("upload_dirs", [])))
    harden(demo, ctx.shared.get("upload_dirs"), api_docs(Path(__file__).resolve().parent / "docs" / "API.md"))
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description="miStudio: an SAE interpretability workbench (Gradio app)")
    p.add_argument("--host", default=env("MISTUDIO_HOST") or env("GRADIO_SERVER_NAME") or "127.0.0.1",
                   help="interface to bind ($MISTUDIO_HOST, else $GRADIO_SERVER_NAME, else 127.0.0.1)")
    p.add_argument("--port", type=_port, default=env("MISTUDIO_PORT") or env("GRADIO_SERVER_PORT") or "7860",
                   help="port ($MISTUDIO_PORT, else $GRADIO_SERVER_PORT, else 7860)")
    p.add_argument("--home", default=env("MISTUDIO_HOME"), help="data directory ($MISTUDIO_HOME, ~/.mistudio)")
    p.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                   help="require a login (repeatable; or $MISTUDIO_AUTH='u1:p1,u2:p2')")
    p.add_argument("--auth-file", default=env("MISTUDIO_AUTH_FILE"), help="file with one user:pass per line")
    p.add_argument("--read-only", action="store_true", default=env("MISTUDIO_READ_ONLY", "") == "1",
                   help="demo mode: browse only, every change is refused")
    p.add_argument("--allowed-root", action="append", default=[], metavar="DIR",
                   help="folder the UI may read local files from (repeatable; default: the current folder; the "
                        "data directory is always allowed)")
    p.add_argument("--mcp", action="store_true", default=env("MISTUDIO_MCP", "") == "1",
                   help="also serve the documented endpoints as MCP tools at /gradio_api/mcp/ ($MISTUDIO_MCP=1; "
                        "needs gradio[mcp])")
    p.add_argument("--jobs-in-process", action="store_true", default=env("MISTUDIO_JOBS_IN_PROCESS", "") == "1",
                   help="run trainings and other accelerator jobs in threads of this process instead of a child "
                        "process each (slower pages while a job runs; see mistudio_core/jobs/worker.py)")
    p.add_argument("--no-builtins", action="store_true",
                   help="do not register the built-in model and corpus at start-up (tests, bare data dirs)")
    return p.parse_args(argv)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {port}")
    return port


def parse_auth(args: argparse.Namespace) -> list[tuple[str, str]]:
    """All `user:pass` pairs from --auth, --auth-file and $MISTUDIO_AUTH; a malformed entry stops start-up."""
    entries = list(args.auth)
    entries += [e for e in os.environ.get("MISTUDIO_AUTH", "").replace("\n", ",").split(",") if e.strip()]
    if args.auth_file:
        path = Path(args.auth_file).expanduser()
        if not path.is_file():
            raise SystemExit(f"Auth file {path} not found: create it (one user:password per line) or drop --auth-file.")
        lines = path.read_text(encoding="utf-8").splitlines()
        entries += [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    pairs = []
    for entry in entries:
        user, sep, password = entry.strip().partition(":")
        if not sep or not user or not password:
            raise SystemExit(f"Bad auth entry {user or entry!r}: use user:password.")
        pairs.append((user, password))
    return pairs


def build_context(args: argparse.Namespace) -> AppContext:
    store = Store(args.home, read_only=args.read_only)  # read-only: not even the library's folders are made
    roots = [Path(r).expanduser().resolve() for r in (args.allowed_root or [os.getcwd()])]
    ctx = AppContext(store=store, allowed_roots=[store.home.resolve(), *roots], read_only=args.read_only)
    try:
        from mistudio_core.jobs import JobRegistry, Runner
    except ImportError as e:  # jobs not written yet (or half-written): the other tabs still work
        print(f"miStudio: job runner not started ({e})", file=sys.stderr)
    else:
        # Read-only opens the registry without writing a byte (a read-only disk, or jobs/ left byte-identical).
        ctx.jobs = JobRegistry(store, read_only=args.read_only)
        if not args.read_only:  # nothing can be queued read-only, and recovering old jobs would write
            # Accelerator jobs run in a child process each, away from this process's interpreter lock (worker.py).
            runner = Runner(store, registry=ctx.jobs, isolate=not getattr(args, "jobs_in_process", False))
            runner.start()
            ctx.shared["runner"] = runner
    return ctx


WEB_NICE = 5


def serve_below_jobs() -> None:
    """Run the web server's threads at nice +WEB_NICE, below the training it serves beside.

    On a 2-core machine a training's two intra-op threads stall together whenever one is preempted, so every
    request the server answers costs the training more than its own CPU time (measured: 1.27× slower under 30 page
    viewers while the server used 0.05 of a core). Linux keeps nice per thread and a new thread inherits its
    creator's: lowering the calling (main) thread now, after the job runner's thread started, puts the server and
    its request threads below, while the runner (and the worker processes it forks) stays at the normal priority.
    Unprivileged processes can lower their priority but never raise it back, hence this direction."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + WEB_NICE))
    except (AttributeError, OSError):  # not Linux-like: the server keeps the normal priority
        pass


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    auth = parse_auth(args)
    if args.share and not auth and not args.read_only:
        print("miStudio: --share without --auth lets anyone with the link change your data; "
              "add --auth user:pass or --read-only.", file=sys.stderr)
    ctx = build_context(args)
    ctx.shared["monitor"] = get_monitor()
    builtins = ctx.shared["builtins"] = Builtins()
    if args.no_builtins:
        builtins.status, builtins.done = "Built-ins not prepared (--no-builtins).", True
    elif args.read_only:  # preparing them writes; a read-only demo shows what the data directory already has
        builtins.check(ctx.store)
    else:
        builtins.start(ctx.store)
    if "runner" in ctx.shared and not args.jobs_in_process:
        serve_below_jobs()
    # Uploads (and the files Gradio caches for downloads) live in the data directory, set before the page is
    # built so both use it. Read-only ingests nothing and must not write there: Gradio's default folder serves.
    upload = gradio_temp_dir() if args.read_only else uploads_dir(ctx.store.home)
    ctx.shared["upload_dirs"] = [upload]
    tune_queue()
    patient_localhost_check()
    demo = create_app(ctx)
    if not args.read_only:  # uploads no action used go after $MISTUDIO_UPLOAD_TTL_S (Gradio's folder read-only)
        start_upload_sweeper(demo, upload)
    install_gate("miStudio: log in to continue.", reads=ReadApi(ctx, header_text))  # /mistudio/api/…, no queue
    # run_history=False: the browser must not keep a record of calls (a hub token is an input).
    try:
        demo.queue(default_concurrency_limit=4).launch(
            server_name=args.host, server_port=args.port, share=args.share, auth=auth or None,
            auth_message="miStudio: log in to continue." if auth else None, ssr_mode=False, css=CSS,
            run_history=False, theme=gr.themes.Soft(), footer_links=["api"], mcp_server=args.mcp,
            head=poller_head(HEADER_TICK_S))  # the header's refresh: read_api's status, not the queue
    except ImportError as e:  # --mcp without gradio[mcp]
        raise SystemExit(f"miStudio: --mcp needs Gradio's MCP support ({e}); pip install -r requirements.txt.")


if __name__ == "__main__":
    main()
