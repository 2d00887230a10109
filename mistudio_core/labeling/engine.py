"""Label a selection of features: a thread pool of LLM requests, labels saved as they arrive.

- Plan: skip manual labels (never overwritten), features already auto-labeled with this spec's fingerprint
  (so a resumed job does not pay twice) and, with `only_unlabeled`, any labeled feature.
- Per feature: one labeling request (+ one retry with a reminder when the answer is not usable JSON), then
  one detection-scoring and one fuzzing-scoring request. An unusable answer is a *failure of that feature*,
  recorded; the job goes on.
- A `ProviderError` (server down after retries, bad key, unknown model) stops the job: what finished is saved
  first, then the error is raised, so the job ends failed and resuming it labels only the rest. A feature
  whose scoring request hit that error is redone on resume (label and score are saved together).
"""
from __future__ import annotations

import random
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ..platform.errors import ValidationError
from .client import LLMClient, Reply, Stopped, make_client
from .prompts import REMINDER, build_messages, parse_label
from .scoring import negatives_for, score_detection, score_fuzzing, split_examples
from .spec import LabelSpec
from .store import LabelStore

POOL_FEATURES = 40  # features whose examples serve as non-activating snippets in scoring


@dataclass
class Totals:
    labeled: int = 0
    failed: int = 0
    skipped_manual: int = 0
    skipped_done: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0
    retries: int = 0
    failures: list = field(default_factory=list)

    def add(self, replies: list[Reply], cost: Callable[[int, int], float]) -> None:
        for r in replies:
            self.prompt_tokens += r.prompt_tokens
            self.completion_tokens += r.completion_tokens
            self.cost_usd += cost(r.prompt_tokens, r.completion_tokens)
            self.requests += 1
            self.retries += r.retries

    def metrics(self) -> dict:
        d = asdict(self)
        d.pop("failures")
        d["cost_usd"] = round(self.cost_usd, 6)
        return d


@dataclass
class Outcome:
    index: int
    label: dict | None
    replies: list
    score: dict | None = None
    error: str = ""
    fuzz: dict | None = None


def selected_indices(spec: LabelSpec, features: Any) -> list[int]:
    rows = features.table()
    if spec.selection == "indices":
        n = features.n_features
        bad = [i for i in spec.indices if i >= n]
        if bad:
            raise ValidationError(f"Feature indices {bad[:5]} are out of range: this SAE has {n} features (0–{n - 1}).")
        return list(spec.indices)
    return [int(r["index"]) for r in rows if not r.get("dead")]


def plan(spec: LabelSpec, features: Any, labels: LabelStore, totals: Totals) -> list[int]:
    """The features still to label, counting what is skipped and why."""
    existing, fp = labels.all(), spec.fingerprint()
    todo = []
    for i in selected_indices(spec, features):
        entry = existing.get(i)
        if entry and entry.get("source") == "manual":
            totals.skipped_manual += 1
        elif entry and (spec.only_unlabeled or entry.get("fingerprint") == fp):
            totals.skipped_done += 1
        else:
            todo.append(i)
    return todo


