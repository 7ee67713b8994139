"""The timing protocol: training steps timed alone or in turns with a reference network's.

    step = TrainingStep(model, (3, 32, 32), 64, settings)          # a copy, its AdamW, a batch
    timing = time_train_steps(step, TrainingStep(ref.model, ...), warmup=3, repeats=10, ...)
    timing["train_throughput"], timing["ref_throughput"], timing["train_speed_vs_ref"]
    time_with_reference([model_a, model_b], ref, shape, 64, settings, rounds=3)   # re-measuring

archsearch.measure runs this for every trial; `time_with_reference` is the same protocol for
models that were already measured (re-measuring a study's front).

**Why a reference.** A throughput timed on a machine that other jobs share is partly the
machine's: the same configuration measured 36.6 images/s inside a study and 226.6 alone on a
2-core VM. The reference is a fixed small network (`measure.reference`, built once per process
with a fixed seed: the same weights for every trial and worker) whose training step takes turns
with the candidate's on the same device, batch size, precision and input shape: reference,
candidate, reference, candidate ... A pair of steps is timed within milliseconds, so a load
that comes and goes slows both alike. `train_speed_vs_ref` is the **median over pairs of the
candidate's images/s ÷ the reference's** (the time of the reference's step ÷ the candidate's):
the per-pair ratio cancels the load both steps saw, and the median drops the pairs that a burst
hit on one side only. A ratio of the two medians would compare steps timed at different
moments and keep whatever load changed in between.

**How many pairs.** On an idle machine the per-pair ratios agree within a few percent and
`measure.repeats` pairs give the median to ~4%. Under load they scatter (on the 2-core VM with
both cores kept busy, their interquartile range was 0.8 of the median against 0.13 idle), and
ten pairs left a trial's normalized speed 23% off (benchmarks/load_robustness.py). So once
`repeats` pairs are timed, pairs go on while the median's relative standard error, estimated
from the pairs' interquartile range (`median_rel_error`), is above `measure.ratio_tolerance`, up to `measure.max_repeats` pairs:
an idle machine stops at or near `repeats`, a busy one buys precision with time, never past
`max_seconds`. The candidate's raw throughput comes from the same steps; under load more of
them do not make it right (its error is a bias, not noise), which is what the ratio is for.

**How many threads.** More torch threads than free cores is worse than slow: an intra-op
parallel region ends when its slowest thread does, and a thread that shares its core with
another process finishes last. On the 2-core VM with one core kept busy, the reference's step
ran 3.8× slower at 2 threads than idle (134 against 514 images/s) but only 5% slower at one
thread (373 against 392 at one thread idle), and how much slower a candidate got depended on
its shapes: that was the error extra pairs did not remove (12% under one busy core). So with
`measure.threads: auto` (the default) a timing on the CPU uses no more threads than are free as
it starts (`choose_threads`: the usable CPUs less those others kept busy over the last 0.1 s,
archsearch.load.busy_cpus, to the nearest whole one, at least one), and sets them back after.
The ratio at fewer threads is close to the ratio at all of them: at one thread against two,
idle, the 12 configs of that benchmark ranked alike (Spearman 0.993) and differed by 5% (median);
timed at one thread with a core busy, the ratios were within 0.9% of the same idle. A trial's
`threads` and `busy_cpus` say what its timing saw; training keeps the process's threads.

**What it costs.** The reference's untimed and timed steps: as many as the candidate's
(`measure.warmup_steps` + the timed pairs), each about as long as a quickstart-sized
candidate's (`reference: auto` is ~140k parameters and 28 MFLOPs per image at 16×16×1, where
the quickstart's candidates take 7 to 100+), so the timing phase takes up to twice as long;
training, which is most of a trial, is not affected. `max_seconds` caps the pairs together.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from archsearch.device import autocast_context, configure_backends, synchronize
from archsearch.load import busy_cpus, cpu_count, gpu_readings, machine_load
from archsearch.schema.measure import MIN_TIMED_STEPS, MeasureConfig
from archsearch.schema.unet import UNetConfig
from archsearch.settings import RunSettings

__all__ = ["NUM_TIMESTEPS", "REFERENCE_SEED", "Reference", "build_reference", "TrainingStep", "time_interleaved",
           "time_repeats", "time_train_steps", "time_with_reference", "ThreadChoice", "choose_threads", "timing_threads",
           "median_and_iqr", "median_rel_error", "pair_ratios", "random_batch", "nvml_id"]

NUM_TIMESTEPS = 1000  # timesteps are drawn from [0, 1000), the models' conditioning range


@dataclasses.dataclass(frozen=True)
class Reference:
    """The network every candidate's training step is timed against (`build_reference`), on
    the CPU until a measurement copies it; `num_classes` is its own label count, if any."""

    model: torch.nn.Module
    num_classes: int | None = None
    name: str = "reference"


REFERENCE_SEED = 0  # the reference's weights: the same in every process (they do not change its speed anyway)


def build_reference(config: UNetConfig, name: str = "reference") -> Reference:
    """The reference network of `config`, initialized from `REFERENCE_SEED` without touching
    the caller's random stream, on the CPU."""
    from archsearch.nn import build_unet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(REFERENCE_SEED)
        model = build_unet(config)
    return Reference(model, config.num_classes, name)


