"""One trial end to end: build a U-Net, measure its cost, train it briefly, score it.

    data = load_data(space.data)
    context = TrialContext.create(data, train_cfg, space.eval, device)   # once per process
    result = run_trial(config, context, train_cfg, space.measure)
    result.outcome, result.metrics.val_loss, result.metrics.train_throughput   # a TrialMetrics

The phases, in order, each reported through `on_progress(phase, step, total, loss)`:
`building` -> `measuring` (archsearch.measure's timing protocol, on a copy of the fresh model,
in turns with the study's reference network: `TrialContext.reference`) -> `training` (step by
step) -> `evaluating`. Measuring comes first so that cost metrics exist even for a trial whose
training later diverges. `train_throughput_normalized` is `train_speed_vs_ref` × the reference
images/s that `speed_anchor` gives (a study's: archsearch.search.speed), or × the trial's own
reference images/s without one.

A trial never raises for what a search must survive: out of memory (`oom`), a non-finite loss
(`diverged`); both come back as a `TrialResult` with the reason. Anything else propagates to
the caller, which records it as `error: ...`.

A completed run's optional files (its checkpoint and sample grid) are not written by `run_trial`:
the result carries them (`TrialResult.write_files`), so that the caller records the measured
outcome first and writes them after. A file that cannot be written (a full disk, a sampler out
of memory) is named in `metrics.missing_files` with the reason and a `WriteWarning`, and the run
stays what it was: a measured trial is never failed by its files.

The trial's `RunSettings` (archsearch.settings: device, precision, memory format, noise schedule,
prediction) are resolved once from its train config, which may differ from trial to trial (a
searched learning rate or precision), and every phase runs under them. The validation protocol
belongs to the context instead: it is built once per process from the first trial's noise
schedule, and a study cannot search the schedule (`train.schedule: cannot be searched`), so every
trial is scored on the same noised inputs; a trial under another schedule is refused by `train`.

Out of memory is caught in every phase, building included, and a model whose parameters,
gradients and AdamW moments alone exceed the device's memory (`training_state_bytes`, counted
on the 'meta' device) is refused as `oom` before anything is allocated: on the CPU, trying
would bring the OOM killer or swap to the whole machine rather than an exception.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .data import ImageData
from .device import device_info, is_out_of_memory, memory_bytes, resolve_device
from .errors import ConfigError, ConfigErrors
from .evaluate import ValidationProtocol
from .quality import QualityPhase
from .io import WriteWarning, atomic_write_json, write_failure
from .measure import MeasurementOOM, Reference, count_params, measure
from .metrics import MEASURED_METRICS, METRIC_NAMES, TrialMetrics
from .nn import build_unet, meta_unet
from .schema.measure import MeasureConfig
from .schema.space import SearchSpace
from .schema.train import EvalConfig, TrainConfig
from .schema.unet import UNetConfig
from .settings import RunSettings, resolve_run_settings
from .timing import ReferenceCache
from .train import ProgressFn, StepFn, save_checkpoint, train

__all__ = ["TrialContext", "LazyContext", "TrialResult", "run_trial", "FixedRun", "train_fixed", "training_state_bytes",
           "METRIC_KEYS"]

# The keys of `TrialResult.metrics.to_dict()` (and of `archsearch train --out`), always present:
# every metric of the registry, None when unmeasured.
METRIC_KEYS = METRIC_NAMES


@dataclass
class TrialContext:
    """What every trial of a process shares: the data, the device, the validation protocol
    (the same held-out images, timesteps and noise for every model) and the reference network
    that every candidate is timed against (built at its first use, with a fixed seed)."""

    data: ImageData
    device: torch.device
    protocol: ValidationProtocol
    references: ReferenceCache = field(default_factory=ReferenceCache, repr=False)
    quality: QualityPhase | None = field(default=None, repr=False)  # eval.quality's phase, when asked for

    @classmethod
    def create(cls, data: ImageData, train_cfg: TrainConfig, eval_cfg: EvalConfig, device: str | torch.device = "auto",
               device_path: str = "device") -> TrialContext:
        """`device_path` locates a bad device in errors (`study.device`, `--device`)."""
        device = resolve_device(device, device_path) if not isinstance(device, torch.device) else device
        schedule = resolve_run_settings(train_cfg, device).schedule  # the study's: it cannot be searched
        protocol = ValidationProtocol(data.val, data.val_labels, schedule, eval_cfg)
        quality = QualityPhase(eval_cfg.quality, data) if eval_cfg.quality is not None else None
        return cls(data, device, protocol, quality=quality)

    def reference(self, measure_cfg: MeasureConfig, config: UNetConfig) -> Reference | None:
        """`measure.reference` at `config`'s image size and channels (None: no reference), built
        once per process, so every trial here is timed against the same weights."""
        return self.references(measure_cfg, config)


class LazyContext:
    """A TrialContext created at the first trial that asks for one: a process that only waits
    for other workers never reads the data. `on_load(lines)` hears `ImageData.describe()` then."""

    def __init__(self, data_cfg, eval_cfg: EvalConfig, device: str | torch.device, device_path: str = "device",
                 on_load: Callable[[list[str]], None] | None = None):
        self.data_cfg, self.eval_cfg, self.device, self.device_path = data_cfg, eval_cfg, device, device_path
        self.on_load = on_load
        self.context: TrialContext | None = None

    def __call__(self, train_cfg: TrainConfig) -> TrialContext:
        if self.context is None:
            from .data import load_data

            device = resolve_device(self.device, self.device_path)  # before reading data for nothing
            data = load_data(self.data_cfg)
            if self.on_load is not None:
                self.on_load(data.describe())
            self.context = TrialContext.create(data, train_cfg, self.eval_cfg, device)
        return self.context


@dataclass
class TrialResult:
    outcome: str  # completed | stopped | diverged | oom
    reason: str = ""
    metrics: TrialMetrics = field(default_factory=TrialMetrics)
    files: RunFiles | None = field(default=None, repr=False)  # a completed run's files, not written yet

    def write_files(self, label: str = "") -> dict[str, str]:
        """Write the run's checkpoint and sample grid (where asked for), once; what could not be
        written, by file, with why (also in `metrics.missing_files`, and warned, `label` first)."""
        if self.files is None:
            return {}
        files, self.files = self.files, None
        missing = files.write()
        for why in missing.values():
            warnings.warn(f"{label}{': ' if label else ''}{why}", WriteWarning, stacklevel=2)
        self.metrics.missing_files = "; ".join(missing.values()) or None
        return missing


@dataclass
class RunFiles:
    """What a completed run's optional files are made of, until `write` writes them and lets the model go."""

    model: Any
    config: UNetConfig
    train_cfg: TrainConfig
    settings: RunSettings
    eval_cfg: EvalConfig
    data_info: dict[str, Any]
    checkpoint_path: Path | None
    samples_path: Path | None

    def write(self) -> dict[str, str]:
        """Write each file; a failure is kept as `<file> not written: <why>`, never raised."""
        missing = {}
        for label, path, save in (("checkpoint", self.checkpoint_path, self._checkpoint),
                                  ("samples", self.samples_path, self._samples)):
            if path is None:
                continue
            try:
                save(path)
            except Exception as exc:  # noqa: BLE001 - the run is measured; a file is optional
                failure = write_failure(exc, path)
                why = str(failure) if failure is not None else f"{type(exc).__name__}: {_first_line(exc)}"
                missing[label] = f"{label} not written: {why}"
        device, self.model = self.settings.device, None
        _free(device)
        return missing

    def _checkpoint(self, path: Path) -> None:
        save_checkpoint(path, self.model, self.config.model_dump(mode="json"), self.train_cfg.model_dump(mode="json"),
                        self.data_info)

    def _samples(self, path: Path) -> None:
        from .samples import save_sample_grid

        shape = (self.config.in_channels, self.config.image_size, self.config.image_size)
        save_sample_grid(self.model, path, self.eval_cfg.samples, self.settings, shape,
                         num_classes=self.config.num_classes)


