"""`python -m mistudio_core train ...` and `... eval ...`: the CLI face of the "train" and "evaluate" jobs.

    train --model smollm2-135m-instruct --dataset sotu --hook blocks.8.hook_resid_post [--hook ...]
          [--architecture topk --k 32 --expansion-factor 8 --steps 300 ...every TrainConfig field...]
          [--name NAME] [--eval-contexts 64] [--eval-dataset OTHER] [--no-downstream]
    train --resume [JOB_ID | NAME]
    eval  --sae ID --dataset ID [--split heldout|train] [--n-contexts 64] [--no-downstream]

Both submit the same job the app submits (same registry record, `runs/<id>/metrics.jsonl`, checkpoints, final
evaluation, library entries) and run it here in the foreground, printing progress to stderr, so `--json` prints
only the summary. Ctrl-C checkpoints and leaves the job interrupted; `train --resume` (the job id, the run name,
or nothing: the latest stopped training) continues it with the weights an uninterrupted run would have given.
If the app is running on this data directory, its runner executes the job and this command follows it.
"""
from __future__ import annotations

import dataclasses
import functools

from ..platform.errors import ValidationError
from ..jobs.resume import resume_target
from ..platform.records import coerce, field_docs
from ..sae.train_config import FLAT_FIELDS, PARTS
from .foreground import outcome as _outcome
from .foreground import run_foreground

_SKIP = {"device", "adam_betas"}


_GROUPS = {"sae": "the SAE", "optim": "optimiser", "data": "data: token noise", "runtime": "runtime"}


def _add_train_flags(p) -> None:
    """One flag per TrainConfig field, grouped by its part, with the field's doc as help."""
    for part, cls in PARTS.items():
        group, docs = p.add_argument_group(f"training settings: {_GROUPS[part]}"), field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.name in _SKIP:
                continue
            doc = docs.get(f.name, "").replace("%", "%%")
            group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                               type=functools.partial(coerce, cls, f.name),
                               help=doc or f"{part}.{f.name} (default {f.default})")


def train_spec(args) -> dict:
    """The "train" job spec the flags describe, built by the one front door (`mistudio_core.spec.build`) the
    Training tab, the API and templates use too: the preset (if any), then the flags given on top."""
    from ..spec import build

    given = {name: getattr(args, name) for name in FLAT_FIELDS if name not in _SKIP}
    given.update(model_id=args.model, dataset_id=args.dataset, hook_names=args.hook, name=args.name,
                 device=args.device, eval_contexts=args.eval_contexts, eval_datasets=args.eval_dataset,
                 eval_downstream=None if args.downstream else False, model_dtype=getattr(args, "model_dtype", None),
                 cache_mode=args.cache, cache_dtype=args.cache_dtype, cache_tokens=args.cache_tokens)
    preset = getattr(args, "preset", None)
    if not preset and not (args.model and args.dataset):
        raise ValidationError("Give --model and --dataset, or --preset NAME (or --resume JOB to continue a stopped "
                              "training).")
    if not preset and not args.hook:
        raise ValidationError("Give at least one --hook, e.g. --hook blocks.8.hook_resid_post.")
    return build("train", preset=preset, store=args.store, **given)


def _preset_names() -> list[str]:
    from ..sae.presets import PRESETS

    return list(PRESETS)


def _train(args):
    from ..jobs import JobRegistry
    from ..sae.distributed import launched_by_torchrun

    if launched_by_torchrun():  # rank 0 goes on below; the other ranks train in sae/torchrun_entry.py
        from ..sae.torchrun_entry import torchrun_train

        worker = torchrun_train(args, lambda: None if args.resume is not None else train_spec(args),
                                lambda: _torchrun_spec(args))
        if worker is not None:
            return worker
    resume = None if args.resume is None else resume_target(JobRegistry(args.store), "train", args.resume, args.name)
    spec = None if resume else train_spec(args)
    record = run_foreground(args.store, "train", spec, name=spec and spec["name"], resume=resume)
    result = _outcome(record)
    saes = []
    for sae_id in result.get("sae_ids", []):
        m = args.store.manifest("saes", sae_id)
        saes.append(dict(sae_id=sae_id, hook_name=m.get("hook_name"), metrics=m.get("metrics"),
                         metrics_source=m.get("metrics_source"), train_batch_metrics=m.get("train_batch_metrics")))
    return dict(job_id=record["id"], saes=saes, seconds=round((record["ended"] or 0) - (record["started"] or 0), 1),
                train_seconds=result.get("train_seconds"), tokens_per_s=result.get("tokens_per_s"),
                tokens_trained=result.get("tokens_trained"), eval_seconds=result.get("eval_seconds"))


