"""Magnitude-preserving primitives of EDM2 (Karras et al., CVPR 2024, "Analyzing and Improving
the Training Dynamics of Diffusion Models", section 3 and appendix B).

Every layer here keeps unit-variance inputs at about unit variance, so activations and weights
keep their magnitudes through training without normalization layers:

    normalize_weight(w)        each output unit's weights to unit RMS (eps added to the RMS, as EDM2)
    MPConv(cin, cout, k)       conv (k > 0) or linear (k = 0) with the normalized weight times
                               gain / sqrt(fan_in): unit norm per output; no bias; in training mode
                               it also overwrites the stored weight with its normalized self
    mp_silu(x)                 silu(x) / 0.596, whose second moment on N(0, 1) is 1
    mp_sum(a, b, t)            lerp(a, b, t) / sqrt((1-t)^2 + t^2)
    mp_cat(a, b, t)            [a, b] weighted so both parts and the whole keep unit RMS
    pixel_norm(x, dim)         unit RMS along `dim` (the channels)
    MPFourier(n, bandwidth)    sqrt(2) cos(2π f t + φ), random f ~ N(0, bandwidth²), φ ~ U[0, 1)
    clip(x, c)                 clamp activations to [-c, c] (None: leave them)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "EPS",
    "SILU_RMS",
    "normalize_weight",
    "pixel_norm",
    "mp_silu",
    "mp_sum",
    "mp_cat",
    "clip",
    "MPConv",
    "MPFourier",
]

EPS = 1e-4  # EDM2: added to the RMS of what is normalized, not to its square
SILU_RMS = 0.596  # sqrt(E[silu(x)^2]) for x ~ N(0, 1), rounded as EDM2 rounds it


def _unit_rms(x: torch.Tensor, dims: list[int], eps: float) -> torch.Tensor:
    # x / (eps + rms over dims); the RMS is computed in float32 whatever x's dtype.
    n = math.prod(x.shape[d] for d in dims)
    rms = torch.linalg.vector_norm(x, dim=dims, keepdim=True, dtype=torch.float32) / math.sqrt(n)
    return x / (rms + eps).to(x.dtype)


def normalize_weight(w: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Each output unit's weights (all dims but the first) scaled to unit RMS: norm sqrt(fan_in)."""
    return _unit_rms(w, list(range(1, w.ndim)), eps)


def pixel_norm(x: torch.Tensor, dim: int = 1, eps: float = EPS) -> torch.Tensor:
    """x scaled to unit RMS along `dim` (EDM2's pixel norm over channels, or over a head's channels)."""
    return _unit_rms(x, [dim % x.ndim], eps)


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU divided by its RMS on standard normal input."""
    return F.silu(x) / SILU_RMS


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = 0.5) -> torch.Tensor:
    """(1-t)·a + t·b, rescaled so that uncorrelated unit-variance a and b give unit variance."""
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t ** 2)


def mp_cat(a: torch.Tensor, b: torch.Tensor, t: float = 0.5, dim: int = 1) -> torch.Tensor:
    """Concatenate a and b along `dim` with weights (1-t) and t on their parts, so that the result
    has unit RMS when a and b do, whatever their widths (EDM2 eq. 103)."""
    na, nb = a.shape[dim], b.shape[dim]
    scale = math.sqrt((na + nb) / ((1 - t) ** 2 + t ** 2))
    return torch.cat([a * (scale * (1 - t) / math.sqrt(na)), b * (scale * t / math.sqrt(nb))], dim=dim)


def clip(x: torch.Tensor, limit: float | None) -> torch.Tensor:
    """Clamp activations to [-limit, limit]; None leaves them as they are."""
    return x if limit is None else x.clamp(-limit, limit)


class MPConv(nn.Module):
    """A bias-free conv (`kernel` > 0) or linear layer (`kernel` = 0) whose effective weight is
    normalize_weight(w) · gain / sqrt(fan_in), which has norm `gain` per output unit.

    With `forced` (EDM2's forced weight normalization), each forward pass in training mode first
    overwrites the stored weight with normalize_weight(w), so the raw weights cannot grow and the
    effective learning rate does not decay; evaluation leaves the stored weight alone.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, forced: bool = True):
        super().__init__()
        shape = (out_channels, in_channels, kernel, kernel) if kernel else (out_channels, in_channels)
        self.weight = nn.Parameter(torch.randn(shape))  # EDM2 draws N(0, 1); only the direction matters
        self.forced = forced

    def effective_weight(self, gain: float | torch.Tensor = 1.0) -> torch.Tensor:
        """The weight the forward pass applies (float32)."""
        w = self.weight.float()
        if self.training and self.forced:
            with torch.no_grad():
                self.weight.copy_(normalize_weight(w))
        fan_in = w[0].numel()
        return normalize_weight(w) * (gain / math.sqrt(fan_in))

    def forward(self, x: torch.Tensor, gain: float | torch.Tensor = 1.0) -> torch.Tensor:
        # conv: (B, Cin, H, W) -> (B, Cout, H, W); linear: (..., Cin) -> (..., Cout)
        w = self.effective_weight(gain).to(x.dtype)
        if w.ndim == 2:
            return x @ w.t()
        return F.conv2d(x, w, padding=w.shape[-1] // 2)

    def extra_repr(self) -> str:
        out, cin = self.weight.shape[:2]
        kernel = f", kernel={self.weight.shape[-1]}" if self.weight.ndim == 4 else ""
        return f"{cin}, {out}{kernel}, forced={self.forced}"


class MPFourier(nn.Module):
    """Random Fourier features with unit RMS: sqrt(2) cos(2π (f · t·input_scale + φ)),
    f ~ N(0, bandwidth²) and φ ~ U[0, 1) fixed at construction (buffers, not parameters)."""

    def __init__(self, channels: int, bandwidth: float = 1.0, input_scale: float = 1.0):
        super().__init__()
        self.register_buffer("freqs", 2 * math.pi * bandwidth * torch.randn(channels))
        self.register_buffer("phases", 2 * math.pi * torch.rand(channels))
        self.input_scale = input_scale

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # t: (B,) -> (B, channels), computed in float32
        args = torch.outer(t.float() * self.input_scale, self.freqs.float()) + self.phases.float()
        return args.cos() * math.sqrt(2)