def _first_line(exc: BaseException) -> str:
    from .urls import redact

    text = redact(str(exc)).strip()
    return text.splitlines()[0][:300] if text else ""


def run_trial(
    config: UNetConfig,
    context: TrialContext,
    train_cfg: TrainConfig,
    measure_cfg: MeasureConfig,
    on_progress: ProgressFn | None = None,
    on_eval: Callable[[int, Any, TrialMetrics], bool | None] | None = None,
    samples_path: Path | None = None,
    checkpoint_path: Path | None = None,
    eval_steps: Sequence[int] = (),
    speed_anchor: Callable[[TrialMetrics], float | None] | None = None,
    resume: dict | None = None,
    on_step: StepFn | None = None,
    quality_steps: Sequence[int] = (),
) -> TrialResult:
    """Build, measure, train and evaluate one architecture; see the module docstring.

    `on_eval(step, result, metrics)` hears every intermediate evaluation (the curve points and
    `eval_steps`) with the trial's metrics so far: what was measured before training (params,
    throughput, FLOPs, ...). Returning True stops the run there: the trial's outcome is
    `stopped`, with its steps and learning curve but no final score (`val_loss` stays None).
    `speed_anchor(metrics)`, asked once the cost is measured, gives the reference images/s that
    normalizes the speed (None: the trial's own). A completed run's `checkpoint_path` and
    `samples_path` are written by `TrialResult.write_files`, once its caller has recorded it. `resume` and `on_step` go to `train`: a state
    to continue from (archsearch.train_state; the model is built and measured afresh first), and
    the callback that hears every step with the means to snapshot one.

    With `context.quality` (eval.quality), a completed run's sample quality is measured after its
    final evaluation (phase `quality`; `fd`, `kid`, ..., `quality_seconds`), and at those of the
    intermediate evaluations that `quality_steps` name (their FD in `quality_curve`).
    """
    progress = on_progress or (lambda *event: None)
    start = time.perf_counter()
    settings = resolve_run_settings(train_cfg, context.device)
    device = settings.device
    eval_cfg = context.protocol.cfg

    progress("building", 0, train_cfg.steps)
    shape = (config.in_channels, config.image_size, config.image_size)
    metrics = TrialMetrics(params=count_params(meta_unet(config)), device=device_info(device)["name"],
                           train_threads=torch.get_num_threads())
    needed, available = training_state_bytes(metrics.params, train_cfg), memory_bytes(device)
    if available is not None and needed > available:
        return _oom(metrics, start, f"needs ~{_gib(needed)} GiB for parameters, gradients and optimizer state; "
                                    f"the device has {_gib(available)} GiB")
    torch.manual_seed(train_cfg.seed)  # the same config and seed give the same initial weights
    try:
        model = build_unet(config).to(device)
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        _free(device)
        return _oom(metrics, start, f"out of memory while building ({str(exc).splitlines()[0] if str(exc) else exc!r})")

    progress("measuring", 0, train_cfg.steps)
    try:
        cost = measure(model, shape, measure_cfg.batch_size or train_cfg.batch_size, settings, measure_cfg,
                       config.num_classes, reference=context.reference(measure_cfg, config))
    except MeasurementOOM as exc:
        model = None  # drop the weights before freeing the allocator's cache
        _free(device)
        return _oom(metrics, start, f"out of memory while measuring ({exc})")
    for key in MEASURED_METRICS:
        setattr(metrics, key, getattr(cost, key))
    metrics.torch = torch.__version__
    metrics.measure = {"train_step_ms": cost.train_step_ms, "train_steps": cost.train_steps,
                       "batch_size": cost.batch_size, "warmup_steps": cost.warmup_steps, "ref_step_ms": cost.ref_step_ms}
    if cost.train_speed_vs_ref is not None:
        anchor = speed_anchor(metrics) if speed_anchor is not None else None
        metrics.train_throughput_normalized = cost.train_speed_vs_ref * (anchor or cost.ref_throughput)

    batches = context.data.loader(device, train_cfg.batch_size, seed=train_cfg.seed)
    hook = None if on_eval is None else lambda step, res: on_eval(step, res, metrics)
    along = None
    if context.quality is not None and quality_steps:
        def along(step, evaluated):
            if step in quality_steps:
                progress("quality", step, train_cfg.steps)
                curve = metrics.quality_curve = metrics.quality_curve or []
                curve.append([int(step), _measure_quality(context.quality, evaluated, settings, shape, config, metrics)])
    result = train(model, batches, train_cfg, context.protocol, settings, on_progress=progress, on_eval=hook,
                   eval_steps=eval_steps, resume=resume, on_step=on_step, on_evaluated=along)

    metrics.outcome, metrics.steps_trained, metrics.train_seconds = result.outcome, result.steps, result.train_seconds
    metrics.learning_curve = [[int(s), float(v)] for s, v in result.learning_curve]
    metrics.train_loss_curve = [[int(s), float(v)] for s, v in result.train_loss]
    metrics.train_loss = float(result.train_loss[-1][1]) if result.train_loss else None
    files = None
    if result.final is not None and result.outcome == "completed":  # a stopped run's last loss is not its score
        metrics.val_loss = result.final.val_loss
        metrics.val_loss_buckets = list(result.final.val_loss_buckets)
        if context.quality is not None:
            progress("quality", result.steps, train_cfg.steps)
            fd = _measure_quality(context.quality, model, settings, shape, config, metrics)
            if quality_steps and result.steps in quality_steps:
                metrics.quality_curve = [*(metrics.quality_curve or []), [int(result.steps), fd]]
        if checkpoint_path is not None or samples_path is not None:
            files = RunFiles(model, config, train_cfg, settings, eval_cfg,
                             {"name": context.data.name, "num_classes": context.data.num_classes},
                             checkpoint_path, samples_path)
    metrics.duration_s = time.perf_counter() - start
    reason = "" if result.outcome in ("completed", "stopped") else (result.reason or result.outcome)
    del model
    if files is None:
        _free(device)
    return TrialResult(result.outcome, reason, metrics, files)


