"""Grids of generated samples: what a trained denoiser draws, as one PNG.

    settings = resolve_run_settings(train_cfg, device)   # archsearch.settings: the model's own run
    save_sample_grid(model, "samples.png", eval_cfg.samples, settings, image_shape=(1, 16, 16))

The noise schedule, the prediction target, the device and the precision are those the model was
trained under, so they come with the run settings rather than as separate arguments that could
disagree with each other.

`sample_checkpoint("m.pt", "grid.png", cfg)` does the same for a checkpoint written by
`archsearch train --checkpoint` (or kept by a study as trials/<n>/checkpoint.pt).

Grids are meant to be looked at: every image is enlarged by nearest neighbour (`scale`; by
default the smallest integer that makes a cell at least 64 pixels, so 16x16 digits are drawn
x4), and an optional caption strip above the grid names what it shows:

    make_grid(images, 8, 8, caption="trial 7 · val_loss 0.0832 · train_throughput 1,234 img/s")

The sampler (DDPM or DDIM, `SampleConfig.sampler`) starts from noise seeded by
`SampleConfig.seed` on the device, so grids of different models on one device start alike. A
class-conditional model draws class i % num_classes for image i (row-major), so with
`cols = num_classes` each column is one class.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor, nn

from archsearch.device import autocast_context
from archsearch.diffusion import ddim_sample, ddpm_sample
from archsearch.evaluate import model_num_classes
from archsearch.schema.train import SampleConfig
from archsearch.settings import RunSettings

__all__ = ["generate", "make_grid", "write_image", "auto_scale", "add_caption", "strip_caption", "caption_font_size", "MIN_CELL",
           "checkpoint_samples", "load_checkpoint_model", "sample_checkpoint", "save_sample_grid"]

_CHANNELS = (1, 3, 4)  # grayscale, RGB, RGBA
MIN_CELL = 64  # pixels: the auto scale enlarges each image to at least this on its longer side


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


def auto_scale(height: int, width: int | None = None) -> int:
    """The smallest integer upscaling that makes a cell at least `MIN_CELL` pixels on its longer
    side: 16x16 digits x4, 32x32 x2, 64x64 and larger x1."""
    side = max(height, width or height)
    return max(1, -(-MIN_CELL // max(side, 1)))  # ceil(MIN_CELL / side)


def make_grid(images: Tensor, rows: int, cols: int, padding: int = 1, scale: int | None = None,
              caption: str | None = None) -> Image.Image:
    """Tile images (N, C, H, W) in [-1, 1] row-major into a PIL image with black `padding` lines.

    Each image is enlarged `scale` times by nearest neighbour (None: `auto_scale`), so a pixel
    becomes a scale x scale block; the grid is cols*(W*scale+padding)+padding pixels wide and
    rows*(H*scale+padding)+padding high, and missing cells stay black. A `caption` adds a strip
    of text above (`add_caption`).
    """
    N, C, H, W = images.shape
    if C not in _CHANNELS:
        raise ValueError(f"cannot write {C}-channel images as PNG; expected 1, 3 or 4 channels")
    if N > rows * cols:
        raise ValueError(f"{N} images do not fit a {rows}x{cols} grid")
    scale = auto_scale(H, W) if scale is None else scale
    if scale < 1:
        raise ValueError(f"scale {scale}: must be at least 1")
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    pixels = pixels.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)  # (N, C, H*s, W*s)
    H, W = H * scale, W * scale
    grid = torch.zeros(C, rows * (H + padding) + padding, cols * (W + padding) + padding, dtype=torch.uint8)
    for i in range(N):
        r, c = divmod(i, cols)
        top, left = padding + r * (H + padding), padding + c * (W + padding)
        grid[:, top:top + H, left:left + W] = pixels[i]
    array = grid.permute(1, 2, 0).numpy()  # (H', W', C)
    image = Image.fromarray(array[:, :, 0] if C == 1 else array)  # mode from the shape: L, RGB, RGBA
    return add_caption(image, caption, cell=H) if caption else image


def caption_font_size(cell: int) -> int:
    """The caption's font size in pixels for grid cells `cell` pixels high: a fifth of a cell,
    12 to 24 px (legible beside 64-pixel cells, not dwarfing them)."""
    return min(24, max(12, round(cell / 5)))


def add_caption(grid: Image.Image, caption: str, cell: int = MIN_CELL) -> Image.Image:
    """`grid` under a strip of one or two lines of `caption`, light on black.

    The caption wraps at its ` · ` separators (an explicit newline splits it instead); the strip
    is as wide as the grid, or as the text when that is wider, the grid then centred under it
    (`strip_caption` undoes this). The text is Pillow's default font at `caption_font_size(cell)`;
    a Pillow without a scalable default font (before 10.1, or built without FreeType) draws its
    small bitmap font enlarged by nearest neighbour instead.
    """
    font, zoom = _font(caption_font_size(cell))
    if not isinstance(font, ImageFont.FreeTypeFont):  # the bitmap font encodes Latin-1 only
        caption = caption.encode("latin-1", "replace").decode("latin-1")
    lines = _wrap(caption, font, grid.width // zoom - 2 * _MARGIN)
    line_height = font.getbbox("Hg")[3] + _LINE_GAP
    width = max(grid.width // zoom, max(_text_width(font, line) for line in lines) + 2 * _MARGIN)
    strip = Image.new(grid.mode, (width, len(lines) * line_height + 2 * _MARGIN - _LINE_GAP), _ink(grid.mode, 0))
    draw = ImageDraw.Draw(strip)
    for i, line in enumerate(lines):
        draw.text((_MARGIN, _MARGIN + i * line_height), line, fill=_ink(grid.mode, 225), font=font)
    if zoom > 1:
        strip = strip.resize((strip.width * zoom, strip.height * zoom), Image.Resampling.NEAREST)
    out = Image.new(grid.mode, (max(grid.width, strip.width), strip.height + grid.height), _ink(grid.mode, 0))
    out.paste(strip, (0, 0))
    out.paste(grid, ((out.width - grid.width) // 2, strip.height))
    return out


def strip_caption(image: Image.Image, grid_size: tuple[int, int]) -> Image.Image:
    """The grid of a `grid_size` (width, height) grid that `add_caption` captioned: its caption cut off."""
    width, height = grid_size
    left = (image.width - width) // 2
    return image.crop((left, image.height - height, left + width, image.height))


_MARGIN, _LINE_GAP = 4, 3   # pixels of the font's own size around the caption and between its lines
_BITMAP_PX = 11             # the height of Pillow's bitmap default font


def _font(size: int):
    """(font, zoom): Pillow's scalable default font at `size`, or its bitmap font and the integer
    enlargement that brings it near `size`."""
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: the bitmap font only
        font = ImageFont.load_default()
    if isinstance(font, ImageFont.FreeTypeFont):
        return font, 1
    return font, max(1, round(size / _BITMAP_PX))


def _text_width(font, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return right - min(left, 0)


def _wrap(caption: str, font, width: int) -> list[str]:
    """One line when it fits `width`; else two, split at the ` · ` that makes the longer line
    shortest."""
    if "\n" in caption:
        first, rest = caption.split("\n", 1)
        return [first, rest.replace("\n", " · ")]
    parts = caption.split(" · ")
    if len(parts) == 1 or _text_width(font, caption) <= width:
        return [caption]
    splits = [[" · ".join(parts[:i]), " · ".join(parts[i:])] for i in range(1, len(parts))]
    return min(splits, key=lambda lines: max(_text_width(font, line) for line in lines))


def _ink(mode: str, level: int):
    """A gray `level` as a pixel of `mode` (L, RGB or RGBA; opaque)."""
    return {"L": level, "RGB": (level,) * 3, "RGBA": (level,) * 3 + (255,)}[mode]


def save_sample_grid(
    model: nn.Module,
    path: str | Path,
    cfg: SampleConfig,
    settings: RunSettings,
    image_shape: tuple[int, int, int],
    num_classes: int | None = None,
    scale: int | None = None,
    caption: str | None = None,
) -> Path:
    """Sample rows*cols images with `cfg.sampler` and write them as a PNG grid at `path`
    (`scale` and `caption` as `make_grid` takes them)."""
    images = generate(model, cfg, settings, image_shape, num_classes)
    return write_image(path, make_grid(images, cfg.rows, cfg.cols, scale=scale, caption=caption))


def write_image(path: str | Path, image) -> Path:
    """Write a PIL image atomically, in the format its suffix names (PNG when it names none)."""
    from PIL import Image

    from archsearch.io import atomic_write

    image_format = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    return atomic_write(path, lambda tmp: image.save(tmp, format=image_format))


def load_checkpoint_model(checkpoint: str | Path, device: str = "auto"):
    """(model, config, settings) of a checkpoint written by `archsearch train --checkpoint` (or
    kept by a study): its weights on the device, its UNetConfig, and the run settings it was
    trained under (noise schedule, prediction target).

    Raises ConfigErrors (`<checkpoint>: ...`) for a missing or unreadable checkpoint, and for
    weights that do not fit the config the checkpoint records.
    """
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
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state["state_dict"].items()}
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or sorted(k for k in found if found[k] != expected[k])
        raise ConfigErrors([ConfigError(str(checkpoint), f"its weights do not fit its config ({len(wrong)} tensors "
                                                         f"differ, e.g. {wrong[0]})")])
    model.load_state_dict(state["state_dict"])
    return model.to(settings.device), config, settings


def checkpoint_samples(checkpoint: str | Path, cfg: SampleConfig, device: str = "auto") -> Tensor:
    """rows*cols samples (N, C, H, W) in [-1, 1], on the CPU, of the model a checkpoint was
    trained as: its weights, its noise schedule and its prediction target (`load_checkpoint_model`)."""
    model, config, settings = load_checkpoint_model(checkpoint, device)
    shape = (config.in_channels, config.image_size, config.image_size)
    return generate(model, cfg, settings, shape, num_classes=config.num_classes).cpu()


def sample_checkpoint(checkpoint: Path, path: str | Path, cfg: SampleConfig, device: str = "auto",
                      scale: int | None = None, caption: str | None = None) -> Path:
    """`archsearch sample`: a grid of a checkpoint's samples (`checkpoint_samples`) written as a
    PNG at `path`, `scale` and `caption` as `make_grid` takes them."""
    images = checkpoint_samples(checkpoint, cfg, device)
    return write_image(path, make_grid(images, cfg.rows, cfg.cols, scale=scale, caption=caption))
