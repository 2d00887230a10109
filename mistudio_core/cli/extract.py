"""`python -m mistudio_core extract ...` — run a feature extraction and read its results.

    extract run --sae ID --dataset ID [--n-tokens N] [--top-k K] [--filters special punctuation ...]
                [--model-dtype auto|float32|bfloat16]
    extract table --sae ID [--sort frequency|max_activation|index] [--limit N]
    extract feature --sae ID --index I
    extract search --sae ID --token " Congress"
"""
from __future__ import annotations


from ..features.token_filters import FILTERS


def _run(args):
    """Build the spec through the front door, then run the same "extract" job the Features tab queues, here."""
    from ..features.results import FeatureResults
    from ..spec import build
    from .foreground import outcome, run_foreground

    spec = build("extract", store=args.store, sae_id=args.sae, dataset_id=args.dataset, n_tokens=args.n_tokens,
                 top_k=args.top_k, threshold=args.threshold, filters=args.filters,
                 batch_contexts=args.batch_contexts, seed=args.seed, model_dtype=args.model_dtype, device=args.device)
    outcome(run_foreground(args.store, "extract", spec, name=f"extract {args.sae}"))
    res = FeatureResults.load(args.store, args.sae)
    freq = res.frequencies()
    return {"sae_id": args.sae, "n_tokens": res.n_tokens, "n_features": res.n_features,
            "dead": int((freq == 0).sum()), "dense": int((freq > spec["dense_threshold"]).sum())}


def _load(args):
    from ..features.results import FeatureResults

    return FeatureResults.load(args.store, args.sae)


def _table(args):
    rows = _load(args).table()
    rows.sort(key=lambda r: r[args.sort], reverse=args.sort != "index")
    return rows[:args.limit]


def _feature(args):
    feat = _load(args).feature(args.index)
    feat["top_examples"] = feat["top_examples"][:args.examples]
    return feat


def _human_feature(f: dict) -> str:
    lines = [f"feature {f['index']}  {f['label']!r}  freq={f['frequency']:.3g}  max={f['max_activation']:.3g}"
             f"{'  DEAD' if f['dead'] else ''}{'  DENSE' if f['dense'] else ''}",
             "top logits: " + ", ".join(f"{t!r}" for t, _ in f["top_logits"]),
             "bottom logits: " + ", ".join(f"{t!r}" for t, _ in f["bottom_logits"])]
    for e in f["top_examples"]:
        toks = [f"[[{t}]]" if j == e["peak"] else t for j, t in enumerate(e["tokens"])]
        lines.append(f"{e['value']:8.3f}  {''.join(toks)!r}")
    return "\n".join(lines)


def _search(args):
    return _load(args).search_token(args.token, n=args.limit)


def register(subparsers) -> None:
    p = subparsers.add_parser("extract", help="feature extraction: top examples, statistics, search")
    sub = p.add_subparsers(dest="extract_command", metavar="ACTION")
    run = sub.add_parser("run", help="extract features of an SAE on a tokenized dataset")
    run.add_argument("--sae", required=True, help="SAE library id")
    run.add_argument("--dataset", required=True, help="dataset id (tokenized for the SAE's model)")
    run.add_argument("--n-tokens", type=int, help="tokens to read (default: ExtractConfig's)")
    run.add_argument("--top-k", type=int, help="top examples per feature")
    run.add_argument("--threshold", type=float, help="a feature fires above this activation")
    run.add_argument("--filters", nargs="*", choices=FILTERS, help="token classes that never count as firing")
    run.add_argument("--batch-contexts", type=int)
    run.add_argument("--seed", type=int)
    run.add_argument("--device", default=None, help="cuda / cpu (default: CUDA if available)")
    run.add_argument("--model-dtype", choices=["auto", "float32", "bfloat16"],
                     help="dtype of the model's forward (default auto: bfloat16 where it is faster here)")
    run.set_defaults(func=_run)
    table = sub.add_parser("table", help="list features with their statistics")
    table.add_argument("--sae", required=True)
    table.add_argument("--sort", default="frequency", choices=["frequency", "max_activation", "mean_activation",
                                                                 "index"])
    table.add_argument("--limit", type=int, default=20)
    table.set_defaults(func=_table)
    feat = sub.add_parser("feature", help="one feature: statistics, logits, top examples")
    feat.add_argument("--sae", required=True)
    feat.add_argument("--index", type=int, required=True)
    feat.add_argument("--examples", type=int, default=10)
    feat.set_defaults(func=_feature, human=_human_feature)
    search = sub.add_parser("search", help="features whose top examples peak on a token")
    search.add_argument("--sae", required=True)
    search.add_argument("--token", required=True, help="token text, e.g. ' Congress'")
    search.add_argument("--limit", type=int, default=20)
    search.set_defaults(func=_search)
    p.set_defaults(func=lambda args: p.print_help())
