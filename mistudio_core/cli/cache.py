"""`python -m mistudio_core cache list` / `cache delete KEY`: the activation caches in the data directory.

    cache list            every complete cache: key, model, dataset, hooks, tokens, dtype, size on disk
    cache delete KEY      remove one (a later training that needs it captures it again)
"""
from __future__ import annotations


def _rows(store) -> list[dict]:
    from ..actcache.cache import list_caches

    return [{"key": m["id"], "model_id": m["identity"]["model_id"], "dataset_id": m["identity"]["dataset_id"],
             "hook_names": m["hook_names"], "n_tokens": m["n_tokens"], "dtype": m["dtype"], "bytes": m["bytes"]}
            for m in list_caches(store)]


def _list(args):
    return _rows(args.store)


def _human_list(rows: list[dict]) -> str:
    if not rows:
        return "No activation caches yet (train with --cache use to make one)."
    return "\n".join(f"{r['key']}  {r['n_tokens']:>11,} tokens  {r['dtype']:<8} {r['bytes'] / 2**20:>9.1f} MiB  "
                     f"{','.join(r['hook_names'])}" for r in rows)


def _delete(args):
    from ..actcache.cache import delete_cache

    delete_cache(args.store, args.key)
    return {"deleted": args.key}


def register(subparsers) -> None:
    p = subparsers.add_parser("cache", help="list or delete activation caches")
    sub = p.add_subparsers(dest="cache_cmd", required=True)
    ls = sub.add_parser("list", help="list activation caches with their size")
    ls.set_defaults(func=_list, human=_human_list)
    rm = sub.add_parser("delete", help="delete an activation cache")
    rm.add_argument("key")
    rm.set_defaults(func=_delete)
