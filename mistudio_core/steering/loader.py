"""Everything a steering run needs from the library, from one SAE id: the SAE, its hook point, and the model it
was trained on (loaded once per process by `models.load_model`'s cache), plus a label lookup for features."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..platform.errors import ValidationError
from ..platform.store import Store
from .transcoder import is_transcoder, read_hook


@dataclass
class SteeringTarget:
    """A loaded SAE with its model, ready to steer."""

    sae: Any
    """The `sae.model.SAE` (on the model's device)."""
    hook_name: str
    """TransformerLens hook name the steering writes (e.g. `blocks.8.hook_resid_post`): the SAE's hook, or a
    transcoder's output hook (`blocks.8.hook_mlp_out`)."""
    model: Any
    """The `AutoModelForCausalLM` (eval mode)."""
    tokenizer: Any
    """Its tokenizer."""
    manifest: dict
    """The SAE's library manifest."""

    @property
    def read_hook(self) -> str:
        """The hook whose activation the SAE encodes: `hook_name`, or a transcoder's input hook (e.g.
        `blocks.8.hook_mlp_in`), derived from the SAE as every steering function derives it."""
        return read_hook(self.sae, self.hook_name)


def load_target(store: Store, sae_id: str, device=None, quantization: str | None = None) -> SteeringTarget:
    """Load SAE `sae_id` and its model; the SAE goes to the model's device. `quantization` ("8bit"/"4bit", CUDA
    only) is passed to `load_model`."""
    from ..model.models import load_model
    from ..sae.library import load_library_sae

    if not sae_id:
        raise ValidationError("No SAE selected. Train or import one, then pick it.")
    manifest = store.manifest("saes", sae_id)
    model_id, hook = manifest.get("model_id"), manifest.get("hook_name")
    if not model_id or not hook:
        raise ValidationError(f"SAE {sae_id!r} does not say which model and hook point it belongs to "
                              "(model_id / hook_name missing from its manifest); re-import it with them.")
    loaded = load_model(store, model_id, device=device, quantization=quantization)
    sae = load_library_sae(store, sae_id, device=loaded.device)
    write = hook
    if is_transcoder(sae):  # reads `hook`, writes hook_name_out: steering writes where its features write
        write = manifest.get("hook_name_out") or sae.cfg.hook_name_out
        for key, value in (("hook_name", hook), ("hook_name_out", write)):
            sae.cfg.metadata.setdefault(key, value)   # a cfg.json without them: the manifest says
        read_hook(sae, write)                          # refuses a cfg whose output hook is not the manifest's
    return SteeringTarget(sae=sae.eval(), hook_name=write, model=loaded.model, tokenizer=loaded.tokenizer,
                          manifest=manifest)


def feature_label(store: Store, sae_id: str, index: int) -> str:
    """The feature's label, or '' when it has none (or labels are unavailable)."""
    try:
        from ..labeling.store import LabelStore

        entry = LabelStore(store, sae_id).get(int(index))
    except Exception:  # labels are a nicety here: a missing or unreadable label file must not stop steering
        return ""
    return (entry or {}).get("label", "")


def search_features(store: Store, sae_id: str, text: str, d_sae: int | None = None, limit: int = 50) -> list[dict]:
    """Features matching `text`: a number is an index (if in range); anything else searches the labels by words
    ("yelling", "capital letters"): each hit is `{index, label, source}`, best match first."""
    text = (text or "").strip()
    if text.isdigit():
        i = int(text)
        if d_sae is not None and i >= d_sae:
            raise ValidationError(f"Feature {i} does not exist: this SAE has features 0..{d_sae - 1}.")
        return [{"index": i, "label": feature_label(store, sae_id, i), "source": ""}]
    if not text:
        return []
    from ..labeling.store import LabelStore

    labels = LabelStore(store, sae_id)
    entries = labels.all()
    # The label store's word search (stems, label over description, Neuronpedia explanations included), best first.
    found = labels.search_words(text) if hasattr(labels, "search_words") else labels.search(text)
    return [{"index": i, "label": entries.get(i, {}).get("label", ""), "source": entries.get(i, {}).get("source", "")}
            for i in found[:limit]]


def effect_tokens_for(store: Store, target: SteeringTarget, sae_id: str, features: list[int], n: int = 20) -> dict:
    """`effect.effect_tokens` for a library SAE: from its extraction results when it has them, else from the
    unembedding (the result's `source` says which)."""
    from ..platform.errors import MistudioError
    from ..features.results import FeatureResults
    from .effect import effect_tokens

    try:
        results = FeatureResults.load(store, sae_id)
    except MistudioError:  # not extracted (or unreadable): the unembedding still gives a token set
        results = None
    return effect_tokens(target.model, target.tokenizer, target.sae, features, results, n)


def load_results(store: Store, sae_id: str):
    """The SAE's `FeatureResults`, or None when it was not extracted (or its results cannot be read)."""
    from ..platform.errors import MistudioError
    from ..features.results import FeatureResults

    try:
        return FeatureResults.load(store, sae_id)
    except MistudioError:
        return None


SCORE_KEYS = ("output_score", "input_score")


def feature_stats(results) -> dict:
    """Per-feature tensors the steering tools rank and check with: `max_activation`, `dead` (never active in the
    extraction sample) and, where the extraction stored them (`features/scores.py`), `output_score` and
    `input_score`. {} without results."""
    if results is None:
        return {}
    out = {"max_activation": results.t["max"].float(), "dead": results.t["count"] == 0}
    if getattr(results, "has_scores", False):
        out.update({key: results.score_column(key) for key in SCORE_KEYS})   # NaN where none (dead)
    return out


_STATS: dict = {}


def stats_for(store: Store, sae_id: str) -> dict:
    """`feature_stats` of the SAE's extraction results, cached per (data dir, SAE, results' modification time):
    the page asks on every slot change."""
    from ..features.results import features_dir

    if not sae_id:
        return {}
    try:
        meta = features_dir(store, sae_id) / "meta.json"
        key = (str(store.home), sae_id, meta.stat().st_mtime if meta.is_file() else None)
    except Exception:  # an unknown or unreadable SAE id: no stats, and the caller's own checks say why
        return {}
    if key not in _STATS:
        _STATS.clear()
        _STATS[key] = feature_stats(load_results(store, sae_id)) if key[2] is not None else {}
    return _STATS[key]


def check_steerable(stats: dict, features) -> None:
    """Refuse features the extraction found dead (never active): their decoder rows were never trained toward
    anything, so steering with one writes noise. Says which and what to do."""
    dead = stats.get("dead")
    if dead is None:
        return
    bad = [f.index for f in features if f.index < len(dead) and bool(dead[f.index])]
    if bad:
        raise ValidationError(f"Feature(s) {', '.join(map(str, bad))} never activated in this SAE's extraction "
                              "sample (dead): steering with a dead feature writes noise. Pick a live feature "
                              "(Find ranks live features only).")
