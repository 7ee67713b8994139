"""MeasureConfig: how the cost of an architecture is measured (the timing phase).

The timing phase is separate from training: after `warmup_steps` untimed training steps,
`repeats` full training steps (forward, backward, optimizer step) are each bracketed by a device
synchronization and a clock read; the median images/s is the cost objective and the
interquartile range its spread. Forward-only throughput, batch-1 latency and forward FLOPs are
optional extras. See `archsearch.measure` for the protocol itself. Imports no torch.
"""

from __future__ import annotations

from pydantic import Field

from archsearch.schema._base import MAX_COUNT, Model

__all__ = ["MeasureConfig", "MIN_TIMED_STEPS"]

# A median and an interquartile range need a few samples; the time cap never cuts below this.
MIN_TIMED_STEPS = 3


class MeasureConfig(Model):
    """The timing protocol of one trial's cost measurement."""

    warmup_steps: int = Field(
        3, ge=0, le=MAX_COUNT,
        description="Untimed training steps before timing starts (lets allocators, cuDNN "
        "autotuning and caches settle).",
    )
    repeats: int = Field(
        10, ge=MIN_TIMED_STEPS, le=MAX_COUNT,
        description=f"Timed training steps; the median images/s is reported. At least "
        f"{MIN_TIMED_STEPS}, so that a spread can be computed.",
    )
    batch_size: int | None = Field(
        None, ge=1, le=2**20,
        description="Batch size of the timed steps; null uses the training batch size.",
    )
    infer: bool = Field(
        True,
        description="Also measure forward-only (no grad, eval mode) throughput at the same "
        "batch size, with `warmup_steps` untimed and `repeats` timed passes.",
    )
    latency: bool = Field(
        True,
        description="Also measure the median latency of one forward pass at batch size 1.",
    )
    latency_repeats: int = Field(
        10, ge=MIN_TIMED_STEPS, le=MAX_COUNT,
        description="Timed batch-1 forward passes for the latency median (after "
        "`warmup_steps` untimed ones).",
    )
    flops: bool = Field(
        True,
        description="Count forward FLOPs per image (convolutions, matmuls, attention) with "
        "torch.utils.flop_counter.",
    )
    max_seconds: float | None = Field(
        60.0, gt=0,
        description=f"Cap on the whole timing phase in seconds, so a huge model does not eat "
        f"a trial's budget: repeats stop early once the next one would pass the cap, but at "
        f"least {MIN_TIMED_STEPS} are always timed. null: no cap.",
    )
