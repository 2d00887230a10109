"""`python -m mistudio_core models ...`: add (builtin | hub | local), list, show, delete.

Hub tokens: `--token` works but lands in your shell history; prefer `HF_TOKEN`, read when `--token` is absent.
The token is used for the download only and never written to the data directory.
"""
from __future__ import annotations

import os

from ..model import models as md
from ..interop.validate import read_model_guarded
from . import stderr_progress as _progress


def _row(m: dict) -> dict:
    return {"id": m["id"], "architecture": m.get("architecture"), "layers": m.get("n_layers"),
            "d_model": m.get("d_model"), "params": m.get("n_params"), "source": m.get("source", {}).get("type")}


def cmd_list(args):
    return [_row(m) for m in args.store.list("models")]


def cmd_add(args):
    if args.source == "builtin":
        return md.add_builtin_model(args.store, progress=_progress)
    if args.source == "local":
        return read_model_guarded(lambda: md.add_local_model(args.store, args.path, name=args.name,
                                                             progress=_progress), args.path)
    token = args.token or os.environ.get("HF_TOKEN") or None
    return md.add_hub_model(args.store, args.repo_id, token=token, revision=args.revision, progress=_progress)


def cmd_show(args):
    if args.load:
        loaded = md.load_model(args.store, args.id, device=args.device, dtype=args.dtype)
        summary = md.model_summary(loaded)
        summary["source"] = args.store.manifest("models", args.id).get("source")
        return summary
    return md.model_summary(args.store.manifest("models", args.id))


def cmd_delete(args):
    md.delete_model(args.store, args.id)
    return {"deleted": args.id}


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def _human_show(s: dict) -> str:
    hooks = s.get("hook_points") or []
    sites = sorted({h.split(".", 2)[2] for h in hooks})
    lines = [f"{s.get('id')}  ({s.get('architecture')}, {s.get('model_type')})",
             f"  layers: {s.get('n_layers')}   d_model: {s.get('d_model')}   vocab: {s.get('vocab_size'):,}   "
             f"params: {s.get('n_params'):,}",
             "  memory (weights): " + ", ".join(f"{k} {_gib(v)}" for k, v in s["memory_bytes"].items())]
    if s.get("device"):
        lines.append(f"  loaded on {s['device']} as {s['dtype']}")
    lines.append(f"  source: {s.get('source')}")
    lines.append(f"  hook points ({len(hooks)}): blocks.<0..{(s.get('n_layers') or 1) - 1}>.{{{', '.join(sites)}}}")
    lines += [f"    {h}" for h in hooks]
    return "\n".join(lines)


def _human_added(m: dict) -> str:
    return (f"added {m['id']}: {m['architecture']}, {m['n_layers']} layers, d_model {m['d_model']}, "
            f"{m['n_params']:,} params, {len(m['hook_points'])} hook points")


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="add, inspect and delete models")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="list registered models").set_defaults(func=cmd_list)

    add = sub.add_parser("add", help="register a model").add_subparsers(dest="source", metavar="SOURCE",
                                                                        required=True)
    add.add_parser("builtin", help="the shipped SmolLM2-135M-Instruct (converted once from GGUF)").set_defaults(
        func=cmd_add, human=_human_added)
    hub = add.add_parser("hub", help="a Hugging Face hub model id, e.g. HuggingFaceTB/SmolLM2-135M")
    hub.add_argument("repo_id")
    hub.add_argument("--revision", help="branch, tag or commit (default: main)")
    hub.add_argument("--token", help="access token for gated models (default: $HF_TOKEN); never stored")
    hub.set_defaults(func=cmd_add, human=_human_added)
    local = add.add_parser("local", help="a local transformers folder (config.json + *.safetensors) or .gguf file")
    local.add_argument("path")
    local.add_argument("--name", help="display name and id (default: the folder/file name)")
    local.set_defaults(func=cmd_add, human=_human_added)

    show = sub.add_parser("show", help="architecture, size, memory estimate and hook points of a model")
    show.add_argument("id")
    show.add_argument("--load", action="store_true", help="load the weights and report the real device/dtype")
    show.add_argument("--device", help="with --load: cpu, cuda, cuda:1 ... (default: cuda if available)")
    show.add_argument("--dtype", help="with --load: float32, bfloat16 or float16")
    show.set_defaults(func=cmd_show, human=_human_show)

    delete = sub.add_parser("delete", help="unregister a model (a pointed-to folder or HF cache is kept)")
    delete.add_argument("id")
    delete.set_defaults(func=cmd_delete)
