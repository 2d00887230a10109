"""Feature groups: graph nodes pinned under a name, saved as JSON in `<home>/circuits/groups/<name>.json`.

A group lists each pinned feature as {sae_id, hook, feature, label, pos, effect} with the graph it came from, so a
group is steerable (each entry names an SAE and a feature index, what the Steering tab takes) and re-usable for
interventions. Pinning into an existing group adds to it (no duplicates).
"""
from __future__ import annotations

import time

from ..platform.errors import NotFoundError, ValidationError
from ..platform.store import Store, check_id, read_json, shown, write_json_atomic
from .graph import node_map
from .intervene import parse_node


def groups_dir(store: Store, create: bool = False):
    """Where feature groups are saved; made only by a writer."""
    folder = store.home / "circuits" / "groups"
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def pin(store: Store, graph: dict, node_ids: list[str], name: str) -> dict:
    """Add the graph's feature nodes `node_ids` to group `name` (created if new); returns the group."""
    name = check_id("feature groups", (name or "").strip())
    if not node_ids:
        raise ValidationError("No node chosen; pick the graph's feature nodes to pin.")
    nodes = node_map(graph)
    entries = []
    for nid in dict.fromkeys(node_ids):
        n = nodes.get(parse_node(nid)["id"])
        if n is None:
            raise ValidationError(f"Node {shown(nid)} is not in this graph; pick one of its nodes.")
        if n["kind"] != "feature":
            raise ValidationError(f"Node {nid} is an {n['kind']} node; only SAE features can be pinned.")
        site = graph["sites"][n["site"] - 1]
        entries.append(dict(sae_id=site.get("sae_id", ""), hook=site["hook"], feature=n["feature"],
                            label=n.get("label", ""), pos=n["pos"], effect=n["effect"], node=n["id"],
                            graph_id=graph.get("id")))
    path = groups_dir(store, create=True) / f"{name}.json"
    group = read_json(path) if path.is_file() else dict(name=name, created=time.time(), features=[])
    have = {(f["sae_id"], f["feature"], f["pos"], f.get("graph_id")) for f in group["features"]}
    group["features"] += [e for e in entries if (e["sae_id"], e["feature"], e["pos"], e["graph_id"]) not in have]
    group["updated"] = time.time()
    write_json_atomic(path, group)
    return group


def load_group(store: Store, name: str) -> dict:
    path = groups_dir(store) / f"{check_id('feature groups', name)}.json"
    if not path.is_file():
        known = ", ".join(g["name"] for g in list_groups(store)) or "(none yet)"
        raise NotFoundError(f"No feature group {shown(name)}. Known groups: {known}. Pin graph nodes to make one.")
    return read_json(path)


def list_groups(store: Store) -> list[dict]:
    rows = []
    for path in sorted(groups_dir(store).glob("*.json")):
        try:
            g = read_json(path)
        except (OSError, ValueError):
            continue
        rows.append(dict(name=g.get("name", path.stem), features=len(g.get("features", []))))
    return rows
