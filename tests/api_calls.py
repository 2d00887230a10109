"""Call every named endpoint of a running app with valid ids (see `api_home.build_home`), the way a script would.

`valid_args(endpoint, params, ids)` picks each parameter's value from its label: an artifact id where the label
names an artifact, a file to upload where the component is a File, else the documented default. `call_all`
runs job-starting endpoints first, cancels every job, then the readers, then the deleters, and returns
`{endpoint: outputs | Exception}`.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from gradio_client import handle_file

from api_home import HOOK, Ids

# Endpoints never called here, with why (each is covered where its cost is acceptable).
SKIP = {"models_add_builtin": "converts the 540 MB SmolLM2 GGUF (tests/app/test_app_api.py, integration)"}
STARTS = re.compile(r"_start$|_extract$|_export$|_resume$|_run_prompt_set$")
DELETES = re.compile(r"_delete")
CLOSED_PORT_URL = "http://127.0.0.1:9/v1"  # refused at once: no network wait, no real LLM


def _file_for(label: str, name: str, ids: Ids):
    if "template" in label or "explanations" in label or "json" in label:
        return handle_file(str(ids.template_file))
    if "zip" in label or "archive" in label or name.startswith("share"):
        return handle_file(str(ids.sae_archive))
    return handle_file(str(ids.text_file))


def _path_for(name: str, ids: Ids) -> str:
    if name.startswith("models"):
        return str(ids.data / "tiny-llama")
    if name.startswith("share"):
        return str(ids.sae_folder)
    return str(ids.text_file)


def valid_arg(name: str, p: dict, ids: Ids):
    label = (p.get("label") or p.get("parameter_name") or "").lower()
    comp = p.get("component", "")
    multi = "list" in str(p.get("python_type", {}).get("type", "")).lower() or label in ("jobs",)
    if comp == "File":
        return _file_for(label, name, ids)
    if "Literal[" in str(p.get("python_type", {}).get("type", "")) and p.get("parameter_has_default"):
        return p.get("parameter_default")  # a fixed list of choices (a filter, a method): its default is valid
    pick = None
    if label.startswith("dataset") and comp == "Dropdown":
        pick = ids.dataset
    elif "sae" in label and comp == "Dropdown":
        pick = ids.sae
    elif (label.startswith("model") or "(model)" in label) and comp == "Dropdown":
        pick = ids.model
    elif label in ("job", "jobs"):
        pick = ids.job
    elif label.startswith("hook point") and comp == "Dropdown":
        pick = HOOK
    elif label == "saved sessions":
        pick = ids.session
    elif label == "saved prompt sets":
        pick = ids.prompt_set
    elif label == "bundle":
        pick = ids.export
    elif "path" in label and comp == "Textbox" and "repo" not in label:
        pick = _path_for(name, ids)
    elif label.startswith("base url"):
        pick = CLOSED_PORT_URL
    elif label in ("feature", "preview feature"):
        pick = 1
    if pick is not None:
        return [pick] if multi and not isinstance(pick, list) else pick
    if p.get("parameter_has_default"):
        return p.get("parameter_default")
    kind = str(p.get("python_type", {}).get("type", "str"))
    return 0 if kind in ("float", "int") else False if kind == "bool" else [] if "list" in kind else ""


def endpoints(client) -> dict[str, list[dict]]:
    """`{name (no slash): parameters}` of the app's named endpoints."""
    api = client.view_api(print_info=False, return_format="dict")
    return {k.lstrip("/"): v["parameters"] for k, v in api["named_endpoints"].items()}


def call(client, name: str, args: list, timeout: float = 120):
    try:
        return client.submit(*args, api_name="/" + name).result(timeout=timeout)
    except Exception as e:  # noqa: BLE001 — the caller reports it
        return e


def cancel_all(home: Path) -> None:
    from mistudio_core.jobs import JobRegistry
    from mistudio_core.platform.store import Store

    jobs = JobRegistry(Store(home))
    for rec in jobs.list():
        if rec["status"] in ("queued", "running", "interrupted"):
            jobs.cancel(rec["id"])
    deadline = time.time() + 60
    while time.time() < deadline and any(r["status"] == "running" for r in jobs.list()):
        time.sleep(0.5)


def call_all(client, ids: Ids, cancel: bool = True) -> dict:
    eps = {k: v for k, v in endpoints(client).items() if k not in SKIP}
    order = ([n for n in eps if STARTS.search(n)] + [n for n in eps if not STARTS.search(n) and not
             DELETES.search(n)] + [n for n in eps if DELETES.search(n)])
    results = {}
    for i, name in enumerate(order):
        if cancel and i and STARTS.search(order[i - 1]) and not STARTS.search(name):
            cancel_all(ids.home)  # long jobs were queued: stop them before the watchers wait on them
        results[name] = call(client, name, [valid_arg(name, p, ids) for p in eps[name]])
    if cancel:
        cancel_all(ids.home)
    return results


BAD_WORDS = ("not in the list of choices", "Traceback", "Unexpected error", "Error(")


def problems(results: dict) -> list[str]:
    """Endpoint calls that raised, or whose text outputs show a rejected value, a traceback or a bug."""
    out = []
    for name, res in results.items():
        if isinstance(res, Exception):
            out.append(f"{name}: raised {type(res).__name__}: {str(res)[:300]}")
            continue
        texts = [v for v in (res if isinstance(res, tuple) else (res,)) if isinstance(v, str)]
        for t in texts:
            if any(w in t for w in BAD_WORDS):
                out.append(f"{name}: {t[:300]}")
    return out