def _torchrun_spec(args) -> dict:
    """The spec rank 0 will run (a resumed job's own spec), sent to the other ranks."""
    from ..jobs import JobRegistry

    if args.resume is None:
        return train_spec(args)
    reg = JobRegistry(args.store)
    return reg.get(resume_target(reg, "train", args.resume, args.name))["spec"]


def _eval(args):
    if getattr(args, "suite", False):  # the benchmark suite: mistudio_core/benchsuite/cli.py
        from ..benchsuite.cli import run_from_args

        return run_from_args(args)
    from ..sae.eval_job import EvalJobSpec, check_inputs

    spec = EvalJobSpec(sae_id=args.sae, dataset_id=args.dataset, split=args.split, n_contexts=args.n_contexts,
                       downstream=args.downstream, model_id=args.model, device=args.device)
    check_inputs(args.store, spec)  # refuse a mismatched model, width or too small a split before queueing
    record = run_foreground(args.store, "evaluate", spec.to_dict(), name=f"{args.sae}-{args.dataset}")
    result = _outcome(record)
    from ..sae.evals import load_eval

    return load_eval(args.store, result["sae_id"], result["dataset_id"], result["split"])


def _human_eval(result: dict) -> str:
    head = (f"{result['sae_id']} on {result['dataset_id']} ({result['split']}, {result['n_contexts']} contexts, "
            f"{result['n_tokens']} tokens)")
    return "\n".join([head] + [f"{k:20} {v['value']:.4g}   {v['formula']}" for k, v in result["metrics"].items()])


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train SAEs on a model's activations (a 'train' job, run here)")
    p.add_argument("--model", help="model id in the store")
    p.add_argument("--dataset", help="dataset id (tokenized for --model); its held-out slice is never trained on")
    p.add_argument("--hook", action="append", help="hook point, repeatable (one SAE per hook)")
    p.add_argument("--name", help="library name prefix for the trained SAEs")
    p.add_argument("--device", help="cpu, cuda, ... (default: CUDA if available)")
    p.add_argument("--eval-contexts", type=int, help="held-out contexts of the final evaluation, >= 1 (default: up "
                   "to 64, or the preset's)")
    p.add_argument("--eval-dataset", action="append", help="also evaluate on this dataset's held-out slice "
                   "(out-of-domain; repeatable)")
    p.add_argument("--no-downstream", dest="downstream", action="store_false", help="skip CE/KL splicing")
    p.add_argument("--resume", nargs="?", const="", metavar="JOB_OR_NAME",
                   help="continue a stopped training (job id or name; empty: the latest)")
    p.add_argument("--preset", choices=_preset_names(), help="start from a named recipe (sae/presets.py); flags "
                   "given with it override its fields. Alone, it trains the built-in model on the built-in corpus.")
    p.add_argument("--model-dtype", choices=("auto", "float32", "bfloat16"),
                   help="dtype the model computes in for capture and evaluation; auto: bfloat16 on a GPU or a CPU "
                        "with fast bf16 (AMX / AVX-512 BF16), else float32 (default: the preset's, else float32)")
    p.add_argument("--cache", choices=("off", "use", "build"), help="activation cache: off streams from the model "
                   "every epoch; use reuses a matching cache or captures one; build always captures a new one")
    p.add_argument("--cache-dtype", choices=("bfloat16", "float16", "float32"), help="cache dtype on disk "
                   "(default bfloat16; training computes in float32)")
    p.add_argument("--cache-tokens", type=int, help="train-split tokens to capture (default: the run's tokens, "
                   "capped by the split); a longer run replays them for several epochs")
    _add_train_flags(p)
    p.set_defaults(func=_train)
    e = subparsers.add_parser("eval", help="evaluate a library SAE on a tokenized dataset (an 'evaluate' job)")
    e.add_argument("--sae", required=True)
    e.add_argument("--dataset", required=True)
    e.add_argument("--split", default="heldout", choices=("heldout", "train"),
                   help="the tokenization's held-out slice (default) or its training contexts")
    e.add_argument("--model", help="model id (default: the SAE's)")
    e.add_argument("--device")
    e.add_argument("--n-contexts", type=int, default=64)
    e.add_argument("--no-downstream", dest="downstream", action="store_false")
    e.set_defaults(func=_eval, human=_human_eval)
    from ..benchsuite.cli import add_flags as add_suite_flags

    add_suite_flags(e)  # --suite, --parts, --labeler-url, --labeler-model
