"""Training loop: several SAEs (hook points and/or configs) from one activation stream.

The loop is deliberately short: `train_saes` pulls one batch per step, and each `_Run` (one SAE + its Adam +
its dead-latent counters) takes a step on its hook's slice of the batch. Checkpoints are plain dicts of tensors
plus a JSON-able state (see `_Run.state_tensors`), so they save as safetensors + JSON, never pickle; resuming
restores weights, Adam moments, counters and the step, and asks the stream for batch `step` onward, so a resumed
run is the same computation as an uninterrupted one.

Multi-device: the step only uses the tensors' own device; under torchrun, `sync` (sae/distributed.py) averages
the gradients between `loss.backward()` and `opt.step()` and makes the init statistics and firing counts global.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Iterable, Iterator

import torch

from ..platform.errors import ValidationError
from .config import SAEConfig
from .train_config import TrainConfig
from .metrics import explained_variance
from .model import SAE, torch_dtype

Stream = Iterable[dict] | Callable[[int], Iterator[dict]]
REPORT_SECONDS = 10.0
"""Besides every metrics_every steps, report when this long has passed since the last row (and after the first
step), so a slow run shows its first point within seconds."""


_LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""TrainConfig.autocast → the dtype of the pre-activation product (model.SAE._pre_acts_buffer)."""


