"""The cost objective: how fast, how big and how hungry a denoiser is on this machine.

`measure(model, input_shape, batch_size, settings)` runs a timing phase of its own, separate
from training's clock, under the run's resolved settings (archsearch.settings: device,
precision, fused AdamW), so that the cost is that of the run being scored:

1. train throughput (the default cost objective): `warmup_steps` untimed training steps, then
   up to `repeats` timed ones. A training step is what a search trial pays for: zero grads
   (`set_to_none`), forward under the run's precision, ε-MSE loss, backward, AdamW step (fused
   on CUDA), at the run's batch size. Each timed step is bracketed by a device synchronization
   and a clock read, so the clock sees finished kernels, not queued ones. Inputs, targets,
   timesteps and labels are random and generated on the device before timing (values do not
   change speed; no host->device copy is timed). Reported: the median images/s, its
   interquartile range (q75 - q25, images/s) and the median step time.
   With a `reference` network (archsearch.timing says why and what it costs), its training
   step on the same input shape, batch size, device and precision takes turns with the
   candidate's: reference, candidate, reference, candidate ..., after as many untimed steps as
   the candidate. Reported besides: the reference's median images/s in that window
   (`ref_throughput`) and `train_speed_vs_ref`, the median of the per-pair ratios; pairs go
   on past `repeats` while that median is less precise than `ratio_tolerance`, up to
   `max_repeats` (a busy machine; `train_steps` counts the pairs taken). The
   machine's load (archsearch.load: load average, usable CPUs; NVML utilization and SM clock
   on CUDA) is read around the timed steps, with or without a reference. Every phase runs
   with `measure.threads` torch threads (auto: on the CPU, no more than are free as the
   measurement starts; archsearch.timing says why), recorded as `threads` with the CPUs others
   kept busy (`busy_cpus`).
2. forward-only throughput (eval mode, inference mode, same batch size) and batch-1 latency,
   timed the same way.
3. parameters (sum of `numel`) and forward FLOPs per image, counted by
   `torch.utils.flop_counter` on a batch of one (convolutions, matmuls, attention; norms and
   pointwise ops are not counted). The count runs on the 'meta' device when the model allows
   it, which computes nothing.
4. peak memory of the training step, the candidate's alone (before a reference is even copied
   to the device): on CUDA, the allocator's peak over one more untimed step after the warm-up,
   minus what was allocated before measuring; on CPU a documented proxy (see
   `_cpu_memory_proxy`), taken during the first warm-up step (so on CPU at least one untimed
   step always runs).

The model is never touched: everything runs on a deep copy, and the torch RNG states (CPU and
CUDA) are restored afterwards, so measuring before or after training changes neither the
caller's weights nor its random stream. `MeasureConfig.max_seconds` caps the whole phase; each
timed loop stops once its next step would pass the cap but always keeps at least three steps.

Out of memory is raised as `MeasurementOOM` after the copy and its tensors are freed; the
trial runner turns it into the `oom` outcome. Measuring knows nothing about training.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch.utils import flop_counter

from archsearch.device import autocast_context, configure_backends, device_info, is_out_of_memory, synchronize
from archsearch.errors import ConfigError
from archsearch.load import busy_cpus
from archsearch.schema.measure import MeasureConfig
from archsearch.settings import RunSettings
from archsearch.timing import (Reference, TrainingStep, nvml_id, random_batch, time_repeats, time_train_steps,
                               timing_threads)

__all__ = ["Measurement", "MeasurementOOM", "Reference", "count_flops", "count_params", "measure", "time_repeats"]

class MeasurementOOM(RuntimeError):
    """The model does not fit at this batch size; memory has been freed before raising."""

    def __init__(self, phase: str, batch_size: int, detail: str):
        self.phase, self.batch_size, self.detail = phase, batch_size, detail
        super().__init__(f"out of memory in the {phase} phase at batch size {batch_size}: {detail}")


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One model's cost on one machine. Throughputs are images/s, times milliseconds."""

    train_throughput: float            # median images/s of a full training step
    train_throughput_iqr: float        # q75 - q25 of the per-step images/s
    train_step_ms: float               # median training-step time
    train_steps: int                   # timed training steps actually taken (max_seconds)
    ref_throughput: float | None       # the reference's median images/s in the same window; None: no reference
    train_speed_vs_ref: float | None   # median over pairs of candidate ÷ reference images/s
    ref_step_ms: float | None          # the reference's median training-step time
    infer_throughput: float | None     # median images/s, forward only; None if not measured
    infer_steps: int | None
    latency_ms: float | None           # median batch-1 forward time; None if not measured
    latency_steps: int | None
    params: int                        # trainable and frozen parameters
    flops: int | None                  # forward FLOPs per image; None if not counted
    peak_mem_mb: float                 # MiB; see peak_mem_source
    peak_mem_source: str               # "cuda_allocator" or "cpu_proxy"
    batch_size: int
    warmup_steps: int
    precision: str
    threads: int                       # torch intra-op threads during measurement (measure.threads)
    busy_cpus: float | None            # CPUs others kept busy just before it (archsearch.load); None: not read
    cpu_count: int                     # logical CPUs this process may use (archsearch.load)
    load_avg: float | None             # 1-minute load average as timing ended
    gpu_util: float | None             # NVML utilization (%) as timing started; None off CUDA or without pynvml
    sm_clock_mhz: float | None         # NVML SM clock as timing ended
    device: dict                       # archsearch.device.device_info

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (`device` stays a nested dict)."""
        return dataclasses.asdict(self)


def count_params(model: torch.nn.Module) -> int:
    """All parameters, trainable or not (shared parameters once)."""
    return sum(p.numel() for p in model.parameters())


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # flop_counter knows the CUDA attention kernels but not the CPU flash kernel that eager CPU
    # SDPA dispatches to; count it with the same formula.
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FLOP_FORMULAS = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _EXTRA_FLOP_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flop


def count_flops(
    model: torch.nn.Module,
    input_shape: Sequence[int],
    num_classes: int | None = None,
    device: torch.device | str = "cpu",
) -> int:
    """Forward FLOPs for one image (a multiply-add counts 2), in eval mode.

    Runs on a 'meta' copy of the model first (shapes only, no arithmetic, no memory); a model
    that cannot run on 'meta' (data-dependent control flow) is counted with a real batch of one
    on `device` instead. Counts convolutions, matmuls and attention, not norms or pointwise ops.
    """
    return _count_flops(copy.deepcopy(model), model, input_shape, num_classes, torch.device(device))


def _count_flops(disposable, model, input_shape, num_classes, device) -> int:
    # `disposable` is a copy of `model` that may be moved to 'meta' in place.
    try:
        return _count_flops_on(disposable.to("meta"), input_shape, num_classes, torch.device("meta"))
    except Exception:
        # Any model bug, as opposed to a meta limitation, resurfaces in the real run below.
        return _count_flops_on(copy.deepcopy(model).to(device), input_shape, num_classes, device)


def _count_flops_on(model, input_shape, num_classes, device) -> int:
    model.eval()
    x, t, labels = random_batch(1, input_shape, num_classes, device)
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS)
    with torch.no_grad(), counter:
        model(x, t, labels)
    return int(counter.get_total_flops())


def _cpu_memory_proxy(model, optimizer, step) -> float:
    """CPU stand-in for the CUDA allocator peak, in bytes: one training step's working set.

    parameters + gradients + AdamW state + every tensor saved for backward during the step's
    forward (counted through `saved_tensors_hooks`, each storage once by its data pointer,
    parameters excluded since they are already counted). This is the memory the step needs and
    the one that scales with batch size and architecture like GPU memory does; it is not the
    process RSS, which also holds the interpreter, libraries and allocator caches.
    """
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in param_ptrs and ptr != 0:
            saved[ptr] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    state = sum(
        v.numel() * v.element_size()
        for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)
    )
    return float(params + grads + state + sum(saved.values()))


def measure(
    model: torch.nn.Module,
    input_shape: Sequence[int],
    batch_size: int,
    settings: RunSettings,
    cfg: MeasureConfig | None = None,
    num_classes: int | None = None,
    timer: Callable[[], float] = time.perf_counter,
    sync: Callable[[], None] | None = None,
    reference: Reference | None = None,
    busy: Callable[[], float | None] = busy_cpus,
) -> Measurement:
    """Measure `model`'s cost: throughput, latency, parameters, FLOPs, peak memory.

    `model(x, t, class_labels)` takes x (B, C, H, W), float timesteps t (B,) and int64 labels
    (B,) or None. `input_shape` is (C, H, W); `batch_size` is the training batch size, used
    unless `cfg.batch_size` overrides it. `settings` give the device, the precision of every
    forward and whether AdamW is fused. `reference`, when given, is timed in turns with the
    training step (see the module docstring). Everything is timed with `cfg.threads` torch
    threads (archsearch.timing.timing_threads; `busy` reads the CPUs others keep busy). `timer`,
    `sync` and `busy` default to `time.perf_counter`, the device's synchronize and
    archsearch.load.busy_cpus; tests inject fakes. Raises `MeasurementOOM` when the step does
    not fit in memory.
    """
    cfg = cfg or MeasureConfig()
    device = settings.device
    sync = sync or (lambda: synchronize(device))
    batch = cfg.batch_size or batch_size
    if batch < 1:
        raise ConfigError("measure.batch_size", f"batch size must be at least 1, got {batch}")

    cpu_rng = torch.get_rng_state()
    use_cuda = device.type == "cuda" or torch.cuda.is_initialized()
    cuda_rng = torch.cuda.get_rng_state_all() if use_cuda else None
    progress = {"phase": "setup"}  # where an out-of-memory happened, for the message
    try:
        try:
            with timing_threads(cfg.threads, device, busy) as choice:
                results = _run_phases(model, tuple(input_shape), batch, cfg, settings, num_classes, timer, sync,
                                      progress, reference)
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            oom = MeasurementOOM(progress["phase"], batch, str(exc).splitlines()[0] if str(exc) else "out of memory")
        else:
            oom = None
        if oom is not None:
            # Leaving the except block dropped the traceback and with it _run_phases' frame
            # (the model copy, optimizer and batches); give the memory back before raising.
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            raise oom
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)

    return Measurement(
        **results,
        params=count_params(model),
        batch_size=batch,
        warmup_steps=cfg.warmup_steps,
        precision=settings.precision,
        threads=choice.threads,
        busy_cpus=choice.busy_cpus,
        device=device_info(device),
    )


def _peak_memory(candidate: TrainingStep, warmup: int, baseline: int) -> tuple[float, str, int]:
    """(peak bytes, how measured, untimed steps taken) of the candidate's training step alone."""
    device = candidate.device
    if device.type == "cpu":
        # The proxy's step doubles as the first warm-up step (it is untimed either way).
        return _cpu_memory_proxy(candidate.work, candidate.optimizer, candidate), "cpu_proxy", 1
    for _ in range(warmup):  # warm up before resetting, so the peak is the steady state's
        candidate()
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    candidate()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - baseline, "cuda_allocator", warmup + 1