class ReferenceCache:
    """`measure.reference` at a candidate's image size and channels, built once per resolved
    config (so every model timed in this process meets the same weights); None: no reference."""

    def __init__(self):
        self.built: dict[str, Reference] = {}

    def __call__(self, measure_cfg, config: UNetConfig) -> Reference | None:
        from archsearch.schema.measure import reference_architecture

        ref_config = reference_architecture(measure_cfg, config.image_size, config.in_channels)
        if ref_config is None:
            return None
        key = ref_config.model_dump_json()
        if key not in self.built:
            name = measure_cfg.reference if isinstance(measure_cfg.reference, str) else "inline"
            self.built[key] = build_reference(ref_config, name)
        return self.built[key]


@dataclasses.dataclass(frozen=True)
class ThreadChoice:
    """The torch threads a measurement ran with, and the CPUs others kept busy as it started
    (archsearch.load.busy_cpus; None when not read)."""

    threads: int
    busy_cpus: float | None = None


def choose_threads(setting: str | int | None, device: torch.device, current: int,
                   busy: Callable[[], float | None] = busy_cpus) -> ThreadChoice:
    """The threads `measure.threads` asks for (see the module docstring): a number as it is;
    auto on the CPU, the free CPUs (usable less busy, to the nearest whole one) when fewer than
    `current`, but at least one; otherwise `current`."""
    if isinstance(setting, int):
        return ThreadChoice(setting)
    if setting != "auto" or device.type != "cpu" or current <= 1:
        return ThreadChoice(current)
    others = busy()
    if others is None:
        return ThreadChoice(current)
    free = math.floor(cpu_count() - others + 0.5)
    return ThreadChoice(max(1, min(current, free)), others)


@contextlib.contextmanager
def timing_threads(setting: str | int | None, device: torch.device,
                   busy: Callable[[], float | None] = busy_cpus) -> Iterator[ThreadChoice]:
    """torch's intra-op threads set to `choose_threads`' choice while the block runs, and set
    back after it."""
    current = torch.get_num_threads()
    choice = choose_threads(setting, device, current, busy)
    if choice.threads != current:
        torch.set_num_threads(choice.threads)
    try:
        yield choice
    finally:
        if torch.get_num_threads() != current:
            torch.set_num_threads(current)


def time_with_reference(
    models: Sequence[torch.nn.Module],
    reference: Reference,
    input_shape: Sequence[int],
    batch_size: int,
    settings: RunSettings,
    cfg: MeasureConfig | None = None,
    rounds: int = 1,
    num_classes: int | None = None,
    timer: Callable[[], float] = time.perf_counter,
    sync: Callable[[], None] | None = None,
    busy: Callable[[], float | None] = busy_cpus,
) -> list[list[dict[str, Any]]]:
    """Each model's training step timed in turns with the reference's, `rounds` times over:
    result[i][r] is model i's round r, with `time_train_steps`' fields.

    A round times every model once, in order, each in turns with the one reference step they
    share, so a slow spell of the machine falls on one round of several models rather than on
    every round of one: the spread over rounds is the measurement's noise. Every model is warmed
    up (`cfg.warmup_steps` untimed pairs) in its first round only; `cfg.max_seconds` caps each
    model's round; each round runs with `cfg.threads` (`timing_threads`, its choice in the
    round's `threads` and `busy_cpus`). Every model's copy stays on the device until the end.
    Nothing is returned about memory or FLOPs: archsearch.measure measures those once.
    """
    cfg = cfg or MeasureConfig()
    device = settings.device
    sync = sync or (lambda: synchronize(device))
    batch = cfg.batch_size or batch_size
    configure_backends(device)
    results: list[list[dict[str, Any]]] = [[] for _ in models]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        theirs = TrainingStep(reference.model, input_shape, batch, settings, reference.num_classes)
        steps = [TrainingStep(m, input_shape, batch, settings, num_classes) for m in models]
        for r in range(rounds):
            for mine, out in zip(steps, results):
                warmup = cfg.warmup_steps if r == 0 else 0
                with timing_threads(cfg.threads, device, busy) as choice:
                    deadline = None if cfg.max_seconds is None else timer() + cfg.max_seconds
                    timed = time_train_steps(mine, theirs, warmup, cfg.repeats, timer, sync, deadline,
                                             gpu=nvml_id(device), max_repeats=cfg.max_repeats, tolerance=cfg.ratio_tolerance)
                out.append({**timed, **dataclasses.asdict(choice)})
    return results


