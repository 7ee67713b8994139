"""The short training run of one trial, and the checkpoint it can leave behind.

`train` fits a denoiser built by the caller for a budget of steps or seconds and returns a
`TrainResult`; it knows nothing of Optuna and reports progress through callbacks:

    settings = resolve_run_settings(cfg, device)      # archsearch.settings
    protocol = ValidationProtocol(val_images, val_labels, settings.schedule, eval_cfg)
    result = train(model, loader(device, cfg.batch_size, seed), cfg, protocol, settings,
                   on_progress=lambda phase, step, total, loss=None: print(phase, step, total, loss))
    result.outcome, result.final.val_loss, result.learning_curve

- Optimizer: AdamW (fused on CUDA), linear warm-up then cosine decay (or constant), global
  gradient-norm clipping, optional EMA of the weights with a (1+n)/(10+n) warm-up. With EMA the
  EMA weights are evaluated, and copied into the model at the end: the model returned is the
  model evaluated.
- Device: the caller's `RunSettings` (archsearch.settings) say how to run: `precision: auto` is
  bf16 autocast + TF32 on CUDA and fp32 on CPU; `channels_last: auto` is on for CUDA only;
  `compile: auto` is off everywhere until measured otherwise. The noise schedule and the
  prediction target come from them too; `cfg` gives the optimization (lr, steps, EMA, ...).
- Syncs: the loss stays on the device; every `log_every` steps (and at the end) the window's mean
  is read once, which gives the train-loss curve and the NaN/inf check (so a divergence is seen
  at most `log_every` steps late).
- Progress: `on_progress("training", step, total, loss)` after every step, where `loss` is the
  last window's mean (None before the first): a display ticks every step at no extra sync.
- Budget: `steps`, or `seconds` of training time (evaluations excluded), whichever ends first.
  Intermediate evaluations happen at fractions k/(curve_points+1) of the budget used so far,
  and after each of the `eval_steps` the caller asks for (the rungs of early stopping, which must
  be the same steps for every trial); one evaluation serves both when they fall on one step.
  Each runs `protocol.evaluate`, the fixed-noise scoring of the final result, so an intermediate
  loss compares with other trials' at the same step and with final scores.
- Failures: a non-finite loss ends the run as `diverged`, a CUDA out-of-memory error as `oom`
  (memory freed first); neither raises. `on_eval` may stop the run early (`stopped`).
- Labels reach the model only if it is class-conditional (`num_classes`, or `config.num_classes`
  as on archsearch's UNet); `class_dropout` replaces them by the null label -1.
- Determinism: `seed` seeds torch's global RNG (dropout) and a device generator for timesteps,
  noise and label dropout; the same model init, config, seed and device give the same losses
  (bit for bit on CPU; on CUDA up to nondeterministic kernels such as cuDNN autotuning picks).
- Resuming: `on_step(step, snapshot)` hears every step boundary but the last; `snapshot()` is the
  run's whole state there (archsearch.train_state: weights, EMA, AdamW, RNGs, the data position,
  the curves). `train(..., resume=state)` continues such a state: on the CPU, a run interrupted
  and resumed ends with the same weights and curves as one run straight through. The time the
  callback takes (writing a state) is not training time.
"""

from __future__ import annotations

import copy
import gc
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn

from archsearch.diffusion import training_loss
from archsearch.errors import ConfigError
from archsearch.device import autocast_context, configure_backends, is_out_of_memory, synchronize
from archsearch.evaluate import EvalResult, ValidationProtocol, model_num_classes
from archsearch.io import atomic_torch_save
from archsearch.schema.train import TrainConfig
from archsearch.settings import RunSettings
from archsearch.train_state import Position, capture, restore

__all__ = [
    "TrainResult", "ProgressFn", "StepFn", "train", "learning_rate", "save_checkpoint", "load_checkpoint",
]

Batches = Iterable[tuple[Tensor, Tensor | None]]
EvalFn = Callable[[int, EvalResult], bool | None]  # (step, result) -> True to stop the run
StepFn = Callable[[int, Callable[[], dict]], None]  # (step, snapshot): snapshot() is the resumable state


