"""MeasureConfig: how the cost of an architecture is measured (the timing phase).

The timing phase is separate from training: after `warmup_steps` untimed training steps,
`repeats` full training steps (forward, backward, optimizer step) are each bracketed by a device
synchronization and a clock read; the median images/s is the cost objective and the
interquartile range its spread. Forward-only throughput, batch-1 latency and forward FLOPs are
optional extras. See `archsearch.measure` for the protocol itself.

The training steps are timed interleaved with a **reference network**'s (`reference`): the
same small network for every trial of a study and every worker, so that the candidate's speed
relative to it (`train_speed_vs_ref`) cancels what the machine's load does to both. `auto` is
`AUTO_REFERENCE` at the study's image size and channels; a preset name or an inline U-Net
config (image size and channels default to the data's) are checked when the file loads
(`reference_architecture`); null turns the reference off. Imports no torch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from archsearch.errors import ConfigError, ConfigErrors, excerpt
from archsearch.schema._base import MAX_COUNT, Model

__all__ = ["MeasureConfig", "MIN_TIMED_STEPS", "AUTO_REFERENCE", "reference_architecture", "architecture_at"]

MAX_THREADS = 4_096

# A median and an interquartile range need a few samples; the time cap never cuts below this.
MIN_TIMED_STEPS = 3

# `reference: auto`: a quickstart-sized U-Net (about 140k parameters at 16x16x1), two levels when
# the image size is even (one otherwise), no attention. Small, so that timing it costs a trial
# little; shaped like the searched networks (convolutions, group norms, a timestep MLP), so that
# a busy machine slows it as it slows them.
AUTO_REFERENCE: dict[str, Any] = {
    "levels": [{"width": 16, "blocks": 1}, {"width": 32, "blocks": 1}],
    "middle": {"blocks": 1, "attention": False},
    "block": {"norm": {"kind": "group", "groups": 4}},
    "embedding": {"dim": 16},
}


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
    max_repeats: int | None = Field(
        50, ge=MIN_TIMED_STEPS, le=MAX_COUNT,
        description="With a reference: timed step pairs may go on past `repeats`, up to this many, "
        "while the median candidate/reference ratio is less precise than `ratio_tolerance` (a busy "
        "machine makes pairs scatter; an idle one stops at or near `repeats`). null, or not above repeats: "
        "exactly `repeats` pairs. `max_seconds` still caps them.",
    )
    ratio_tolerance: float | None = Field(
        0.05, gt=0, le=1,
        description="The relative standard error of the median ratio (from the pairs' interquartile "
        "range) at which timing stops once `repeats` pairs are taken; null: exactly `repeats` pairs.",
    )
    threads: Literal["auto"] | int | None = Field(
        "auto",
        description="torch intra-op threads while timing (training keeps its own). auto: on the CPU, no "
        "more than are free just before timing (the usable CPUs less those others keep busy, read "
        "from /proc/stat), since more threads than free cores make every step wait for the "
        "slowest; elsewhere the process's threads. A number: exactly that many. null: the "
        "process's threads.",
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
    reference: str | dict[str, Any] | None = Field(
        "auto",
        description="The network whose training step is timed interleaved with every candidate's "
        "(reference, candidate, ...), for a speed that survives a busy machine (train_speed_vs_ref, "
        "train_throughput_normalized): auto (a small fixed U-Net at the data's image size and "
        "channels), a preset name, or U-Net config fields (`base: PRESET` + overrides). Costs "
        "warmup_steps + repeats of its training steps per trial. null: no reference.",
    )

    @field_validator("threads", mode="before")
    @classmethod
    def _thread_count(cls, value):
        if value is None or value == "auto":
            return value
        number = value
        if isinstance(value, str) and value.strip().isdigit():
            number = int(value)
        if isinstance(number, bool) or not isinstance(number, int):
            raise ValueError(f"expected auto, a thread count or null; got {excerpt(value)}")
        if not 1 <= number <= MAX_THREADS:
            bound = "greater than or equal to 1" if number < 1 else f"less than or equal to {MAX_THREADS}"
            raise ValueError(f"a thread count should be {bound}; got {number}")
        return number

    @field_validator("reference")
    @classmethod
    def _reference_name(cls, value):
        from .loading import PRESETS

        if isinstance(value, str) and value != "auto" and value not in PRESETS:
            raise ValueError(f"unknown reference {excerpt(value)}; use auto, a preset ({', '.join(PRESETS)}), "
                             "U-Net config fields, or null for none")
        return value


def reference_architecture(cfg: MeasureConfig, image_size: int, in_channels: int, path: str = "measure.reference"):
    """The UNetConfig of `cfg.reference` at a study's image size and channels (None: no
    reference), planned; ConfigErrors located under `path`."""
    ref = cfg.reference
    if ref is None:
        return None
    if ref == "auto":
        ref = {**AUTO_REFERENCE, "levels": AUTO_REFERENCE["levels"][: 2 if image_size % 2 == 0 else 1]}
        return architecture_at(ref, image_size, in_channels, path, written=False)
    return architecture_at(ref, image_size, in_channels, path,
                           why="the reference is timed on the candidates' inputs")


def architecture_at(ref: str | dict[str, Any], image_size: int, in_channels: int, path: str,
                    why: str = "it runs on the candidates' inputs", written: bool = True):
    """A preset name or U-Net fields (`base: PRESET` + overrides; a `name` key is a label and
    is dropped) as a planned UNetConfig at a study's image size and channels; an image size or
    channel count written otherwise is an error located under `path` (`why` says why)."""
    from .loading import unet_config_from_dict

    if isinstance(ref, str):
        data, given = {"base": ref}, {}  # a preset's own image size is not the study's
    else:
        data = {k: v for k, v in ref.items() if k != "name"}
        given = data if written else {}
    for key, value in (("image_size", image_size), ("in_channels", in_channels)):
        if given.get(key, value) != value:
            raise ConfigErrors([ConfigError(f"{path}.{key}", f"{given[key]} but the data's is {value}: {why}; "
                                                             "drop it or make them equal")])
        data[key] = value
    return unet_config_from_dict(data, prefix=path)