def time_interleaved(
    steps: Sequence[Callable[[], object]],
    warmup: int,
    repeats: int,
    timer: Callable[[], float],
    sync: Callable[[], None],
    deadline: float | None = None,
    more: Callable[[list[list[float]]], bool] | None = None,
    max_repeats: int | None = None,
) -> list[list[float]]:
    """The timing protocol, for steps that take turns: `warmup` untimed rounds, then `repeats`
    timed ones; a round calls every step once, in order. Returns each step's durations
    (seconds), by step.

    Each timed call is `sync(); t0 = timer(); step(); sync(); t1 = timer()`. With `more` (asked
    with the durations so far after each round from the `repeats`-th on), timing goes on while
    it says so, up to `max_repeats` rounds in all: until a measurement is precise enough. When
    `deadline` (a `timer()` value) is given, timing stops once the next round, assumed as long as
    the last, would end past it, but never before `MIN_TIMED_STEPS` rounds. Warm-up is never cut.
    """
    for _ in range(warmup):
        for step in steps:
            step()
    durations: list[list[float]] = [[] for _ in steps]
    limit = repeats if more is None else max(repeats, max_repeats or repeats)
    for done in range(1, limit + 1):
        for step, times in zip(steps, durations):
            sync()
            start = timer()
            step()
            sync()
            end = timer()
            times.append(end - start)
        last_round = sum(times[-1] for times in durations)
        if deadline is not None and done >= MIN_TIMED_STEPS and end + last_round > deadline:
            break
        if done >= repeats and (more is None or not more(durations)):
            break
    return durations


def time_repeats(
    step: Callable[[], object],
    warmup: int,
    repeats: int,
    timer: Callable[[], float],
    sync: Callable[[], None],
    deadline: float | None = None,
) -> list[float]:
    """`time_interleaved` for one step: `warmup` untimed calls, then up to `repeats` timed ones."""
    return time_interleaved([step], warmup, repeats, timer, sync, deadline)[0]


def median_rel_error(values: Sequence[float]) -> float:
    """The relative standard error of the median of `values`, from their interquartile range:
    1.2533 σ / √n with σ = IQR / 1.349 (both exact for normal samples; the IQR, unlike the
    standard deviation, ignores the few steps a burst of load hit), ÷ the median. inf below
    `MIN_TIMED_STEPS` values or at a median of 0."""
    if len(values) < MIN_TIMED_STEPS:
        return math.inf
    median, iqr = median_and_iqr(values)
    if median == 0:
        return math.inf
    return 1.2533 * iqr / 1.349 / math.sqrt(len(values)) / abs(median)


def pair_ratios(reference_times: Sequence[float], candidate_times: Sequence[float]) -> list[float]:
    """Pair i's candidate images/s ÷ reference images/s: the reference's time ÷ the candidate's."""
    return [r / c for r, c in zip(reference_times, candidate_times)]


def median_and_iqr(per_step: Sequence[float]) -> tuple[float, float]:
    """(median, q75 - q25) of per-step values."""
    q25, q50, q75 = statistics.quantiles(per_step, n=4, method="inclusive")
    return q50, q75 - q25


def random_batch(batch_size: int, input_shape: Sequence[int], num_classes: int | None, device: torch.device):
    """(x, t, labels) of the denoiser interface, random, made on `device`."""
    x = torch.randn(batch_size, *input_shape, device=device)
    # Integer timesteps as a float tensor, as the training loop feeds them.
    t = torch.randint(0, NUM_TIMESTEPS, (batch_size,), device=device).float()
    labels = None if num_classes is None else torch.randint(0, num_classes, (batch_size,), device=device)
    return x, t, labels


