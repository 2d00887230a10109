"""`python -m mistudio_core circuit ...`: attribution graphs over SAEs at several layers (docs/CIRCUITS.md).

    circuit build "The capital of France is" --sae L2 --sae L5 --sae L8 [--target " Paris"] [--minus runner-up]
    circuit show GRAPH [--top 15]          circuit list
    circuit ablate GRAPH F3.1234@6 F5.77@6 [--scale 0]      # target before/after beside the graph's prediction
    circuit pin GRAPH F3.1234@6 --group capitals            circuit groups
    circuit export GRAPH --file graph.json                  # circuit-tracer / Neuronpedia graph JSON
    circuit import --file graph.json                        # someone's graph, for viewing

`build` runs the `circuit` job in the foreground (the same job the Circuits tab submits).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..platform.errors import ValidationError
from ..platform.store import write_json_atomic


def _top(graph: dict, n: int) -> list[dict]:
    nodes = sorted(graph["nodes"], key=lambda x: -abs(x["effect"]))[:n]
    tokens = graph["tokens"]
    return [dict(node=x["id"], kind=x["kind"], hook=graph["sites"][x["site"] - 1]["hook"] if x["site"] else "embed",
                 token=tokens[x["pos"]] if x["pos"] < len(tokens) else "", effect=round(x["effect"], 4),
                 label=x.get("label", "")) for x in nodes]


def _summary(graph: dict, n: int = 15) -> dict:
    t = graph["target"]
    return dict(id=graph.get("id"), prompt=graph["prompt"], target=t["token"], minus=t.get("minus"),
                value=graph.get("stats", {}).get("target_value"), nodes=len(graph["nodes"]),
                edges=len(graph["edges"]), seconds=graph.get("seconds"), top=_top(graph, n))


def _human(result: dict) -> str:
    head = (f"graph {result['id']}: {result['prompt']!r} → {result['target']!r}"
            + (f" − {result['minus']!r}" if result.get("minus") else "")
            + f"  (target {result['value']:.3f}; {result['nodes']} nodes, {result['edges']} edges"
            + (f", {result['seconds']} s)" if result.get("seconds") is not None else ")"))
    rows = [f"  {r['node']:<16} {r['kind']:<9} {r['token']!r:<14} {r['effect']:+9.4f}  {r['label']}"
            for r in result["top"]]
    return "\n".join([head, "  node             kind      token          effect  label", *rows])


def cmd_build(args):
    from .foreground import run_foreground

    settings = {k: v for k, v in dict(node_share=args.node_share, edge_share=args.edge_share,
                                      max_nodes=args.max_nodes, start_features=args.start_features).items()
                if v is not None}
    from ..spec import build

    spec = build("circuit", store=args.store, sae_ids=args.sae or [], prompt=args.prompt, target=args.target,
                 minus=args.minus, settings=settings, device=args.device)  # the tab's spec, checked the same way
    record = run_foreground(args.store, "circuit", spec)
    if record["status"] != "done":
        raise ValidationError(record.get("error") or f"The circuit job ended {record['status']}.")
    from ..circuits.service import load_graph

    return _summary(load_graph(args.store, record["result"]["graph_id"]), args.top)


def cmd_show(args):
    from ..circuits.service import load_graph

    return _summary(load_graph(args.store, args.id), args.top)


def cmd_list(args):
    from ..circuits.service import list_graphs

    return list_graphs(args.store)


def cmd_ablate(args):
    from ..circuits.intervene import intervene_graph
    from ..circuits.service import load_graph

    return intervene_graph(args.store, load_graph(args.store, args.id), args.nodes, args.scale, device=args.device)


def cmd_pin(args):
    from ..circuits.groups import pin
    from ..circuits.service import load_graph

    return pin(args.store, load_graph(args.store, args.id), args.nodes, args.group)


def cmd_groups(args):
    from ..circuits.groups import list_groups

    return list_groups(args.store)


def cmd_export(args):
    from ..circuits.exchange import to_neuronpedia
    from ..circuits.service import load_graph

    graph = load_graph(args.store, args.id)
    out = Path(args.file).expanduser() if args.file else args.store.home / "exports" / f"{args.id}.graph.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, to_neuronpedia(graph))
    return {"graph": args.id, "file": str(out), "format": "circuit-tracer / Neuronpedia graph JSON"}


def cmd_import(args):
    from ..circuits.exchange import from_neuronpedia
    from ..circuits.service import graphs_dir
    from ..platform.store import new_id

    path = Path(args.file).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValidationError(f"{path.name} is not JSON ({e}). Import a graph JSON file.") from e
    graph = from_neuronpedia(data)
    graph["id"] = new_id("imported")
    write_json_atomic(graphs_dir(args.store) / f"{graph['id']}.json", graph)
    return {"id": graph["id"], "nodes": len(graph["nodes"]), "edges": len(graph["edges"])}


def register(sub) -> None:
    p = sub.add_parser("circuit", help="attribution graphs: which features at which layers make the next token")
    cs = p.add_subparsers(dest="circuit_command", metavar="ACTION", required=True)
    b = cs.add_parser("build", help="attribute the next token (or --target) to the SAEs' features")
    b.add_argument("prompt")
    b.add_argument("--sae", action="append", help="SAE id, repeatable (one per residual layer, same model)")
    b.add_argument("--target", help="token text or #id (default: the model's top prediction)")
    b.add_argument("--minus", help="subtract this token's logit (text, #id, or runner-up)")
    b.add_argument("--node-share", type=float, help="keep nodes carrying this share of the effect (default 0.8)")
    b.add_argument("--edge-share", type=float, help="keep edges carrying this share (default 0.95)")
    b.add_argument("--max-nodes", type=int, help="at most this many nodes (default 80)")
    b.add_argument("--start-features", action="store_true", default=None,
                   help="keep feature nodes at position 0 (BOS); default: its residual is one error node")
    b.add_argument("--device")
    b.add_argument("--top", type=int, default=15, help="nodes to print")
    b.set_defaults(func=cmd_build, human=_human)
    s = cs.add_parser("show", help="a saved graph's top nodes")
    s.add_argument("id")
    s.add_argument("--top", type=int, default=15)
    s.set_defaults(func=cmd_show, human=_human)
    cs.add_parser("list", help="saved graphs").set_defaults(func=cmd_list)
    a = cs.add_parser("ablate", help="scale nodes (0 ablates) and re-run: target before/after vs predicted")
    a.add_argument("id")
    a.add_argument("nodes", nargs="+", help="node ids, e.g. F3.1234@6 R3@6 E@2")
    a.add_argument("--scale", type=float, default=0.0)
    a.add_argument("--device")
    a.set_defaults(func=cmd_ablate)
    pn = cs.add_parser("pin", help="save graph feature nodes into a feature group")
    pn.add_argument("id")
    pn.add_argument("nodes", nargs="+")
    pn.add_argument("--group", required=True)
    pn.set_defaults(func=cmd_pin)
    cs.add_parser("groups", help="saved feature groups").set_defaults(func=cmd_groups)
    e = cs.add_parser("export", help="write a graph as circuit-tracer / Neuronpedia graph JSON")
    e.add_argument("id")
    e.add_argument("--file", help="output file (default: exports/<id>.graph.json in the data directory)")
    e.set_defaults(func=cmd_export)
    i = cs.add_parser("import", help="import a circuit-tracer / Neuronpedia graph JSON for viewing")
    i.add_argument("--file", required=True)
    i.set_defaults(func=cmd_import)
