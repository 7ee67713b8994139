"""Grids of generated samples: what a trained denoiser draws, as one PNG.

    settings = resolve_run_settings(train_cfg, device)   # archsearch.settings: the model's own run
    save_sample_grid(model, "samples.png", eval_cfg.samples, settings, image_shape=(1, 16, 16))

The noise schedule, the prediction target, the device and the precision are those the model was
trained under, so they come with the run settings rather than as separate arguments that could
disagree with each other.

`sample_checkpoint("m.pt", "grid.png", cfg)` does the same for a checkpoint written by
`archsearch train --checkpoint`.

The sampler (DDPM or DDIM, `SampleConfig.sampler`) starts from noise seeded by
`SampleConfig.seed` on the device, so grids of different models on one device start alike. A
class-conditional model draws class i % num_classes for image i (row-major), so with
`cols = num_classes` each column is one class.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from archsearch.device import autocast_context
from archsearch.diffusion import ddim_sample, ddpm_sample
from archsearch.evaluate import model_num_classes
from archsearch.schema.train import SampleConfig
from archsearch.settings import RunSettings

__all__ = ["generate", "make_grid", "sample_checkpoint", "save_sample_grid"]

_CHANNELS = (1, 3, 4)  # grayscale, RGB, RGBA


def generate(
    model: nn.Module,
    cfg: SampleConfig,
    settings: RunSettings,
    image_shape: tuple[int, int, int],
    num_classes: int | None = None,
) -> Tensor:
    """rows*cols samples (N, C, H, W) in [-1, 1], on the device; the model's mode is restored."""
    device, prediction = settings.device, settings.prediction
    n = cfg.rows * cfg.cols
    num_classes = num_classes if num_classes is not None else model_num_classes(model)
    labels = torch.arange(n, device=device) % num_classes if num_classes else None
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    schedule = settings.schedule.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast_context(device, settings.precision):
            shape = (n, *image_shape)
            if cfg.sampler.kind == "ddim":
                x = ddim_sample(model, shape, schedule, cfg.sampler.steps, generator, labels, prediction,
                                eta=cfg.sampler.eta, guidance_scale=cfg.guidance_scale)
            else:
                x = ddpm_sample(model, shape, schedule, cfg.sampler.steps, generator, labels, prediction,
                                guidance_scale=cfg.guidance_scale)
    finally:
        model.train(was_training)
    return x


def make_grid(images: Tensor, rows: int, cols: int, padding: int = 1) -> Image.Image:
    """Tile images (N, C, H, W) in [-1, 1] row-major into a PIL image with black `padding` lines.

    The grid is cols*(W+padding)+padding pixels wide and rows*(H+padding)+padding high; missing
    cells stay black.
    """
    N, C, H, W = images.shape
    if C not in _CHANNELS:
        raise ValueError(f"cannot write {C}-channel images as PNG; expected 1, 3 or 4 channels")
    if N > rows * cols:
        raise ValueError(f"{N} images do not fit a {rows}x{cols} grid")
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    grid = torch.zeros(C, rows * (H + padding) + padding, cols * (W + padding) + padding, dtype=torch.uint8)
    for i in range(N):
        r, c = divmod(i, cols)
        top, left = padding + r * (H + padding), padding + c * (W + padding)
        grid[:, top:top + H, left:left + W] = pixels[i]
    array = grid.permute(1, 2, 0).numpy()  # (H', W', C)
    return Image.fromarray(array[:, :, 0] if C == 1 else array)  # mode from the shape: L, RGB, RGBA


def save_sample_grid(
    model: nn.Module,
    path: str | Path,
    cfg: SampleConfig,
    settings: RunSettings,
    image_shape: tuple[int, int, int],
    num_classes: int | None = None,
) -> Path:
    """Sample rows*cols images with `cfg.sampler` and write them as a PNG grid at `path`."""
    images = generate(model, cfg, settings, image_shape, num_classes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_grid(images, cfg.rows, cfg.cols).save(path)
    return path


def sample_checkpoint(checkpoint: Path, path: str | Path, cfg: SampleConfig, device: str = "auto") -> Path:
    """`archsearch sample`: rebuild the model a checkpoint was trained as, with its weights, its
    noise schedule and its prediction target, and write a grid of its samples at `path`."""
    from archsearch.device import resolve_device
    from archsearch.errors import ConfigError, ConfigErrors
    from archsearch.nn import build_unet
    from archsearch.schema.loading import unet_config_from_dict, validate_model
    from archsearch.schema.train import TrainConfig
    from archsearch.settings import resolve_run_settings
    from archsearch.train import load_checkpoint

    if not Path(checkpoint).exists():
        raise ConfigErrors([ConfigError(str(checkpoint), "no such checkpoint")])
    state = load_checkpoint(checkpoint)
    config = unet_config_from_dict(state["config"])
    train_cfg = validate_model(TrainConfig, state["train"], "train")
    settings = resolve_run_settings(train_cfg, resolve_device(device))
    model = build_unet(config)
    model.load_state_dict(state["state_dict"])
    shape = (config.in_channels, config.image_size, config.image_size)
    return save_sample_grid(model.to(settings.device), path, cfg, settings, shape, num_classes=config.num_classes)