def negative_pool(spec: LabelSpec, features: Any, todo: list[int]) -> list[tuple[int, dict]]:
    """A few top examples of up to POOL_FEATURES live features (to-do ones first, then random ones)."""
    live = [int(r["index"]) for r in features.table() if not r.get("dead")]
    rng = random.Random(spec.seed)
    chosen = list(dict.fromkeys(todo[:POOL_FEATURES // 2] + rng.sample(live, min(len(live), POOL_FEATURES))))
    pool = []
    for i in chosen[:POOL_FEATURES]:
        pool += [(i, e) for e in (features.feature(i).get("top_examples") or [])[:3]]
    return pool


def estimate(spec: LabelSpec, features: Any, labels: LabelStore) -> dict:
    """Rough size and cost of a job before it runs: the features to do, and tokens at ~4 characters per token
    from the first one's prompts (labeling + scoring, answers at `max_tokens` / 3)."""
    todo = plan(spec, features, labels, Totals())
    cfg = spec.provider_config
    if not todo:
        return {"features": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    feature = features.feature(todo[0])
    shown, held = split_examples(feature, spec.n_top_examples, spec.n_quantile_examples)
    chars = sum(len(m["content"]) for m in build_messages(feature, shown, todo[0], spec.template,
                                                             spec.system_prompt))
    if spec.score:  # the scoring prompt shows 2 x n_score unmarked snippets of about the same length
        per_snippet = chars / max(len(shown), 1)
        chars += 2 * min(len(held), spec.n_score_examples) * per_snippet + 600
    prompt = int(len(todo) * chars / 4)
    if spec.score and spec.fuzz:  # the fuzzing prompt: the same snippets once more, marked
        chars += min(len(held), spec.n_score_examples) * per_snippet + 600
    completion = int(len(todo) * (1 + spec.score * (1 + spec.fuzz)) * cfg.max_tokens / 3)
    return {"features": len(todo), "prompt_tokens": prompt, "completion_tokens": completion,
            "cost_usd": round(cfg.cost(prompt, completion), 4)}


def label_one(client: LLMClient, spec: LabelSpec, index: int, feature: dict, pool: list) -> Outcome:
    shown, held = split_examples(feature, spec.n_top_examples, spec.n_quantile_examples)
    if not shown:
        return Outcome(index, None, [], error="no activating examples (dead feature?)")
    messages = build_messages(feature, shown, index, spec.template, spec.system_prompt)
    replies = [client.chat(messages)]
    label = parse_label(replies[-1].text)
    if label is None:
        messages = messages + [{"role": "assistant", "content": replies[-1].text},
                               {"role": "user", "content": REMINDER}]
        replies.append(client.chat(messages))
        label = parse_label(replies[-1].text)
    if label is None:
        return Outcome(index, None, replies, error=f"unreadable answer twice: {replies[-1].text[:160]!r}")
    score = None
    if spec.score:
        rng = random.Random(spec.seed * 1_000_003 + index)
        positives = rng.sample(held, min(len(held), spec.n_score_examples))
        negatives = negatives_for(index, feature, pool, len(positives), rng)
        score, more = score_detection(client, label, positives, negatives, seed=rng.randrange(2**31))
        replies += more
        if spec.fuzz:
            fuzz, more = score_fuzzing(client, label, positives, seed=rng.randrange(2**31))
            replies += more
            return Outcome(index, label, replies, score, fuzz=fuzz)
    return Outcome(index, label, replies, score)


def label_features(store, spec: LabelSpec, api_key: str | None, features: Any, totals: Totals | None = None,
                   report: Callable[[int, int, dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None) -> Totals:
    """Label `spec`'s selection of `features` (a `FeatureResults`-like object: `n_features`, `table()`,
    `feature(i)`). Returns the running totals (pass the previous ones to keep counting across a resume)."""
    cfg, labels, totals = spec.provider_config, LabelStore(store, spec.sae_id), totals or Totals()
    totals.skipped_manual = totals.skipped_done = 0
    todo = plan(spec, features, labels, totals)
    log and log(f"{len(todo)} features to label with {cfg.model} at {cfg.base_url}; skipped "
                f"{totals.skipped_manual} manual, {totals.skipped_done} already done")
    if not todo:
        return totals
    stop = threading.Event()
    client = make_client(cfg, api_key, stop=stop, store=store)
    read_lock = threading.Lock()  # FeatureResults is not promised to be thread-safe
    pool = negative_pool(spec, features, todo) if spec.score else []

    def work(i: int) -> Outcome:
        with read_lock:
            feature = features.feature(i)
        return label_one(client, spec, i, feature, pool)

    fatal, done_count, queue, fingerprint = None, 0, iter(todo), spec.fingerprint()
    with ThreadPoolExecutor(spec.concurrency, thread_name_prefix="label") as ex:
        pending: set = set()
        while True:
            while not stop.is_set() and len(pending) < 2 * spec.concurrency and (i := next(queue, None)) is not None:
                pending.add(ex.submit(work, i))
            if not pending:
                break
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            batch = []
            for fut in finished:
                done_count += 1
                try:
                    out = fut.result()
                except Stopped:  # cancelled or another request failed: this feature stays to do
                    continue
                except Exception as err:  # ProviderError, or a bug: stop, but save what finished first
                    fatal = fatal or err
                    stop.set()
                    continue
                totals.add(out.replies, cfg.cost)
                if out.label is None:
                    totals.failed += 1
                    totals.failures.append({"index": out.index, "error": out.error})
                    log and log(f"feature {out.index}: {out.error}")
                    continue
                batch.append((out.index, dict(out.label, score=out.score, fuzzing=out.fuzz, model=cfg.model,
                                              fingerprint=fingerprint)))
            if batch:
                totals.labeled += sum(labels.set_auto_many(batch))
            if report and finished:
                report(done_count, len(todo), totals.metrics())
            if should_stop and should_stop():
                stop.set()
    if fatal is not None:
        raise fatal
    return totals
