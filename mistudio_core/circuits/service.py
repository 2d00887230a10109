"""The library door to attribution graphs: SAE ids + prompt + target → a saved, labelled graph.

Every bad input is one `MistudioError` naming the problem and the fix: no SAE, SAEs of different models, a hook
the model lacks or that is not on the residual stream, two SAEs at the same residual point, a target token that
is not one token (the first piece is offered), a prompt longer than the context. Graphs are JSON files in
`<home>/circuits/<id>.json`.
"""
from __future__ import annotations

import re
import time

import torch

from ..model import hooks
from ..platform.errors import NotFoundError, ValidationError
from ..platform.store import Store, check_id, new_id, read_json, shown, write_json_atomic
from .attribute import Site
from .graph import FORMAT, VERSION, GraphSettings, trace

_RESID = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


def graphs_dir(store: Store, create: bool = False):
    """Where graphs are saved; made only by a writer (a read-only app lists nothing and creates nothing)."""
    folder = store.home / "circuits"
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def residual_index(hook: str) -> int:
    """Position of a residual hook along the stream (resid_pre L = L, resid_post L = L + 1)."""
    m = _RESID.match(hook or "")
    if not m:
        raise ValidationError(f"Circuits decompose the residual stream, but {shown(hook)} is not a residual hook. "
                              "Pick SAEs trained at blocks.<L>.hook_resid_post (or hook_resid_pre), e.g. with the "
                              "'circuits' training preset.")
    return int(m.group(1)) + (m.group(2) == "post")


def transcoder_refusal(sae_id: str, hook_in: str, hook_out: str) -> str:
    """Why a transcoder cannot be a site: a site's nodes must add up to the residual it reads
    (h = decode(encode(h)) + err), but a transcoder decodes into another hook."""
    return (f"SAE {sae_id} is a transcoder ({hook_in} → {hook_out}): attribution graphs here decompose the "
            "residual stream with SAEs that reconstruct the hook they read, and graphs over transcoders are not "
            "supported yet. Pick SAEs trained at blocks.<L>.hook_resid_post (e.g. `train --preset circuits`).")


def check_saes(store: Store, sae_ids: list[str]) -> tuple[str, list[dict]]:
    """(model_id, manifests in stream order) after every check on the set of SAEs."""
    ids = [check_id("saes", s) for s in dict.fromkeys(sae_ids or [])]
    if not ids:
        raise ValidationError("No SAE selected: a graph needs an SAE at one or more layers. Pick them (e.g. those of "
                              "`train --preset circuits`), then run again.")
    mans = [store.manifest("saes", s) for s in ids]
    models = sorted({str(m.get("model_id")) for m in mans})
    if len(models) > 1:
        which = "; ".join(f"{m['id']} → {m.get('model_id')}" for m in mans)
        raise ValidationError(f"These SAEs belong to different models ({which}). Pick SAEs of one model.")
    model_man = store.manifest("models", models[0])
    known = set(model_man.get("hook_points") or [])
    by_index: dict[int, str] = {}
    for m in mans:
        hook = m.get("hook_name")
        if known and hook not in known:
            raise ValidationError(f"SAE {m['id']} reads {shown(hook)}, which model {models[0]} does not have "
                                  f"({model_man.get('n_layers', '?')} layers). Pick SAEs trained on this model.")
        if m.get("hook_name_out"):
            raise ValidationError(transcoder_refusal(m["id"], hook, m["hook_name_out"]))
        idx = residual_index(hook)
        if idx in by_index:
            raise ValidationError(f"SAEs {by_index[idx]} and {m['id']} read the same residual point ({hook}); keep "
                                  "one of them.")
        by_index[idx] = m["id"]
        if model_man.get("d_model") and m.get("d_in") != model_man["d_model"]:
            raise ValidationError(f"SAE {m['id']} has d_in {m.get('d_in')} but model {models[0]} has d_model "
                                  f"{model_man['d_model']}. Pick SAEs trained on this model.")
    return models[0], sorted(mans, key=lambda m: residual_index(m["hook_name"]))


