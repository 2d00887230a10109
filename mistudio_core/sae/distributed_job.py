"""torchrun glue for the "train" job (`torchrun ... -m mistudio_core train ...`); the math is in `distributed.py`.

Rank 0 runs the job exactly as a single process does (registry record, metrics, checkpoints, final evaluation,
library entries); the train job sees the process group (`distributed.current()`) and trains on its shard with
the gradient seam. The other ranks run the same job function with a `WorkerContext` that reports and saves
nothing, then exit when training ends. Every rank resumes from rank 0's checkpoint (`shared_checkpoint`: rank 0
names the folder, the others read it — the data directory must be shared, which multi-node needs anyway for
the model and the tokens). The activation cache is not used under torchrun (each rank captures its own share).
Limit: the app must not be running as the job runner on the same data directory (rank 0 would only follow).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..platform.errors import ValidationError
from . import distributed as dist


class WorkerContext:
    """A job context for ranks > 0: no registry, no metrics, no checkpoints; stop decisions come from rank 0."""

    job_id = None
    registry = None
    stopped_on_request = False
    cancelled = False

    def __init__(self, store):
        self.store = store
        self.run_dir = Path(tempfile.mkdtemp(prefix="mistudio-rank-"))

    def report(self, step, total=None, **metrics) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def checkpoint(self, tensors, state) -> None:
        pass

    def load_checkpoint(self, device=None):
        return None

    def log(self, msg: str) -> None:
        pass


def shared_checkpoint(ctx) -> tuple[dict, dict] | None:
    """Rank 0's latest checkpoint, loaded on every rank (rank 0 broadcasts the folder it reads)."""
    from ..jobs.checkpoint import load_checkpoint

    info = dist.current()
    if info.is_main:
        folder = str(ctx.run_dir / "checkpoint")
        dist.broadcast_text(folder)
        return ctx.load_checkpoint()
    folder = dist.broadcast_text(None)
    return load_checkpoint(Path(folder)) if Path(folder).exists() else None


COMMITTED = "per-sae-committed.json"


def checkpoint_root(ctx) -> Path:
    """distribute_saes: rank 0's checkpoint folder, on every rank (the SAEs' owners write into it)."""
    info = dist.current()
    folder = dist.broadcast_text(str(ctx.run_dir / "checkpoint") if info.is_main else None)
    return Path(folder)


class PerSAECheckpoints:
    """The trainer's `checkpoint` under distribute_saes: each rank saves its own SAEs, one folder per SAE and step
    (`sae-<i>/step-<s>`); after a barrier rank 0 commits the step (`per-sae-committed.json`), and after a second
    one older steps are removed. A kill between two ranks' saves leaves the previous committed step whole. Every
    rank calls it at the same steps (the trainer's schedule), so no time throttle here."""

    def __init__(self, root: Path, sync, on_commit=None):
        self.root, self.sync, self.on_commit = Path(root), sync, on_commit

    def __call__(self, tensors: dict, state: dict) -> None:
        from ..jobs.checkpoint import save_checkpoint
        from ..platform.store import write_json_atomic

        step = state["step"]
        for pos, i in enumerate(state["indices"]):
            mine = {k: v for k, v in tensors.items() if k.startswith(f"{i}.")}
            one = dict(state, fire_tokens=[state["fire_tokens"][pos]], configs=[state["configs"][pos]],
                       train_configs=[state["train_configs"][pos]], indices=[i])
            save_checkpoint(self.root / f"sae-{i}" / f"step-{step}", mine, one, step=step)
        self.sync.any(False)  # barrier: every owner has written this step
        if dist.current().is_main:
            write_json_atomic(self.root / COMMITTED, {"step": step})
            _point_at(self.root, step)
            if self.on_commit:
                self.on_commit(step)
        self.sync.any(False)  # barrier: no rank reads the commit (or sweeps) before rank 0 wrote it
        for i in state["indices"]:
            for old in (self.root / f"sae-{i}").glob("step-*"):
                if int(old.name[5:]) < step:
                    shutil.rmtree(old, ignore_errors=True)