def _run_phases(model, input_shape, batch, cfg, settings, num_classes, timer, sync, progress, reference) -> dict:
    device, precision = settings.device, settings.precision
    deadline = None if cfg.max_seconds is None else timer() + cfg.max_seconds
    baseline = 0
    if device.type == "cuda":
        synchronize(device)
        baseline = torch.cuda.memory_allocated(device)
    # The step training pays for: the same backend flags (TF32, cuDNN autotuning) and memory
    # format (channels_last on CUDA by default) as archsearch.train, for the first trial too.
    configure_backends(device)
    candidate = TrainingStep(model, input_shape, batch, settings, num_classes)

    progress["phase"] = "train"
    peak_bytes, source, warm = _peak_memory(candidate, cfg.warmup_steps, baseline)
    theirs = None if reference is None else TrainingStep(reference.model, input_shape, batch, settings,
                                                         reference.num_classes)
    out = time_train_steps(candidate, theirs, cfg.warmup_steps, cfg.repeats, timer, sync, deadline, warm,
                           nvml_id(device), cfg.max_repeats, cfg.ratio_tolerance)
    out.update(infer_throughput=None, infer_steps=None, latency_ms=None, latency_steps=None, flops=None,
               peak_mem_mb=peak_bytes / 2**20, peak_mem_source=source)
    # The training state is not needed for inference; free it first.
    del theirs
    candidate.release()
    work, x, t, labels = candidate.work.eval(), candidate.x, candidate.t, candidate.labels

    if cfg.infer:
        progress["phase"] = "infer"

        def infer_step():
            with torch.inference_mode(), autocast_context(device, precision):
                work(x, t, labels)

        times = time_repeats(infer_step, cfg.warmup_steps, cfg.repeats, timer, sync, deadline)
        out.update(infer_throughput=statistics.median([batch / d for d in times]), infer_steps=len(times))

    if cfg.latency:
        progress["phase"] = "latency"
        x1, t1, labels1 = x[:1], t[:1], None if labels is None else labels[:1]

        def latency_step():
            with torch.inference_mode(), autocast_context(device, precision):
                work(x1, t1, labels1)

        times = time_repeats(latency_step, cfg.warmup_steps, cfg.latency_repeats, timer, sync, deadline)
        out.update(latency_ms=statistics.median(times) * 1e3, latency_steps=len(times))

    if cfg.flops:
        progress["phase"] = "flops"
        # The copy is no longer needed: move it to 'meta' in place rather than copy again.
        out["flops"] = _count_flops(work, model, input_shape, num_classes, device)
    return out