def token_id(tokenizer, text: str | int, what: str = "target") -> int:
    """One vocabulary id for `text` (a token's text, or `#123` for an id)."""
    vocab = len(tokenizer)
    if isinstance(text, int) or (isinstance(text, str) and re.fullmatch(r"#\d+", text.strip())):
        i = int(str(text).strip().lstrip("#"))
        if not 0 <= i < vocab:
            raise ValidationError(f"The {what} token id {i} is not in the vocabulary (0..{vocab - 1}).")
        return i
    if not isinstance(text, str) or not text:
        raise ValidationError(f"The {what} token is empty; type the token (e.g. ' Paris', with its leading space).")
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise ValidationError(f"The {what} {shown(text)} is not in the vocabulary (it encodes to nothing). Type a "
                              "token the model knows.")
    if len(ids) > 1:
        pieces = [tokenizer.decode([i]) for i in ids]
        raise ValidationError(f"The {what} {shown(text)} is {len(ids)} tokens ({' | '.join(map(repr, pieces))}), not "
                              f"one. Use its first piece {pieces[0]!r} (id #{ids[0]}), or pick another token.")
    return ids[0]


def encode_prompt(tokenizer, prompt: str, limit: int, why: str, bos: bool = False) -> torch.Tensor:
    """Token ids of `prompt` (BOS first when `bos` and the tokenizer did not add it: the SAEs saw it in training)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError("The prompt is empty; type the text whose next token you want explained.")
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"][0]
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos and bos_id is not None and (len(ids) == 0 or int(ids[0]) != bos_id):
        ids = torch.cat([torch.tensor([bos_id]), ids])
    if len(ids) > limit:
        raise ValidationError(f"The prompt is {len(ids)} tokens, longer than the context of {limit} ({why}). "
                              "Shorten it.")
    return ids


def _prompt_rules(loaded, mans: list[dict], store: Store) -> tuple[int, str, bool]:
    """(token limit, why, prepend BOS): the shortest context any SAE was trained on, else the model's."""
    limit = int(getattr(loaded.model.config, "max_position_embeddings", 0) or 1 << 30)
    why, bos = "the model's", False
    for m in mans:
        cfg = store.path("saes", m["id"]) / "cfg.json"
        meta = (read_json(cfg).get("metadata") or {}) if cfg.is_file() else {}
        bos = bos or bool(meta.get("prepend_bos"))
        ctx = meta.get("context_size")
        if ctx and int(ctx) < limit:
            limit, why = int(ctx), f"SAE {m['id']} was trained on {ctx}-token contexts"
    return limit, why, bos


def load_sites(store: Store, sae_ids: list[str], device=None):
    """(loaded model, [Site]) for library SAEs, after `check_saes`."""
    from ..model.models import load_model
    from ..sae.library import load_library_sae

    model_id, mans = check_saes(store, sae_ids)
    loaded = load_model(store, model_id, device=device, dtype="float32")
    for m in mans:
        hooks.parse_hook(loaded.model, m["hook_name"])  # the loaded model's own check, listing valid names
    sites = [Site(m["hook_name"], load_library_sae(store, m["id"], device=loaded.device).eval(), m["id"])
             for m in mans]
    for s in sites:  # an imported transcoder whose manifest lacks hook_name_out: its config still says so
        cfg = getattr(s.sae, "cfg", None)
        if getattr(cfg, "d_out", None) is not None:
            raise ValidationError(transcoder_refusal(s.sae_id, s.hook, cfg.hook_name_out or "another hook"))
    return loaded, sites, mans