class ProgressFn(Protocol):
    """`on_progress(phase, step, total, loss)`: the phase (building, measuring, training,
    evaluating), steps done of `total`, and the latest training loss (None when not known)."""

    def __call__(self, phase: str, step: int, total: int, loss: float | None = None) -> None: ...


@dataclass
class TrainResult:
    """What a training run produced; `final` is None when it diverged or ran out of memory."""

    outcome: str                                                       # completed | stopped | diverged | oom
    steps: int                                                         # optimizer steps taken
    train_loss: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss since last point)
    learning_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, val_loss)
    final: EvalResult | None = None
    duration_s: float = 0.0                                            # whole run, evaluations included
    train_seconds: float = 0.0                                         # training steps only
    reason: str = ""

    @property
    def val_loss(self) -> float:
        return self.final.val_loss if self.final is not None else math.nan

    def to_dict(self) -> dict:
        return asdict(self)


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """The learning rate of 0-based step `step`: linear warm-up, then cosine to 0 or constant."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_decay == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train(
    model: nn.Module,
    batches: Batches,
    cfg: TrainConfig,
    protocol: ValidationProtocol,
    settings: RunSettings,
    on_progress: ProgressFn | None = None,
    on_eval: EvalFn | None = None,
    eval_steps: Iterable[int] = (),
    resume: dict | None = None,
    on_step: StepFn | None = None,
    on_evaluated: Callable[[int, nn.Module], None] | None = None,
) -> TrainResult:
    """Train `model` (moved to `settings.device` in place) on `batches`; evaluate it under `protocol`.

    `on_eval(step, result)` hears every intermediate evaluation (the curve points and
    `eval_steps`, those below `cfg.steps`); returning True ends the run there as `stopped`.
    `on_evaluated(step, module)` hears the same evaluations first, with the weights evaluated (the
    EMA copy when there is one), for more measurements of them (sample quality). Neither counts
    as training time.
    `on_step(step, snapshot)` hears every step but the last (it may raise to end the run, say on
    Ctrl-C, after saving `snapshot()`); `resume` is such a snapshot to continue from, taken with
    the same model, config and batches (`batches` then needs `load_state_dict`, as DeviceBatches has).

    `settings` is `resolve_run_settings(cfg, device)`, made by the caller so that measuring,
    evaluating and sampling the same model run under the same resolved choices.

    `batches` yields (images (B, C, H, W) in [-1, 1], labels (B,) int64 or None), normally
    already on the device; it should not run out before `cfg.steps` (if it does, the run ends
    there). Never raises for divergence or out-of-memory: see `TrainResult.outcome`.
    """
    start = time.perf_counter()
    device = settings.device
    result = TrainResult(outcome="completed", steps=0)
    oom = ""
    try:
        _run(model, batches, cfg, protocol, settings, result, on_progress or _no_progress, on_eval, on_evaluated, eval_steps, resume,
             on_step)
    except RuntimeError as exc:  # torch.OutOfMemoryError, or the plain RuntimeError of older kernels and the CPU
        if not is_out_of_memory(exc):
            raise
        oom = str(exc).splitlines()[0] if str(exc) else "out of memory"
    if oom:
        # The exception (and the traceback holding _run's optimizer, activations and EMA) is gone
        # now; collect them and hand the cached blocks back before the next trial.
        result.outcome, result.reason, result.final = "oom", f"out of memory at step {result.steps}: {oom}", None
        model.zero_grad(set_to_none=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result.duration_s = time.perf_counter() - start
    return result


def _run(
    model: nn.Module,
    batches: Batches,
    cfg: TrainConfig,
    protocol: ValidationProtocol,
    s: RunSettings,
    result: TrainResult,
    on_progress: ProgressFn,
    on_eval: EvalFn | None,
    on_evaluated: Callable[[int, nn.Module], None] | None = None,
    eval_steps: Iterable[int] = (),
    resume: dict | None = None,
    on_step: StepFn | None = None,
) -> None:
    """The training loop; fills `result` as it goes, so that an OOM keeps the curves so far."""
    device = s.device
    batches = iter(batches)
    configure_backends(device)  # TF32 and cuDNN autotuning on CUDA, as archsearch.measure times it
    torch.manual_seed(cfg.seed)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    schedule = s.schedule.to(device)
    if schedule.num_timesteps != protocol.schedule.num_timesteps or schedule.kind != protocol.schedule.kind:
        raise ConfigError("train.schedule", "the validation protocol was built for another noise schedule")
    fmt = s.memory_format
    model.to(device=device, memory_format=fmt).train()
    num_classes = model_num_classes(model)
    if cfg.class_dropout > 0 and not num_classes:
        raise ConfigError("train.class_dropout", "needs a class-conditional model (one with num_classes); set it to 0")
    forward = torch.compile(model) if s.compile else model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay,
        **({"fused": True} if s.fused_adamw else {}),
    )
    ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema_decay else None
    ema_params = [p for p, q in zip(ema.parameters(), model.parameters()) if q.requires_grad] if ema else []
    evaluated = ema if ema is not None else model

    def evaluate(step: int) -> EvalResult:
        on_progress("evaluating", step, cfg.steps, last_loss)
        if ema is not None:  # buffers are not averaged; take the live ones
            for b_ema, b in zip(ema.buffers(), model.buffers()):
                b_ema.copy_(b)
        res = protocol.evaluate(evaluated, s)
        result.learning_curve.append((step, res.val_loss))
        return res

    # Intermediate evaluations at these fractions of the budget (steps, or seconds if sooner).
    fractions = [k / (protocol.cfg.curve_points + 1) for k in range(1, protocol.cfg.curve_points + 1)]
    at_steps = sorted({int(s) for s in eval_steps if 0 < s < cfg.steps})  # and after these exact steps
    window_sum, window_n = torch.zeros((), device=device), 0
    train_seconds = 0.0
    last_loss: float | None = None  # the last window's mean, as read at a log point
    step = 0
    if resume is not None:
        at = restore(resume, model, ema, optimizer, generator, batches, result)
        step, window_n, last_loss, train_seconds = at.step, at.window_n, at.last_loss, at.train_seconds
        window_sum.copy_(at.window_sum)
        del fractions[:at.fractions_done]
        at_steps = [s for s in at_steps if s > step]
    num_fractions = protocol.cfg.curve_points

    def snapshot() -> dict:
        synchronize(device)
        at = Position(step, window_sum, window_n, last_loss, train_seconds + time.perf_counter() - segment_start,
                      num_fractions - len(fractions))
        return capture(at, model, ema, optimizer, generator, batches, result)

    segment_start = time.perf_counter()
    on_progress("training", step, cfg.steps, last_loss)
    done = step >= cfg.steps
    while not done:
        try:
            x0, labels = next(batches)
        except StopIteration:
            if step == 0:
                raise ValueError("the batches iterator yielded no batch") from None
            result.reason = f"the data ran out after {step} steps"
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg)
        x0 = x0.to(device, non_blocking=True).contiguous(memory_format=fmt)
        labels = labels.to(device, non_blocking=True) if labels is not None and num_classes else None
        with autocast_context(device, s.precision):
            loss = training_loss(forward, x0, labels, schedule, s.prediction, generator, cfg.class_dropout)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)  # foreach; returns a tensor, no sync
        optimizer.step()
        step += 1
        result.steps = step
        if ema is not None:
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        window_sum += loss.detach()
        window_n += 1

        elapsed = train_seconds + time.perf_counter() - segment_start
        done = step >= cfg.steps or (cfg.seconds is not None and elapsed >= cfg.seconds)
        if step % cfg.log_every == 0 or done:
            if not _log_window(result, step, window_sum / window_n):
                return
            last_loss = result.train_loss[-1][1]
            window_sum.zero_()
            window_n = 0
        on_progress("training", step, cfg.steps, last_loss)  # every step; no sync, no storage write
        budget_used = max(step / cfg.steps, elapsed / cfg.seconds if cfg.seconds else 0.0)
        due = (fractions and budget_used >= fractions[0]) or (at_steps and step >= at_steps[0])
        if not done and due:
            while fractions and budget_used >= fractions[0]:
                fractions.pop(0)
            while at_steps and step >= at_steps[0]:
                at_steps.pop(0)
            synchronize(device)  # charge queued training kernels to training time
            train_seconds += time.perf_counter() - segment_start
            res = evaluate(step)
            if not math.isfinite(res.val_loss):
                result.outcome, result.reason = "diverged", f"validation loss became {res.val_loss} at step {step}"
                return
            if on_evaluated is not None:
                on_evaluated(step, evaluated)
            stop = on_eval is not None and on_eval(step, res)
            segment_start = time.perf_counter()  # what the callbacks did is not training time
            if stop:
                result.outcome, result.reason, result.final = "stopped", f"stopped by on_eval at step {step}", res
                break
        if on_step is not None and not done:
            paused = time.perf_counter()
            on_step(step, snapshot)
            segment_start += time.perf_counter() - paused  # saving a state is not training time
    if window_n and not _log_window(result, step, window_sum / window_n):  # the data ran out mid-window
        return
    synchronize(device)
    if result.outcome != "stopped":
        train_seconds += time.perf_counter() - segment_start
    result.train_seconds = train_seconds
    if ema is not None:
        with torch.no_grad():
            torch._foreach_copy_(params, ema_params)  # leave the evaluated weights in the model
    if result.outcome == "stopped":
        return
    result.final = evaluate(step)
    if not math.isfinite(result.final.val_loss):
        result.outcome, result.reason = "diverged", f"validation loss became {result.final.val_loss} at step {step}"
        result.final = None
    elif not result.reason:
        result.reason = "seconds budget reached" if step < cfg.steps else "step budget reached"


def _no_progress(phase: str, step: int, total: int, loss: float | None = None) -> None:
    pass


def _log_window(result: TrainResult, step: int, mean_loss: Tensor) -> bool:
    """Read the window's mean loss (the one sync per window); False, and `diverged`, if not finite."""
    mean = mean_loss.item()
    result.train_loss.append((step, mean))
    if math.isfinite(mean):
        return True
    result.outcome, result.reason = "diverged", f"training loss became {mean} by step {step}"
    return False


