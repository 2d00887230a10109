"""`python -m mistudio_core import|catalog|explanations|export|upload|compare`: community SAEs in, bundles out.

Hub tokens: `--token`, else `HF_TOKEN`; used for the one call, never written anywhere.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import stderr_progress as _progress
from .. import spec as front_door
from ..interop import catalog
from ..interop.compare import compare_saes
from ..interop.hub import upload_bundle
from ..interop.import_spec import run_import
from ..interop.job import FORMATS, run_export
from ..interop.np_explanations import import_explanations, import_explanations_hub


def cmd_import(args):
    spec = front_door.build("import", store=args.store, path=(args.snapshot or args.path) if args.catalog else
                            args.path, hub=args.hub, catalog=args.catalog, model_id=args.model, name=args.name,
                            hook_name=args.hook, repo_id=args.repo_id, path_in_repo=args.path_in_repo,
                            register_model=args.register_model)
    return run_import(args.store, spec, token=args.token or os.environ.get("HF_TOKEN"), progress=_progress)


def cmd_catalog(args):
    rows = catalog.list_entries(args.store, model=args.model, layer=args.layer, width=args.width)
    keys = ("id", "model", "layer", "width", "l0", "hook_name", "download_bytes", "neuronpedia")
    return {"count": len(rows), "entries": [{k: r.get(k) for k in keys} for r in rows[: args.top]]}


def cmd_explanations(args):
    if args.hub:
        return import_explanations_hub(args.store, args.sae, args.hub, args.file,
                                       token=args.token or os.environ.get("HF_TOKEN"))
    return import_explanations(args.store, args.sae, Path(args.file))


def cmd_export(args):
    spec = front_door.build("export", store=args.store, format=args.format, sae_id=args.sae, name=args.name)
    return run_export(args.store, spec, progress=_progress)


def cmd_upload(args):
    token = args.token or os.environ.get("HF_TOKEN")
    url = upload_bundle(args.store.path("exports", args.export), args.repo_id, token, private=args.private)
    return {"uploaded": args.export, "url": url}


def cmd_compare(args):
    result = compare_saes(args.store, args.a, args.b)
    result["matches"] = result["matches"][: args.top]
    return result


def register(sub) -> None:
    p = sub.add_parser("import", help="import an SAE (SAELens / Gemma Scope / sparsify) from a folder, archive or "
                                      "the Hub")
    p.add_argument("path", nargs="?", help="local folder or .zip/.tar.gz; with --hub: the path inside the repo")
    p.add_argument("--hub", metavar="REPO_ID", help="download from this Hub repo (e.g. google/gemma-scope-2b-pt-res)")
    p.add_argument("--token", help="Hub token for gated/private repos (default: $HF_TOKEN)")
    p.add_argument("--model", help="registered model id the SAE belongs to")
    p.add_argument("--hook", help="hook point, when the files do not say (e.g. blocks.8.hook_resid_post)")
    p.add_argument("--name", help="library name")
    p.add_argument("--repo-id", help="for a local Gemma Scope params.npz: the repo it came from")
    p.add_argument("--path-in-repo", help="for a local Gemma Scope params.npz: e.g. layer_20/width_16k/average_l0_71")
    p.add_argument("--catalog", metavar="ID", help="a catalog entry (see `catalog`), e.g. "
                   "gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71 or gemma-2-2b/20-gemmascope-res-16k")
    p.add_argument("--snapshot", help="with --catalog: a local snapshot folder of the repo (offline route)")
    p.add_argument("--register-model", action="store_true", help="with --catalog: also register the model it needs")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("catalog", help="list pretrained SAEs the catalog knows (filter by model, layer, width)")
    p.add_argument("--model", help="e.g. gemma-2-2b, gemma-2-9b, gpt2-small")
    p.add_argument("--layer", type=int)
    p.add_argument("--width", help="e.g. 16k, 65k, 1m")
    p.add_argument("--top", type=int, default=50, help="how many entries to print")
    p.set_defaults(func=cmd_catalog)

    p = sub.add_parser("explanations", help="import Neuronpedia explanations (JSON/JSONL/gzip) as labels of an SAE")
    p.add_argument("sae", help="library SAE id")
    p.add_argument("file", help="local file; with --hub: the file's path in the dataset repo")
    p.add_argument("--hub", metavar="DATASET_REPO", help="download the file from this Hub dataset repo")
    p.add_argument("--token", help="Hub token (default: $HF_TOKEN)")
    p.set_defaults(func=cmd_explanations)

    p = sub.add_parser("export", help="write an SAELens or Neuronpedia bundle under exports/")
    p.add_argument("sae", help="library SAE id")
    p.add_argument("--format", choices=FORMATS, default="saelens")
    p.add_argument("--name")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("upload", help="upload an export bundle to a Hugging Face Hub model repo")
    p.add_argument("export", help="export id (see exports/ in the data directory)")
    p.add_argument("repo_id")
    p.add_argument("--token", help="write token (default: $HF_TOKEN)")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=cmd_upload)

    p = sub.add_parser("compare", help="nearest-feature match between two SAEs by decoder cosine")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--top", type=int, default=20, help="how many matches to list")
    p.set_defaults(func=cmd_compare)