def committed_step(root: Path) -> int | None:
    from ..platform.store import read_json

    path = Path(root) / COMMITTED
    return int(read_json(path)["step"]) if path.is_file() else None


def load_per_sae(root: Path) -> tuple[dict, dict] | None:
    """The committed step of every SAE merged into one `(tensors, state)`, as a one-process checkpoint has it."""
    from ..jobs.checkpoint import load_checkpoint

    step = committed_step(root)
    if step is None:
        return None
    parts = sorted((int(p.name[4:]), p / f"step-{step}") for p in Path(root).glob("sae-*"))
    tensors, state = {}, None
    for i, folder in parts:
        t, s = load_checkpoint(folder)
        tensors.update(t)
        if state is None:
            state = dict(s, fire_tokens=[], configs=[], train_configs=[], indices=[])
        for key in ("fire_tokens", "configs", "train_configs", "indices"):
            state[key] += s[key]
    if state is None or state["indices"] != list(range(len(parts))):
        raise ValidationError(f"The per-SAE checkpoints in {root} are incomplete at step {step}; delete that folder "
                              "to restart the job from scratch.")
    return tensors, state


def _point_at(root: Path, step: int) -> None:
    """Point the job's LATEST.json at SAE 0's committed step, so the app sees the checkpoint (its step, metric
    history cut back on resume); `resume_state` knows such a pointer means "merge the per-SAE folders"."""
    import time

    from ..jobs.checkpoint import POINTER
    from ..platform.store import read_json, write_json_atomic

    inner = read_json(root / "sae-0" / f"step-{step}" / POINTER)["name"]
    write_json_atomic(root / POINTER, {"name": f"sae-0/step-{step}/{inner}", "step": step, "time": time.time()})


def resume_state(ctx) -> tuple[dict, dict] | None:
    """The checkpoint a train job resumes from, on every rank: the per-SAE one (merged) when distribute_saes wrote
    the latest, else rank 0's ordinary one (`shared_checkpoint` under torchrun, `ctx.load_checkpoint` alone)."""
    from ..jobs.checkpoint import POINTER
    from ..platform.store import read_json

    if dist.current() is None:
        root = ctx.run_dir / "checkpoint"
    else:
        root = checkpoint_root(ctx)
    pointer = root / POINTER
    if pointer.is_file() and read_json(pointer).get("name", "").startswith("sae-"):
        return load_per_sae(root)
    return ctx.load_checkpoint() if dist.current() is None else shared_checkpoint(ctx)


class SAEGroups:
    """What a train job does differently under torchrun with distribute_saes (see `TrainConfig.distribute_saes`)."""

    def __init__(self, ctx, configs):
        self.owned = dist.owned_saes(len(configs), dist.current())
        from .architectures.transcoder import capture_hooks  # a transcoder also needs its output hook
        self.hooks = capture_hooks([configs[i].hook_name for i in self.owned], [configs[i] for i in self.owned])
        self.sync = dist.StopSync()
        self.root = checkpoint_root(ctx)
        self.checkpoint = PerSAECheckpoints(self.root, self.sync, _registry_note(ctx))

    @staticmethod
    def plan(ctx, configs, first) -> "SAEGroups | None":
        """The groups of this job on this rank, or None (single process, or data parallel)."""
        if dist.current() is None or not first.runtime.distribute_saes:
            return None
        return SAEGroups(ctx, configs)

    def final(self) -> tuple[dict, dict]:
        """Every rank's SAEs at the end, from their owners' final checkpoints (for rank 0 to register)."""
        return load_per_sae(self.root)


def _registry_note(ctx):
    def note(step: int) -> None:  # rank 0: the record shows the checkpoint, as ctx.checkpoint would
        import time
        ctx.registry.update(ctx.job_id, checkpoint={"path": str(ctx.run_dir / "checkpoint"), "step": step,
                                                    "time": time.time()}, heartbeat=time.time())
        ctx.log(f"per-SAE checkpoints committed at step {step}")
    return note if ctx.registry is not None else None