def save_checkpoint(path: str | Path, model: nn.Module, config: dict, train_cfg: dict, data: dict) -> Path:
    """Write {"config", "state_dict", "train", "data"} with `torch.save` (plain types and tensors
    only), atomically: a reader never sees half a checkpoint, and a failed write keeps the old one."""
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    payload = {"format": _FORMAT, "config": config, "state_dict": state, "train": train_cfg, "data": data}
    return atomic_torch_save(path, payload)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by `save_checkpoint` (with `weights_only=True`: no code runs).

    Anything else is a ConfigError of one line that names the file: missing, a folder, empty,
    truncated, not torch's, a pickle that would run code (refused as unsafe), or a torch file
    without this format's marker and fields."""
    from archsearch.train_state import NotLoadable, load_plain

    path = Path(path)
    if not path.exists():
        raise ConfigError("checkpoint", f"{path} does not exist")
    try:
        ckpt = load_plain(path)
    except (IsADirectoryError, PermissionError) as exc:
        raise ConfigError("checkpoint", f"{path} cannot be read as a checkpoint ({exc.strerror or exc})") from None
    except NotLoadable as exc:
        what = "was refused as unsafe" if exc.unsafe else "is not a readable checkpoint"
        raise ConfigError("checkpoint", f"{path} {what}: {exc.reason}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != _FORMAT:
        raise ConfigError("checkpoint", f"{path} is not an archsearch checkpoint (written by `archsearch train`)")
    wrong = [key for key in ("config", "state_dict", "train") if not isinstance(ckpt.get(key), dict)]
    if wrong or not all(isinstance(v, torch.Tensor) for v in ckpt["state_dict"].values()):
        what = f"no {wrong[0]} mapping" if wrong else "weights that are not all tensors"
        raise ConfigError("checkpoint", f"{path} is a damaged archsearch checkpoint ({what})")
    return ckpt


_FORMAT = "archsearch-checkpoint-v1"
