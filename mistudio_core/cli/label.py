"""`python -m mistudio_core label ...`: test a provider, label features with an LLM, list/search/set labels.

The API key comes from `$OPENAI_API_KEY` only — no `--api-key` flag, because flags end up in shell history and
in `ps` output. Local servers (Ollama, vLLM, llama.cpp, LM Studio) need none. `label run` works in the
foreground (Ctrl-C stops it; labels already answered are saved, and running it again skips them).
"""
from __future__ import annotations

import os
import sys

from .. import spec as front_door
from ..labeling.client import PRESETS, ProviderConfig, make_client
from ..labeling.engine import label_features
from ..labeling.keys import ENV_VAR
from ..labeling.prompts import build_messages
from ..labeling.scoring import split_examples
from ..labeling.spec import parse_indices
from ..labeling.store import LabelStore


def _provider(args) -> ProviderConfig:
    url = args.base_url or (PRESETS[args.preset][0] if args.preset else None)
    model = args.model or (PRESETS[args.preset][1] if args.preset else "")
    return ProviderConfig(base_url=url or PRESETS["OpenAI"][0], model=model, timeout_s=args.timeout,
                          price_in_per_1m=args.price_in, price_out_per_1m=args.price_out, json_mode=args.json_mode)


def _features(store, sae_id):
    from ..features.results import FeatureResults

    return FeatureResults.load(store, sae_id)


def cmd_test(args):
    return make_client(_provider(args), os.environ.get(ENV_VAR), store=args.store).test_connection()


def cmd_run(args):
    indices = parse_indices(args.indices) if args.indices else []
    built = front_door.build("label", store=args.store, sae_id=args.sae, provider=_provider(args).to_dict(),
                             selection="indices" if indices else "live", indices=indices,
                             only_unlabeled=args.only_unlabeled, score=not args.no_score,
                             concurrency=args.concurrency, n_top_examples=args.n_top)
    spec = front_door.validate("label", built)  # the key stays in this process: from the environment, never the spec

    def report(done: int, total: int, m: dict) -> None:
        print(f"[{done}/{total}] labeled {m['labeled']}, failed {m['failed']}, tokens "
              f"{m['prompt_tokens'] + m['completion_tokens']:,}, cost ${m['cost_usd']:.4f}", file=sys.stderr,
              flush=True)

    totals = label_features(args.store, spec, os.environ.get(ENV_VAR), _features(args.store, args.sae),
                            report=report, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    return totals.metrics() | {"failures": totals.failures}


def cmd_prompt(args):
    """The labeling prompt of one feature, without calling any LLM (to tune a template)."""
    feature = _features(args.store, args.sae).feature(args.index)
    shown, _ = split_examples(feature, args.n_top, 1)
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in build_messages(feature, shown, args.index))


def cmd_list(args):
    labels = LabelStore(args.store, args.sae)
    entries = labels.all()
    keep = labels.search(args.search) if args.search else sorted(entries)
    rows = []
    for i in keep:
        e = entries[i]
        score = e.get("score") or {}
        rows.append({"index": i, "label": e["label"], "category": e.get("category", ""), "source": e["source"],
                     "accuracy": score.get("accuracy"), "chance": score.get("chance"),
                     "fuzzing_accuracy": (e.get("fuzzing") or {}).get("accuracy"),
                     "fuzzing_chance": (e.get("fuzzing") or {}).get("chance")})
    return rows


def cmd_set(args):
    return LabelStore(args.store, args.sae).set(args.index, args.label, category=args.category,
                                                description=args.description)


def _provider_args(p) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), help="fill base URL and model for a known server")
    p.add_argument("--base-url", help="OpenAI-compatible root, e.g. http://localhost:11434/v1 (default: OpenAI)")
    p.add_argument("--model", help="model name as the server knows it")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    p.add_argument("--price-in", type=float, default=0.0, help="USD per 1M prompt tokens, for the estimate")
    p.add_argument("--price-out", type=float, default=0.0, help="USD per 1M completion tokens")
    p.add_argument("--json-mode", action="store_true", help="ask the server for a JSON object response")


def register(subparsers) -> None:
    p = subparsers.add_parser("label", help="label SAE features with an LLM (key from $OPENAI_API_KEY)")
    sub = p.add_subparsers(dest="label_command", metavar="ACTION", required=True)
    test = sub.add_parser("test", help="check that the provider answers (lists models or sends a 1-token chat)")
    _provider_args(test)
    test.set_defaults(func=cmd_test)

    run = sub.add_parser("run", help="label (and score) features in the foreground")
    run.add_argument("--sae", required=True, help="SAE id with extracted features")
    run.add_argument("--indices", help="only these features, e.g. '3,17,40-45' (default: all live features)")
    run.add_argument("--only-unlabeled", action="store_true", help="skip features that have any label")
    run.add_argument("--no-score", action="store_true", help="skip detection scoring (halves the requests)")
    run.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    run.add_argument("--n-top", type=int, default=10, help="top examples shown to the LLM (default 10)")
    _provider_args(run)
    run.set_defaults(func=cmd_run)

    prompt = sub.add_parser("prompt", help="print the labeling prompt of one feature (no LLM call)")
    prompt.add_argument("--sae", required=True)
    prompt.add_argument("--index", type=int, required=True)
    prompt.add_argument("--n-top", type=int, default=10)
    prompt.set_defaults(func=cmd_prompt)

    ls = sub.add_parser("list", help="labels of an SAE (optionally only those matching --search)")
    ls.add_argument("--sae", required=True)
    ls.add_argument("--search", help="text to find in label, category or description")
    ls.set_defaults(func=cmd_list)

    st = sub.add_parser("set", help="set a manual label (never overwritten by LLM labeling)")
    st.add_argument("--sae", required=True)
    st.add_argument("--index", type=int, required=True)
    st.add_argument("--label", required=True)
    st.add_argument("--category", default=None, help="default: keep the current one")
    st.add_argument("--description", default=None, help="default: keep the current one")
    st.set_defaults(func=cmd_set)
