"""EDM-SongUNet's parts (DDPM++ / NCSN++): FIR resampling and the progressive paths.

    FIRResample(taps, "down")     # depthwise stride-2 FIR conv; [1, 1] is avg-pool
    FIRResample(taps, "up")       # transposed depthwise FIR conv (x4); [1, 1] is nearest
    InputPath(kind, aux, width, taps)   # encoder_type skip / residual, after a level's downsample

The filter follows the StyleGAN / EDM convention: the outer product of the taps, divided by the
square of their sum, so a constant image stays constant. Down pads (len - 1) // 2 pixels on each
side; up doubles with a transposed conv of the filter times 4 and crops the same. A box filter
([c, c]) takes the exact avg-pool / nearest fast path, which is what res blocks ran before
resample_filter existed. The progressive output path (decoder_type: skip) is a head per level,
built by `archsearch.nn.unet`, joined through `FIRResample(taps, "up")`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..plan import is_box_filter

__all__ = ["FIRResample", "InputPath", "fir_kernel"]


def fir_kernel(taps) -> torch.Tensor:
    """The (k, k) filter: outer(taps, taps) / sum(taps)**2."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    return torch.outer(f, f) / f.sum().square()


class FIRResample(nn.Module):
    """Halve or double the resolution with a FIR filter, channel by channel (no parameters)."""

    def __init__(self, taps, direction: str):  # direction: "down" | "up"
        super().__init__()
        self.direction = direction
        self.box = is_box_filter(taps)
        self.pad = (len(taps) - 1) // 2
        if not self.box:  # not in the state dict: it is fixed by the config
            self.register_buffer("kernel", fir_kernel(taps)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, C, H/2, W/2) down, (B, C, 2H, 2W) up
        if self.box:
            return F.avg_pool2d(x, 2) if self.direction == "down" else F.interpolate(x, scale_factor=2.0, mode="nearest")
        c = x.shape[1]
        k = self.kernel.to(x.dtype)
        if self.direction == "down":
            return F.conv2d(x, k.expand(c, 1, -1, -1), stride=2, padding=self.pad, groups=c)
        return F.conv_transpose2d(x, (4 * k).expand(c, 1, -1, -1), stride=2, padding=self.pad, groups=c)

    def extra_repr(self) -> str:
        return f"{self.direction}, box" if self.box else f"{self.direction}, {tuple(self.kernel.shape[-2:])}"


class InputPath(nn.Module):
    """The progressive input path at one level (EDM-SongUNet encoder_type, score-SDE
    progressive_input), joined to h right after the downsample into this level.

    skip (input_skip):    aux = down(aux);  h = h + conv1x1(aux)           aux: the image, downsampled
    residual (NCSN++):    h = (h + down(conv3x3(aux))) / sqrt(2);  aux = h  aux: the previous level's input

    The residual path's conv runs before the filter at the higher resolution (EDM's fused
    resample): it pads 1 + (len - 1) // 2 and the filter runs unpadded, and its bias is added last.
    """

    def __init__(self, kind: str, aux_channels: int, channels: int, taps):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(aux_channels, channels, 1 if kind == "skip" else 3)
        self.down = FIRResample(taps, "down")
        self.conv_pad = 1 + self.down.pad

    def forward(self, h: torch.Tensor, aux: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # h: (B, C, H, W) after the downsample; aux: (B, C_aux, 2H, 2W) -> (new h, new aux)
        if self.kind == "skip":
            aux = self.down(aux)
            return h + self.conv(aux), aux
        a = F.conv2d(aux, self.conv.weight, padding=self.conv_pad)  # (B, C, 2H + 2 pad, ...)
        if self.down.box:
            a = F.avg_pool2d(a, 2)
        else:
            c = a.shape[1]
            a = F.conv2d(a, self.down.kernel.to(a.dtype).expand(c, 1, -1, -1), stride=2, groups=c)
        h = (h + (a + self.conv.bias.to(a.dtype)[None, :, None, None])) / math.sqrt(2)
        return h, h
