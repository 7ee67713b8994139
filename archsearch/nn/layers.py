"""The building blocks of an archsearch U-Net: res block, attention, resampling, embeddings.

Modules take plain arguments (channels, a norm factory, an activation name), never config
objects, so they can be reused and tested alone. `archsearch.nn.unet` wires them from a plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..plan import is_box_filter
from .song import FIRResample

__all__ = [
    "ACTIVATIONS",
    "NormFactory",
    "ResBlock",
    "AttentionBlock",
    "Downsample",
    "Upsample",
    "SinusoidalEncoding",
    "FourierEncoding",
    "LearnedEncoding",
    "make_encoding",
    "scaled_one_hot",
    "zero_",
]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "mish": nn.Mish,
}

NormFactory = Callable[[int], nn.Module]  # channels -> norm layer (GroupNorm or Identity)

_INV_SQRT2 = 1 / math.sqrt(2)


def zero_(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters in place (DDPM/ADM's zero_module) and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """A residual block conditioned on the timestep embedding.

    order="pre" (DDPM, ADM, EDM):   norm -> act -> [resample] -> conv1 -> +emb / AdaGN -> act -> dropout -> conv2
    order="post" (the seed):        [resample] -> conv1 -> act -> norm1 -> +emb / AdaGN -> dropout -> conv2 -> act -> norm2
    The residual path is resampled the same way (BigGAN up/down blocks) and projected when
    the width changes; the sum is divided by sqrt(2) when `rescale`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        norm: NormFactory,
        activation: str = "silu",
        order: str = "pre",  # "pre" | "post"
        dropout: float = 0.0,
        scale_shift: bool = False,  # AdaGN: norm(h) * (1 + s) + b instead of h + emb
        time_activation: bool = True,  # act(emb) before the projection (DDPM/ADM)
        rescale: bool = False,  # (x + h) / sqrt(2)
        shortcut: str = "conv1x1",  # "conv1x1" | "conv3x3", used when widths differ
        resample: str | None = None,  # None | "down" | "up"
        zero_init: bool = True,
        resample_filter: tuple[int, ...] = (1, 1),  # FIR taps of the resampling; (1, 1): avg-pool / nearest
        resample_projection: bool = False,  # a shortcut conv on resampling blocks even at equal widths (EDM)
    ):
        super().__init__()
        self.pre = order == "pre"
        self.scale_shift = scale_shift
        self.rescale = rescale
        self.resample = resample
        self.norm1 = norm(in_channels if self.pre else out_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_act = ACTIVATIONS[activation]() if time_activation else nn.Identity()
        self.emb_proj = nn.Linear(emb_channels, out_channels * (2 if scale_shift else 1))
        self.norm2 = norm(out_channels)
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if zero_init:
            zero_(self.conv2)
        if in_channels == out_channels and not (resample_projection and resample):
            self.shortcut = nn.Identity()
        elif shortcut == "conv3x3":
            self.shortcut = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        else:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1)
        self.fir = FIRResample(resample_filter, resample) if resample and not is_box_filter(resample_filter) else None

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir is not None:
            return self.fir(x)
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def _inject(self, h: torch.Tensor, emb: torch.Tensor, norm: nn.Module | None) -> torch.Tensor:
        # add: norm(h + e); scale_shift (AdaGN): norm(h) * (1 + s) + b. Post-order blocks have
        # normalized h already and pass norm=None.
        e = self.emb_proj(self.emb_act(emb))[:, :, None, None]  # (B, C or 2C, 1, 1)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = norm(h) if norm is not None else h
            return h * (1 + scale) + shift
        return norm(h + e) if norm is not None else h + e

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # x: (B, Cin, H, W), emb: (B, E) -> (B, Cout, H', W')
        if self.pre:
            h = self.act(self.norm1(x))
            h, x = self._resample(h), self._resample(x)
            h = self.conv1(h)
            h = self.act(self._inject(h, emb, self.norm2))  # GN(h + e) or GN(h)(1+s)+b
            h = self.conv2(self.dropout(h))
        else:
            x = self._resample(x)
            h = self.norm1(self.act(self.conv1(x)))
            h = self._inject(h, emb, None)
            h = self.norm2(self.act(self.conv2(self.dropout(h))))
        out = self.shortcut(x) + h
        return out * _INV_SQRT2 if self.rescale else out


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels, with a residual connection.

    q, k, v come from one 1x1 conv whose 3·C outputs are read in one of guided-diffusion's two
    orders: "new" chunks them into q, k, v and then splits each into heads (QKVAttention);
    "legacy" splits them into heads first, each head holding its own [q k v]
    (QKVAttentionLegacy). The product is computed by scaled_dot_product_attention, which picks a
    fused kernel on each device.
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        *,
        norm: NormFactory,
        qkv_bias: bool = True,
        qkv_order: str = "new",  # "new" | "legacy"
        rescale: bool = False,
        zero_init: bool = True,
    ):
        super().__init__()
        self.heads = heads
        self.legacy = qkv_order == "legacy"
        self.rescale = rescale
        self.norm = norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=qkv_bias)
        self.proj = nn.Conv2d(channels, channels, 1)
        if zero_init:
            zero_(self.proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        d = C // self.heads
        # The 1x1 convs run as matmuls over pixel tokens: (B, HW, C) @ W^T. This keeps q, k, v
        # contiguous in their last dimension, which SDPA's fused CPU and CUDA kernels need.
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        qkv = F.linear(tokens, self.qkv.weight.flatten(1), self.qkv.bias)  # (B, HW, 3C)
        if self.legacy:  # channels as (heads, 3, d)
            q, k, v = qkv.view(B, H * W, self.heads, 3, d).permute(3, 0, 2, 1, 4)  # each (B, heads, HW, d)
        else:  # channels as (3, heads, d)
            q, k, v = qkv.view(B, H * W, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, d)
        h = F.linear(h.transpose(1, 2).reshape(B, H * W, C), self.proj.weight.flatten(1), self.proj.bias)
        out = x + h.transpose(1, 2).reshape(B, C, H, W)
        return out * _INV_SQRT2 if self.rescale else out


class Downsample(nn.Module):
    """Halve the resolution: max-pool (seed), avg-pool, or a strided 3x3 conv ('SAME' = TF padding)."""

    def __init__(self, channels: int, kind: str, padding: str = "symmetric"):
        super().__init__()
        self.kind = kind
        self.same = padding == "same"
        if kind == "conv":
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0 if self.same else 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "maxpool":
            return F.max_pool2d(x, 2)
        if self.kind == "avgpool":
            return F.avg_pool2d(x, 2)
        if self.same:
            x = F.pad(x, (0, 1, 0, 1))  # TF 'SAME' for stride 2: pad right and bottom only
        return self.conv(x)

    def extra_repr(self) -> str:
        return f"kind={self.kind}" + (", padding=same" if self.same else "")


class Upsample(nn.Module):
    """Double the resolution: nearest (seed), nearest + 3x3 conv (DDPM/ADM), or a transposed conv."""

    def __init__(self, channels: int, kind: str):
        super().__init__()
        self.kind = kind
        if kind == "nearest_conv":
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        elif kind == "transposed":
            self.conv = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "transposed":
            return self.conv(x)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.kind == "nearest_conv" else x

    def extra_repr(self) -> str:
        return f"kind={self.kind}"


class SinusoidalEncoding(nn.Module):
    """Transformer-style encoding of t. freq_i = exp(-ln(max_period) * i / (half - freq_shift));
    [sin, cos] or, with flip_sin_to_cos, [cos, sin]. (DDPM: shift 1, no flip; ADM: shift 0, flip.)"""

    def __init__(self, dim: int, flip_sin_to_cos: bool = False, freq_shift: int = 1, max_period: float = 10000.0):
        super().__init__()
        half = dim // 2
        exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32) / (half - freq_shift)
        self.register_buffer("freqs", torch.exp(exponent), persistent=False)
        self.flip = flip_sin_to_cos

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.float()[:, None] * self.freqs[None, :]  # (B, half)
        sin, cos = torch.sin(args), torch.cos(args)
        return torch.cat([cos, sin] if self.flip else [sin, cos], dim=-1)