def _measure_quality(phase: QualityPhase, model, settings: RunSettings, shape, config: UNetConfig,
                     metrics: TrialMetrics) -> float | None:
    """Measure `model`'s sample quality into `metrics` (the latest measurement wins); its FD.
    Out of memory while sampling leaves the quality metrics unmeasured, with the reason in
    `metrics.quality`, rather than failing a trained run."""
    try:
        measured = phase.measure(model, settings, shape, config.num_classes)
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        _free(settings.device)
        metrics.quality = {"error": f"out of memory while measuring sample quality ({_first_line(exc)})"}
        return None
    for name, value in measured.values.items():
        setattr(metrics, name, value)
    metrics.quality_seconds = (metrics.quality_seconds or 0.0) + measured.seconds
    metrics.quality = measured.info
    return measured.values.get("fd")


def _oom(metrics: TrialMetrics, start: float, detail: str) -> TrialResult:
    metrics.outcome, metrics.duration_s = "oom", time.perf_counter() - start
    return TrialResult("oom", f"oom: {detail}", metrics)


def training_state_bytes(params: int, train_cfg: TrainConfig) -> int:
    """The least memory training takes: fp32 weights, their gradients and AdamW's two moments
    (16 bytes per parameter; 20 with an EMA copy), before a single activation."""
    return params * (20 if train_cfg.ema_decay else 16)


