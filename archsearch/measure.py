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
2. forward-only throughput (eval mode, inference mode, same batch size) and batch-1 latency,
   timed the same way.
3. parameters (sum of `numel`) and forward FLOPs per image, counted by
   `torch.utils.flop_counter` on a batch of one (convolutions, matmuls, attention; norms and
   pointwise ops are not counted). The count runs on the 'meta' device when the model allows
   it, which computes nothing.
4. peak memory of the training step: on CUDA, the allocator's peak over the timed steps minus
   what was allocated before measuring; on CPU a documented proxy (see `_cpu_memory_proxy`),
   taken during the first warm-up step (so on CPU at least one untimed step always runs).

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
import torch.nn.functional as F
from torch.utils import flop_counter

from archsearch.device import autocast_context, configure_backends, device_info, is_out_of_memory, synchronize
from archsearch.errors import ConfigError
from archsearch.schema.measure import MIN_TIMED_STEPS, MeasureConfig
from archsearch.settings import RunSettings

__all__ = ["Measurement", "MeasurementOOM", "count_flops", "count_params", "measure", "time_repeats"]

NUM_TIMESTEPS = 1000  # timesteps are drawn from [0, 1000), the models' conditioning range


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
    threads: int                       # torch intra-op threads during measurement
    device: dict                       # archsearch.device.device_info

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (`device` stays a nested dict)."""
        return dataclasses.asdict(self)


def count_params(model: torch.nn.Module) -> int:
    """All parameters, trainable or not (shared parameters once)."""
    return sum(p.numel() for p in model.parameters())


def time_repeats(
    step: Callable[[], object],
    warmup: int,
    repeats: int,
    timer: Callable[[], float],
    sync: Callable[[], None],
    deadline: float | None = None,
) -> list[float]:
    """The timing protocol: `warmup` untimed calls, then up to `repeats` timed ones (seconds).

    Each timed call is `sync(); t0 = timer(); step(); sync(); t1 = timer()`. When `deadline`
    (a `timer()` value) is given, timing stops once the next step, assumed as long as the last,
    would end past it, but never before `MIN_TIMED_STEPS` steps. Warm-up is never cut.
    """
    for _ in range(warmup):
        step()
    durations: list[float] = []
    for _ in range(repeats):
        sync()
        start = timer()
        step()
        sync()
        end = timer()
        durations.append(end - start)
        if deadline is not None and len(durations) >= MIN_TIMED_STEPS and end + durations[-1] > deadline:
            break
    return durations


def _median_and_iqr(per_step: Sequence[float]) -> tuple[float, float]:
    q25, q50, q75 = statistics.quantiles(per_step, n=4, method="inclusive")
    return q50, q75 - q25


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
    x, t, labels = _random_batch(1, input_shape, num_classes, device)
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS)
    with torch.no_grad(), counter:
        model(x, t, labels)
    return int(counter.get_total_flops())


def _random_batch(batch_size, input_shape, num_classes, device):
    x = torch.randn(batch_size, *input_shape, device=device)
    # Integer timesteps as a float tensor, as the training loop feeds them.
    t = torch.randint(0, NUM_TIMESTEPS, (batch_size,), device=device).float()
    labels = None if num_classes is None else torch.randint(0, num_classes, (batch_size,), device=device)
    return x, t, labels


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
) -> Measurement:
    """Measure `model`'s cost: throughput, latency, parameters, FLOPs, peak memory.

    `model(x, t, class_labels)` takes x (B, C, H, W), float timesteps t (B,) and int64 labels
    (B,) or None. `input_shape` is (C, H, W); `batch_size` is the training batch size, used
    unless `cfg.batch_size` overrides it. `settings` give the device, the precision of every
    forward and whether AdamW is fused. `timer` and `sync` default to `time.perf_counter` and
    the device's synchronize; tests inject fakes. Raises `MeasurementOOM` when the step does
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
            results = _run_phases(model, tuple(input_shape), batch, cfg, settings, num_classes, timer, sync, progress)
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
        threads=torch.get_num_threads(),
        device=device_info(device),
    )


def _run_phases(model, input_shape, batch, cfg, settings, num_classes, timer, sync, progress) -> dict:
    device, precision = settings.device, settings.precision
    deadline = None if cfg.max_seconds is None else timer() + cfg.max_seconds
    baseline = 0
    if device.type == "cuda":
        synchronize(device)
        baseline = torch.cuda.memory_allocated(device)
    # The step training pays for: the same backend flags (TF32, cuDNN autotuning) and memory
    # format (channels_last on CUDA by default) as archsearch.train, for the first trial too.
    configure_backends(device)
    fmt = settings.memory_format
    # A deep copy: optimizer steps on it leave the caller's weights alone.
    work = copy.deepcopy(model).to(device=device, memory_format=fmt).train()
    optimizer = torch.optim.AdamW(work.parameters(), lr=1e-4, fused=settings.fused_adamw)
    x, t, labels = _random_batch(batch, input_shape, num_classes, device)
    x = x.contiguous(memory_format=fmt)
    target = None  # ε-MSE against random noise (values do not change speed), shaped like the output

    def train_step():
        nonlocal target
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(device, precision):
            pred = work(x, t, labels)  # (B, C', H, W); C' may differ from C (learned variance)
        if target is None:  # made once, in the first (untimed on CPU) step
            target = torch.randn(pred.shape, device=device)
        F.mse_loss(pred.float(), target).backward()
        optimizer.step()

    progress["phase"] = "train"
    warmup = cfg.warmup_steps
    if device.type == "cpu":
        # The proxy's step doubles as the first warm-up step (it is untimed either way).
        peak_bytes, source = _cpu_memory_proxy(work, optimizer, train_step), "cpu_proxy"
        warmup = max(warmup - 1, 0)
        step_times = time_repeats(train_step, warmup, cfg.repeats, timer, sync, deadline)
    else:
        for _ in range(warmup):  # warm up before resetting, so the peak is the steady state's
            train_step()
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step_times = time_repeats(train_step, 0, cfg.repeats, timer, sync, deadline)
        peak_bytes, source = torch.cuda.max_memory_allocated(device) - baseline, "cuda_allocator"
    train_ips, train_iqr = _median_and_iqr([batch / d for d in step_times])
    out = dict(
        train_throughput=train_ips,
        train_throughput_iqr=train_iqr,
        train_step_ms=statistics.median(step_times) * 1e3,
        train_steps=len(step_times),
        infer_throughput=None, infer_steps=None, latency_ms=None, latency_steps=None, flops=None,
        peak_mem_mb=peak_bytes / 2**20,
        peak_mem_source=source,
    )
    # The optimizer state and gradients are not needed for inference; free them first.
    optimizer.zero_grad(set_to_none=True)
    del optimizer, train_step
    work.eval()

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
