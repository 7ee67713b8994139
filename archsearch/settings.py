"""The run settings: what a `TrainConfig` becomes on one device, resolved once per run.

A config says `precision: auto` and `channels_last: auto`; what those mean depends on the device,
and the noise schedule is a few tensors computed from `schedule` and `num_timesteps`. Measuring,
training, evaluating and sampling must all see the same answers, so `resolve_run_settings`
computes them once and each of those phases takes the record instead of the config:

    settings = resolve_run_settings(train_cfg, device)   # once per trial (lr, precision may be searched)
    measure(model, shape, batch_size, settings)          # device, precision, fused AdamW
    train(model, batches, train_cfg, protocol, settings) # + memory format, compile, schedule, prediction
    protocol.evaluate(model, settings)                   # device, precision, prediction, memory format
    save_sample_grid(model, path, sample_cfg, settings, shape)   # device, precision, schedule, prediction

The record is frozen and holds no model state, only the schedule's small tensors (on the CPU;
whoever runs on the device moves them). Errors keep the config's paths (`train.precision`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from archsearch.device import resolve_precision
from archsearch.diffusion import NoiseSchedule
from archsearch.schema.train import TrainConfig

__all__ = ["RunSettings", "resolve_run_settings"]


@dataclass(frozen=True)
class RunSettings:
    """The device-dependent choices and the diffusion process of one run, `auto` resolved."""

    device: torch.device
    precision: str              # fp32 | bf16: the autocast of every forward pass
    tf32: bool                  # TF32 matmuls and convolutions (archsearch.device.configure_backends)
    compile: bool               # torch.compile the training forward
    channels_last: bool         # the memory format of training and evaluation inputs and weights
    fused_adamw: bool           # AdamW's fused CUDA kernel, in training and in measurement
    prediction: str             # eps | v: what the model outputs
    schedule: NoiseSchedule = field(compare=False, repr=False)  # on the CPU; tensors do not compare

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def resolve_run_settings(cfg: TrainConfig, device: torch.device | str) -> RunSettings:
    """Resolve `auto`: bf16 + TF32 + channels_last + fused AdamW on CUDA; eager fp32 on CPU.

    `device` is an existing device (archsearch.device.resolve_device turns `auto` into one).
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    return RunSettings(
        device=device,
        precision=resolve_precision(device, cfg.precision, "train.precision"),
        tf32=cuda,
        compile=cfg.compile == "on",  # auto = off: see TrainConfig.compile
        channels_last=cfg.channels_last == "on" or (cfg.channels_last == "auto" and cuda),
        fused_adamw=cuda,
        prediction=cfg.prediction,
        schedule=NoiseSchedule.create(cfg.schedule, cfg.num_timesteps),
    )