class _Run:
    """One SAE under training: model, optimiser, dead-latent and firing counters."""

    def __init__(self, index: int, cfg: SAEConfig, tcfg: TrainConfig, device):
        self.index, self.cfg, self.tcfg = index, cfg, tcfg
        self.sae = SAE(cfg, device=device, seed=tcfg.optim.seed + index)
        self.sae.threshold_lr = tcfg.optim.batchtopk_threshold_lr
        # fused: one pass per tensor instead of ~8 on CPU (a third of a TopK step); CPU only, where Adam's `step`
        # stays a CPU tensor as checkpoints expect
        self.opt = torch.optim.Adam(self._param_groups(tcfg), lr=tcfg.optim.lr, betas=tcfg.optim.adam_betas,
                                    fused=self.sae.W_dec.device.type == "cpu")
        self.since_fired = torch.zeros(cfg.d_sae, dtype=torch.long, device=device)
        self.fire_count = torch.zeros(cfg.d_sae, dtype=torch.long, device=device)
        self.fire_tokens = 0
        self.arch = self.sae.arch  # the registry entry: losses, decoder constraint, threshold, init
        self.options = self.arch.options(tcfg)
        self.unit_decoder = self.arch.unit_decoder
        self.l1 = tcfg.optim.l1_coefficient  # the live λ: moved by target_l0 during its warm-up, else fixed
        self.l0_error = math.nan  # log(L0 / target) at the previous step (the controller's damping term)
        self.last: dict = {}

    def _param_groups(self, tcfg: TrainConfig) -> list[dict]:
        """One Adam group, or two when a jumprelu threshold learns at its own rate (jumprelu_threshold_lr_scale)."""
        theta = self.sae.threshold if isinstance(self.sae.threshold, torch.nn.Parameter) else None
        rest = [p for p in self.sae.parameters() if p is not theta]
        groups = [dict(params=rest, lr_scale=1.0)]
        if theta is not None:
            groups.append(dict(params=[theta], lr_scale=tcfg.optim.jumprelu_threshold_lr_scale))
        return groups

    @torch.no_grad()
    def initialise(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Data-dependent init from the first batch: normalisation scales, b_dec at the (output's) mean/median,
        then the architecture's own (jumprelu: thresholds). `y` is a transcoder's target (None: x)."""
        mean = self.sync.mean if self.sync else (lambda t: t)  # under torchrun: means over the global batch
        if self.cfg.normalize_activations == "expected_average_only_in":
            self.sae.norm_scale.fill_(self.cfg.d_in ** 0.5 / mean(x.float().norm(dim=1).mean()).clamp_min(1e-12))
            if y is not None:
                self.sae.norm_scale_out.fill_(y.shape[1] ** 0.5 / mean(y.float().norm(dim=1).mean()).clamp_min(1e-12))
        x = x * self.sae.norm_scale.to(x.dtype)
        t = x if y is None else y * self.sae.out_scale.to(y.dtype)
        if self.tcfg.sae.b_dec_init == "mean":
            self.sae.b_dec.copy_(mean(t.mean(0)))
        elif self.tcfg.sae.b_dec_init == "geometric_median":
            self.sae.b_dec.copy_(geometric_median(t))
        self.arch.initialise(self.sae, x, self.tcfg)
        if self.sync and (self.tcfg.sae.b_dec_init == "geometric_median" or self.arch.threshold == "parameter"):
            self.sync.broadcast(self.sae)  # rank 0's median / thresholds (a median of medians is not the median)

    def step(self, x: torch.Tensor, step: int, y: torch.Tensor | None = None) -> None:
        x = x.to(self.sae.W_dec.dtype) * self.sae.norm_scale.to(self.sae.W_dec.dtype)
        if y is not None:  # a transcoder's target, at its own scale
            y = y.to(self.sae.W_dec.dtype) * self.sae.out_scale.to(self.sae.W_dec.dtype)
        lr = self.tcfg.optim.lr_at(step)
        for group in self.opt.param_groups:
            group["lr"] = lr * group["lr_scale"]
        dead = self.since_fired >= self.tcfg.optim.dead_window
        l1 = self.l1 if self.tcfg.sae.target_l0 is not None else self.tcfg.l1_at(step)
        low = _LOW.get(self.tcfg.runtime.autocast)
        with torch.autocast(x.device.type, dtype=low, enabled=low is not None):
            out = self.sae.training_losses(x, l1, dead, self.tcfg.optim.aux_k or self.cfg.d_in // 2,
                                           self.tcfg.optim.aux_coefficient, target=y, **self.options)
        self.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        if self.sync:
            self.sync.grads(self.sae)
        if self.unit_decoder:
            self.sae.remove_parallel_decoder_grad()
        self.opt.step()
        if self.unit_decoder:
            self.sae.normalize_decoder()
        self.arch.after_step(self.sae)
        if self.sync and self.arch.threshold == "buffer":
            self.sync.buffers(self.sae)  # batchtopk's threshold follows batch statistics
        if self.sync:  # firing counts of the global batch, so every rank sees the same dead latents
            self._count(self.sync.sum(out["fired"]), x.shape[0] * self.sync.world, step)
        else:
            self._count(out["fired"], x.shape[0], step)
        self._chase_l0(float(out["l0"]), step)
        self.last = dict(out, x=x if y is None else y, lr=lr, dead=dead, l1_coefficient=l1)

    def _chase_l0(self, l0: float, step: int) -> None:
        """target_l0: move log λ by 0.05·e + 1.0·(e − e_prev), e = log(L0/target), clipped to ±0.05. L0 answers λ
        tens of steps late, so a plain proportional step overshoots (measured: target 40 → L0 10); the damping
        term stops pushing while L0 is already moving toward the target."""
        if step < self.tcfg.l1_adapt_steps:
            error = math.log(max(l0, 1e-3) / self.tcfg.sae.target_l0)
            change = 0.0 if math.isnan(self.l0_error) else error - self.l0_error
            self.l1 *= math.exp(max(-0.05, min(0.05, 0.05 * error + 1.0 * change)))
            self.l0_error = error

    def _count(self, fired: torch.Tensor, n: int, step: int) -> None:
        self.since_fired += n
        self.since_fired[fired > 0] = 0
        if step >= self.tcfg.optim.total_steps // 2:  # feature frequencies from the trained half only
            self.fire_count += fired
            self.fire_tokens += n

    def metrics(self, step: int, tokens_per_s: float) -> dict:
        o = self.last
        return dict(sae=self.index, hook_name=self.cfg.hook_name, step=step + 1,
                    total_steps=self.tcfg.optim.total_steps, tokens=(step + 1) * self.tcfg.optim.batch_tokens,
                    loss=float(o["loss"].detach()), mse=float(o["mse"]), l1=float(o["l1"]), aux_loss=float(o["aux"]),
                    l0=float(o["l0"]), explained_variance=float(explained_variance(o["x"], o["x_hat"])),
                    dead_fraction=float(o["dead"].float().mean()), lr=o["lr"], tokens_per_s=tokens_per_s,
                    **({"l1_coefficient": o["l1_coefficient"]} if self.cfg.architecture == "standard" else {}))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        p = f"{self.index}."
        out = {p + "param." + k: v for k, v in self.sae.named_parameters()}
        out.update({p + "buffer." + k: v for k, v in self.sae.named_buffers()})
        for name, param in self.sae.named_parameters():
            for key, value in self.opt.state.get(param, {}).items():
                out[f"{p}adam.{name}.{key}"] = value.reshape(-1) if value.dim() == 0 else value
        out[p + "since_fired"], out[p + "fire_count"] = self.since_fired, self.fire_count
        out[p + "l1"] = torch.tensor([self.l1, self.l0_error], dtype=torch.float64)
        return {k: v.detach().contiguous().clone() for k, v in out.items()}

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor], fire_tokens: int) -> None:
        p = f"{self.index}."
        for kind, named in (("param", self.sae.named_parameters()), ("buffer", self.sae.named_buffers())):
            for name, t in named:
                t.copy_(_need(tensors, f"{p}{kind}.{name}", t.shape))
        for name, param in self.sae.named_parameters():
            keys = [k for k in tensors if k.startswith(f"{p}adam.{name}.")]
            state = {k.rsplit(".", 1)[1]: tensors[k].to(param.device).clone() for k in keys}
            if "step" in state:
                state["step"] = state["step"].reshape(()).cpu()
            if state:
                self.opt.state[param] = state
        self.since_fired.copy_(_need(tensors, p + "since_fired", self.since_fired.shape))
        self.fire_count.copy_(_need(tensors, p + "fire_count", self.fire_count.shape))
        self.fire_tokens = fire_tokens
        if p + "l1" in tensors:  # older checkpoints have no live λ
            self.l1, self.l0_error = (float(v) for v in tensors[p + "l1"].reshape(-1)[:2])


def _need(tensors: dict, key: str, shape) -> torch.Tensor:
    if key not in tensors:
        raise ValidationError(f"Checkpoint has no tensor {key!r}; it was written for other SAEs — resume with the "
                              f"same configs, or start a new run.")
    if tuple(tensors[key].shape) != tuple(shape):
        raise ValidationError(f"Checkpoint tensor {key!r} has shape {tuple(tensors[key].shape)}, the SAE needs "
                              f"{tuple(shape)}; resume with the configs the checkpoint was made with.")
    return tensors[key]


def geometric_median(x: torch.Tensor, iters: int = 50) -> torch.Tensor:
    """Weiszfeld's algorithm; robust to the few huge-norm (BOS-position) tokens that drag the mean."""
    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=1).clamp_min(1e-8)
        m = (w[:, None] * x).sum(0) / w.sum()
    return m


def _runs(configs, train_cfg, device, owned=None) -> list[_Run]:
    tcfgs = train_cfg if isinstance(train_cfg, (list, tuple)) else [train_cfg] * len(configs)
    if len(tcfgs) != len(configs) or not configs:
        raise ValidationError("Give one SAEConfig per SAE (at least one) and one TrainConfig or one per SAE.")
    shared = {(t.optim.batch_tokens, t.optim.total_steps) for t in tcfgs}
    if len(shared) > 1:
        raise ValidationError("SAEs trained together share the stream: give them equal batch_tokens and steps.")
    return [_Run(i, c, t, device) for i, (c, t) in enumerate(zip(configs, tcfgs)) if owned is None or i in owned]


def _hook_of(run: _Run, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(input, target) of one SAE from a batch; the target is None except for transcoders (their output hook)."""
    hook = run.cfg.hook_name or (next(iter(batch)) if len(batch) == 1 else None)
    out = [_take(run, batch, hook, run.cfg.d_in)]
    if run.cfg.d_out is not None:
        out.append(_take(run, batch, run.cfg.hook_name_out, run.cfg.d_out))
    return out[0], (out[1] if len(out) > 1 else None)


def _take(run: _Run, batch: dict, hook: str | None, width: int) -> torch.Tensor:
    if hook not in batch:
        raise ValidationError(f"The activation stream has hooks {sorted(batch)}, but SAE {run.index} wants "
                              f"{hook!r}; set metadata['hook_name'] (and a transcoder's hook_name_out) to them.")
    x = batch[hook]
    if x.shape[-1] != width:
        raise ValidationError(f"Activations at {hook} have width {x.shape[-1]}, SAE {run.index} expects {width}; "
                              f"build its config with the width of that hook.")
    return x.reshape(-1, x.shape[-1])


def _save(runs, step, checkpoint, tokens_seen) -> None:
    if checkpoint is None:
        return
    tensors: dict = {}
    for r in runs:
        tensors.update(r.state_tensors())
    state = dict(step=step, tokens_seen=tokens_seen, fire_tokens=[r.fire_tokens for r in runs],
                 configs=[r.cfg.to_dict() for r in runs], train_configs=[r.tcfg.to_dict() for r in runs],
                 indices=[r.index for r in runs])  # which SAEs (all, or this rank's under distribute_saes)
    checkpoint(tensors, state)


def train_saes(stream: Stream, configs: list[SAEConfig], train_cfg: TrainConfig | list[TrainConfig],
               on_metrics: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
               checkpoint: Callable[[dict, dict], None] | None = None,
               resume_from: tuple[dict, dict] | None = None, sync=None, owned: list[int] | None = None) -> list[SAE]:
    """Train one SAE per config on `stream` (dict[hook_name, Tensor[batch_tokens, d_in]] per step).

    `stream` is an iterable, or a callable `start_batch -> iterator` (preferred: a resumed run then gets batch
    `step` onward; with a plain iterable the caller must start it at the checkpoint's step). `on_metrics(row)`
    gets one dict per SAE every `metrics_every` steps. `checkpoint(tensors, state)` is called every
    `checkpoint_every` steps, at cancel (`should_stop()` true) and at the end; `resume_from=(tensors, state)`
    continues such a checkpoint. `sync` (`distributed.TorchSync`, under torchrun) makes each rank's step the
    global batch's step: see `sae/distributed.py`. `owned` (indices into `configs`) trains only those SAEs, the
    others' hooks may be missing from the stream (one SAE group per rank, `TrainConfig.distribute_saes`); their
    indices, seeds and checkpoint keys stay the global ones. Returns the SAEs (normalisation not folded; `io.save_sae`
    folds it); each has
    `.feature_frequency` (firing rate over the second half of training) and `.train_summary`.
    """
    first_cfg = train_cfg[0] if isinstance(train_cfg, (list, tuple)) else train_cfg
    with _tf32(first_cfg.runtime.tf32):
        return _train(stream, configs, train_cfg, first_cfg, on_metrics, should_stop, checkpoint, resume_from, sync,
                      owned)


@contextlib.contextmanager
def _tf32(enabled: bool):
    """TrainConfig.tf32: TF32 CUDA matmuls for this training only (the process-wide flags are put back after)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if enabled:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _train(stream, configs, train_cfg, first_cfg, on_metrics, should_stop, checkpoint, resume_from, sync, owned):
    device = torch.device(first_cfg.runtime.device) if first_cfg.runtime.device else None
    runs: list[_Run] | None = None
    start = int(resume_from[1]["step"]) if resume_from else 0
    batches = iter(stream(start) if callable(stream) else stream)
    total, step = first_cfg.optim.total_steps, start - 1
    report = _Pacer(on_metrics, first_cfg, start, getattr(batches, "tokens_per_epoch", None))
    for step in range(start, total):
        stop = should_stop is not None and should_stop()
        if sync is not None:
            stop = sync.any(stop)  # every rank stops at the same step, or one would wait in a collective forever
        if stop:
            _save(runs, step, checkpoint, step * first_cfg.optim.batch_tokens) if runs else None
            return _finish(runs, step, first_cfg)
        batch = next(batches)
        if runs is None:
            dev = device or next(iter(batch.values())).device
            runs = _runs(configs, train_cfg, dev, owned)
            for r in runs:
                r.sync = sync
            if resume_from:
                for r in runs:
                    r.load_state(resume_from[0], resume_from[1]["fire_tokens"][r.index])
        for r in runs:
            x, y = (None if t is None else t.to(r.sae.device, torch_dtype(r.cfg.dtype)) for t in _hook_of(r, batch))
            if step == 0:
                r.initialise(x, y)
            r.step(x, step, y)
        last = step == total - 1
        report(runs, step, last)
        every = first_cfg.runtime.checkpoint_every
        if last or (every and (step + 1) % every == 0):
            _save(runs, step + 1, checkpoint, (step + 1) * first_cfg.optim.batch_tokens)
    return _finish(runs, step + 1, first_cfg)


class _Pacer:
    """Emits metric rows every `metrics_every` steps, at the last step, after the first step and whenever
    REPORT_SECONDS passed without a row; rows carry `epoch` (passes over the stream) when the stream knows its
    epoch size."""

    def __init__(self, on_metrics, tcfg: TrainConfig, start: int, tokens_per_epoch: int | None):
        self.on_metrics, self.tcfg, self.start, self.epoch_tokens = on_metrics, tcfg, start, tokens_per_epoch
        self.tick, self.tick_step = time.perf_counter(), start

    def __call__(self, runs: list[_Run], step: int, last: bool) -> None:
        now = time.perf_counter()
        due = (step + 1) % self.tcfg.runtime.metrics_every == 0 or last or step == self.start
        if self.on_metrics is None or not (due or now - self.tick >= REPORT_SECONDS):
            return
        rate = (step + 1 - self.tick_step) * self.tcfg.optim.batch_tokens / max(now - self.tick, 1e-9)
        for r in runs:
            row = r.metrics(step, rate)
            if self.epoch_tokens:
                row["epoch"] = row["tokens"] / self.epoch_tokens
            self.on_metrics(row)
        self.tick, self.tick_step = time.perf_counter(), step + 1


def _finish(runs: list[_Run] | None, steps_done: int, tcfg: TrainConfig) -> list[SAE]:
    if runs is None:
        return []
    out = []
    for r in runs:
        sae = r.sae
        sae.feature_frequency = r.fire_count.double() / max(r.fire_tokens, 1)
        sae.train_summary = dict(steps=steps_done, tokens_seen=steps_done * tcfg.optim.batch_tokens,
                                 train_config=r.tcfg.to_dict(),
                                 final_metrics=r.metrics(steps_done - 1, 0.0) if r.last else {})
        out.append(sae)
    return out
