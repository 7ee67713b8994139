"""Arrays of images in any common layout and range -> uint8 (N, C, S, S) at the configured size.

Every source ends here, so that all of them obey the same rules:

    layout    (N, H, W) is gray; (N, H, W, C) and (N, C, H, W) with C in 1, 3, 4 are told apart by
              where the small axis sits (channels-last wins a tie when H == W, as images files
              are laid out). A 4th (alpha) channel is dropped.
    range     integer arrays are 0..255; float arrays are [0, 1], or [-1, 1] when any value is
              negative. Values outside the detected range are an error, never silently clipped.
    channels  gray -> RGB repeats the plane; RGB -> gray takes the ITU-R 601 luminance
              (0.299 R + 0.587 G + 0.114 B), the same as Pillow's `convert("L")`.
    size      a non-square image is center-cropped to a square, then resized with torch's
              antialiased bilinear filter (area-like when shrinking, smooth when enlarging
              digits' 8x8), in chunks of at most `CHUNK_PIXELS` float pixels (a few hundred MB of
              temporaries, whatever the image size), so that memory stays bounded.

The result is rounded to 8 bits: sources are 8-bit images, and one exact 8-bit copy lets the
device-resident and the streamed batch paths feed bit-identical pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from archsearch.errors import ConfigError

__all__ = ["LUMA", "CHUNK_PIXELS", "as_nchw", "chunk_images", "to_uint8_images", "to_signed", "to_unsigned"]

LUMA = (0.299, 0.587, 0.114)

CHUNK_PIXELS = 1 << 24  # float pixels of one conversion chunk (64 MB; a few such temporaries at once)


def chunk_images(pixels_in: int, pixels_out: int) -> int:
    """Images converted at a time when each has `pixels_in` values in and `pixels_out` out."""
    return max(1, min(4096, CHUNK_PIXELS // max(pixels_in, pixels_out, 1)))


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [-1, 1] (0 -> -1, 255 -> 1)."""
    return images.to(torch.float32).div_(127.5).sub_(1.0)


def to_unsigned(images: torch.Tensor) -> torch.Tensor:
    """float pixels in [-1, 1] -> uint8; the exact inverse of `to_signed` on its outputs."""
    return images.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def to_uint8_images(array: np.ndarray, *, channels: int, size: int, path: str) -> torch.Tensor:
    """Bring an image array to uint8 (N, channels, size, size); `path` names the field in errors."""
    nchw = as_nchw(array, path)
    scale, offset = _value_range(nchw, path)
    n, c, h, w = nchw.shape
    if nchw.dtype == np.uint8 and c == channels and h == w == size:
        return torch.from_numpy(np.require(nchw, requirements=["C", "W"]))  # already right: no float round-trip
    out = torch.empty((n, channels, size, size), dtype=torch.uint8)
    step = chunk_images(c * h * w, channels * size * size)
    for start in range(0, n, step):
        chunk = torch.from_numpy(np.require(nchw[start:start + step], requirements=["C", "W"]))
        x = chunk.to(torch.float32) * scale + offset  # [0, 1]; never in place: chunk may be the caller's array
        x = _match_channels(x, channels)
        x = _center_crop(x)
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + step] = x.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return out


def as_nchw(array: np.ndarray, path: str) -> np.ndarray:
    """The array as (N, C, H, W), C in 1 or 3 (alpha dropped); ConfigError at `path` for a layout or
    dtype that is not an image array."""
    numeric = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    if array.dtype == np.bool_ or not numeric:
        raise ConfigError(path, f"images must be an integer or float array, got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4:
        last, first = array.shape[3] in (1, 3, 4), array.shape[1] in (1, 3, 4)
        if last and (not first or array.shape[1] == array.shape[2]):
            array = array.transpose(0, 3, 1, 2)
        elif not first:
            raise ConfigError(
                path,
                f"cannot find the channel axis of an array of shape {tuple(array.shape)}; "
                "use (N, H, W), (N, H, W, C) or (N, C, H, W) with C in 1, 3, 4",
            )
    else:
        raise ConfigError(
            path,
            f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got shape {tuple(array.shape)}",
        )
    if array.shape[0] == 0 or array.shape[2] == 0 or array.shape[3] == 0:
        raise ConfigError(path, f"the image array is empty (shape {tuple(array.shape)})")
    if array.shape[1] == 4:
        array = array[:, :3]  # drop alpha
    return array


def _value_range(array: np.ndarray, path: str) -> tuple[float, float]:
    """(scale, offset) that map the array's values onto [0, 1]."""
    if array.dtype == np.uint8:
        return 1.0 / 255.0, 0.0
    lo, hi = float(array.min()), float(array.max())
    if np.issubdtype(array.dtype, np.integer):
        if lo < 0 or hi > 255:
            raise ConfigError(path, f"integer images must lie in [0, 255], found [{lo:g}, {hi:g}]")
        return 1.0 / 255.0, 0.0
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ConfigError(path, "images contain NaN or infinite values")
    tol = 1e-3
    if lo < 0:
        if lo < -1 - tol or hi > 1 + tol:
            raise ConfigError(
                path, f"float images with negative values must lie in [-1, 1], found [{lo:g}, {hi:g}]"
            )
        return 0.5, 0.5
    if hi > 1 + tol:
        raise ConfigError(
            path,
            f"float images must lie in [0, 1] or [-1, 1], found [{lo:g}, {hi:g}]; "
            "store 0..255 pixels as uint8 or divide them by 255",
        )
    return 1.0, 0.0


def _match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    luma = torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * luma).sum(dim=1, keepdim=True)


def _center_crop(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return x[..., top:top + side, left:left + side]