class TrainingStep:
    """One model's training step as a trial pays for it, ready to call (see the module
    docstring): a deep copy on the device in the run's memory format, so that optimizer steps
    leave the caller's weights alone, its AdamW, and a random batch made on the device."""

    def __init__(self, model: torch.nn.Module, input_shape: Sequence[int], batch: int, settings: RunSettings,
                 num_classes: int | None = None):
        self.device, self.precision = settings.device, settings.precision
        fmt = settings.memory_format
        self.work = copy.deepcopy(model).to(device=self.device, memory_format=fmt).train()
        self.optimizer: Any = torch.optim.AdamW(self.work.parameters(), lr=1e-4, fused=settings.fused_adamw)
        x, self.t, self.labels = random_batch(batch, tuple(input_shape), num_classes, self.device)
        self.x = x.contiguous(memory_format=fmt)
        self.target = None  # ε-MSE against random noise (values do not change speed), shaped like the output

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast_context(self.device, self.precision):
            pred = self.work(self.x, self.t, self.labels)  # (B, C', H, W); C' may differ from C (learned variance)
        if self.target is None:  # made once, in the first (untimed) step
            self.target = torch.randn(pred.shape, device=self.device)
        F.mse_loss(pred.float(), self.target).backward()
        self.optimizer.step()

    def release(self) -> None:
        """Free the gradients and the optimizer state (inference needs neither)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer = None


def time_train_steps(
    candidate: TrainingStep,
    reference: TrainingStep | None,
    warmup: int,
    repeats: int,
    timer: Callable[[], float],
    sync: Callable[[], None],
    deadline: float | None = None,
    warm: int = 0,
    gpu: str | int | None = None,
    max_repeats: int | None = None,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """Time `candidate`'s training step, in turns with `reference`'s when given, and read the
    machine's load around it: the training fields of `Measurement` (train_throughput ... sm_clock_mhz).

    `warm` counts the untimed candidate steps already taken; the reference gets as many, alone,
    first, then both share the `warmup - warm` untimed rounds left. With a reference, `max_repeats`
    and `tolerance`, pairs go on past `repeats` while the median ratio's relative standard error
    (`median_rel_error`) is above `tolerance`, up to `max_repeats` pairs (see MeasureConfig).
    `gpu` names the CUDA device for NVML (archsearch.load)."""
    batch = candidate.x.shape[0]
    steps, more = [candidate], None
    if reference is not None:
        for _ in range(warm):
            reference()
        steps = [reference, candidate]
        if tolerance is not None:
            def more(durations):
                return median_rel_error(pair_ratios(*durations)) > tolerance
    before = gpu_readings(gpu)
    times = time_interleaved(steps, max(warmup - warm, 0), repeats, timer, sync, deadline, more, max_repeats)
    after = machine_load(gpu)
    mine = times[-1]
    ips, iqr = median_and_iqr([batch / d for d in mine])
    out = dict(train_throughput=ips, train_throughput_iqr=iqr, train_step_ms=statistics.median(mine) * 1e3,
               train_steps=len(mine), ref_throughput=None, train_speed_vs_ref=None, ref_step_ms=None,
               cpu_count=after["cpu_count"], load_avg=after["load_avg"], gpu_util=before["gpu_util"],
               sm_clock_mhz=after["sm_clock_mhz"])
    if reference is not None:
        theirs = times[0]
        out.update(ref_throughput=statistics.median([batch / d for d in theirs]),
                   # pair i: the reference's step i, then the candidate's; images/s ratio = time ratio
                   train_speed_vs_ref=statistics.median(pair_ratios(theirs, mine)),
                   ref_step_ms=statistics.median(theirs) * 1e3)
    return out


def nvml_id(device: torch.device) -> str | None:
    """The PCI bus id NVML knows a CUDA device by (CUDA_VISIBLE_DEVICES renumbers devices,
    NVML does not); None off CUDA or when torch does not say."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    bus = getattr(props, "pci_bus_id", None)
    if bus is None:
        return None
    return f"{getattr(props, 'pci_domain_id', 0):08X}:{bus:02X}:{getattr(props, 'pci_device_id', 0):02X}.0"