class FourierEncoding(nn.Module):
    """Random Fourier features (score-SDE, EDM): [sin, cos](2π · t·input_scale · f), f ~ N(0, scale²).
    The frequencies are a buffer (EDM), not parameters."""

    def __init__(self, dim: int, scale: float = 16.0, input_scale: float = 1e-3):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)
        self.input_scale = input_scale

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = (2 * math.pi * self.input_scale) * t.float()[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class LearnedEncoding(nn.Module):
    """A learned table indexed by the integer timestep (diffusers time_embedding_type='learned')."""

    def __init__(self, dim: int, num_timesteps: int):
        super().__init__()
        self.table = nn.Embedding(num_timesteps, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.table(t.long().clamp(0, self.table.num_embeddings - 1))


def make_encoding(encoding, dim: int) -> nn.Module:
    """The module of an `embedding.encoding` config (sinusoidal, Fourier, EDM2's MP Fourier, learned)."""
    if encoding.kind == "sinusoidal":
        return SinusoidalEncoding(dim, encoding.flip_sin_to_cos, encoding.freq_shift, encoding.max_period)
    if encoding.kind == "fourier":
        return FourierEncoding(dim, encoding.scale, encoding.input_scale)
    if encoding.kind == "mp_fourier":
        from .mp import MPFourier

        return MPFourier(dim, encoding.bandwidth, encoding.input_scale)
    return LearnedEncoding(dim, encoding.num_timesteps)


def scaled_one_hot(labels: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    """EDM's and EDM2's label input: one_hot(label) * sqrt(n), (B, n) in `like`'s dtype; a negative
    label, or none at all, is the zero vector."""
    if labels is None:
        return like.new_zeros(like.shape[0], n)
    keep = (labels >= 0).unsqueeze(-1).to(like.dtype)
    return F.one_hot(labels.long().clamp(min=0), n).to(like.dtype) * keep * math.sqrt(n)