def build_graph(store: Store, sae_ids: list[str], prompt: str, target: str | int | None = None,
                minus: str | int | None = None, settings: GraphSettings | dict | None = None, device=None,
                save: bool = True, progress=None) -> dict:
    """Attribute the model's next token after `prompt` (or `target`; minus `minus`, "runner-up" for the clean
    run's second choice) to the SAEs' features; returns the graph (saved under `id` unless save=False)."""
    settings = settings if isinstance(settings, GraphSettings) else GraphSettings.from_dict(settings)
    t0 = time.perf_counter()
    loaded, sites, mans = load_sites(store, sae_ids, device)
    tok = loaded.tokenizer
    ids = encode_prompt(tok, prompt, *_prompt_rules(loaded, mans, store))
    with torch.no_grad():
        logits = loaded.model(input_ids=ids[None].to(loaded.device)).logits[0, -1].float()
    top2 = logits.topk(2).indices.tolist()
    t_id = top2[0] if target in (None, "") else token_id(tok, target)
    runner = next(i for i in logits.topk(3).indices.tolist() if i != t_id)
    m_id = runner if minus == "runner-up" else (None if minus in (None, "") else token_id(tok, minus, "minus"))
    if m_id == t_id:
        raise ValidationError("The target and the token subtracted from it are the same; pick two different tokens.")
    if progress:
        progress(0.1, f"attributing over {len(sites)} SAE(s), {len(ids)} tokens")
    graph = trace(loaded.model, sites, ids, t_id, m_id, settings, progress)
    probs = logits.softmax(-1)
    graph.update(format=FORMAT, version=VERSION, prompt=prompt, model_id=loaded.model_id,
                 token_ids=ids.tolist(), tokens=[tok.decode([i]) for i in ids.tolist()],
                 target=dict(token_id=t_id, token=tok.decode([t_id]), prob=float(probs[t_id]),
                             minus_id=m_id, minus=None if m_id is None else tok.decode([m_id])),
                 sites=[dict(hook=s.hook, sae_id=s.sae_id, layer=hooks.parse_hook(loaded.model, s.hook).layer)
                        for s in sites],
                 settings=settings.to_dict(), seconds=round(time.perf_counter() - t0, 3))
    label_nodes(store, graph)
    if save:
        graph["id"] = new_id("circuit")
        write_json_atomic(graphs_dir(store, create=True) / f"{graph['id']}.json", graph)
    return graph


def label_nodes(store: Store, graph: dict, n_tokens: int = 3) -> None:
    """Each feature node's `label`: its label, else the commonest peak tokens of its top examples, else ''."""
    from ..features.results import FeatureResults

    results: dict[int, object] = {}
    for n in graph["nodes"]:
        if n["kind"] != "feature":
            continue
        s = n["site"]
        if s not in results:
            sae_id = graph["sites"][s - 1].get("sae_id")
            try:
                results[s] = FeatureResults.load(store, sae_id) if sae_id else None
            except (NotFoundError, ValidationError):
                results[s] = None
        fr = results[s]
        n["label"] = _feature_text(fr, n["feature"], n_tokens) if fr is not None else ""


def _feature_text(fr, i: int, n_tokens: int) -> str:
    if fr.label(i):
        return fr.label(i)
    toks = [t for t in fr.peak_tokens()[i].tolist() if t >= 0]
    common = sorted(set(toks), key=lambda t: -toks.count(t))[:n_tokens]
    return " · ".join(repr(fr.vocab[t]) for t in common if t < len(fr.vocab))


def load_graph(store: Store, graph_id: str) -> dict:
    path = graphs_dir(store) / f"{check_id('circuits', graph_id)}.json"
    if not path.is_file():
        known = ", ".join(g["id"] for g in list_graphs(store)[:10]) or "(none yet)"
        raise NotFoundError(f"No graph {shown(graph_id)}. Known graphs: {known}. Build one with `circuit build`.")
    return read_json(path)


def list_graphs(store: Store) -> list[dict]:
    """Saved graphs, newest first: id, prompt, target token, number of nodes."""
    rows = []
    for path in sorted(graphs_dir(store).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            g = read_json(path)
        except (OSError, ValueError):
            continue
        rows.append(dict(id=path.stem, prompt=g.get("prompt", ""), target=(g.get("target") or {}).get("token"),
                         nodes=len(g.get("nodes", [])), source=g.get("source", "built")))
    return rows