@dataclass
class FixedRun:
    """What `train_fixed` did: the trial's result and the files it wrote, by label (`metrics`,
    `samples`, `checkpoint`; samples and a checkpoint only exist when training finished)."""

    result: TrialResult
    files: dict[str, Path]

    @property
    def ok(self) -> bool:
        return self.result.outcome in ("completed", "stopped")


def train_fixed(
    space: SearchSpace,
    device: str | torch.device = "auto",
    *,
    source: str = "space",
    metrics_path: Path | None = None,
    samples_path: Path | None = None,
    checkpoint_path: Path | None = None,
    on_load: Callable[[list[str]], None] | None = None,
    on_progress: ProgressFn | None = None,
) -> FixedRun:
    """Run the one architecture of a space without distributions as a trial and write its
    metrics (as JSON, even for a failed run), samples and checkpoint. (`archsearch train` runs
    the same trial through archsearch.retrain.run_job, which adds evaluations at intervals and a
    resumable state.)

    `source` locates the space in errors (its file); `on_load` hears `ImageData.describe()` once
    the data is read, before the first `on_progress` event.
    """
    if not space.is_fixed():
        raise ConfigErrors([ConfigError(source, "has distributions; `archsearch train` runs one fixed architecture "
                                                "(use `archsearch run` to search, or fix the values with --set)")])
    config, train_cfg = space.fixed_architecture(), space.fixed_train()
    context = LazyContext(space.data, space.eval, device, on_load=on_load)(train_cfg)
    result = run_trial(config, context, train_cfg, space.measure, on_progress=on_progress,
                       samples_path=samples_path, checkpoint_path=checkpoint_path)
    if metrics_path:  # the measured result first, then its files, then what they came to
        atomic_write_json(metrics_path, result.metrics.to_dict())
    missing = result.write_files()
    if missing and metrics_path:
        atomic_write_json(metrics_path, result.metrics.to_dict())
    written = (("metrics", metrics_path), ("samples", samples_path), ("checkpoint", checkpoint_path))
    return FixedRun(result, {label: path for label, path in written if path and path.exists() and label not in missing})


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f}" if n >= 2**30 / 10 else f"{n / 2**30:.2g}"


def _free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
