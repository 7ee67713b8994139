"""A transformer middle for the U-Net (`middle.kind: transformer`): U-ViT and simple diffusion.

U-ViT (Bao et al. 2023) treats the noisy image, the time and the class as tokens of one ViT;
simple diffusion (Hoogeboom et al. 2023) keeps convolutional levels at the high resolutions and
hands the 16x16 map to a stack of transformer blocks. This module is that stack, run where the
res-block middle would run: one token per pixel of the lowest resolution,

    map (B, C, H, W) -> tokens (B, HW, C) -> [linear C -> D] -> (+ emb | [emb; tokens]) -> [+ pos]
      -> depth x Block -> LayerNorm -> linear D -> C -> map + that  (B, C, H, W) [-> upsample]

A Block is pre-norm: x + attn(LN(x)), then x + mlp(LN(x)), the MLP D -> hidden -> D with GELU.
With zero_init the attention's and the MLP's output projections and the final projection start
at zero, so every block and the middle as a whole start as the identity (as ADM's zero-initialized
res blocks do). Submodules: `middle.proj_in`, `middle.pos`, `middle.emb_proj`,
`middle.blocks.{j}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `middle.norm`,
`middle.proj_out`, `middle.resample`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..plan import TransformerPlan
from .layers import zero_

__all__ = ["TransformerBlock", "TransformerMiddle"]


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens with scaled_dot_product_attention; q, k, v from one
    linear whose 3·D outputs are [q | k | v], each split into heads."""

    def __init__(self, width: int, heads: int, *, qkv_bias: bool = True, dropout: float = 0.0, zero_init: bool = True):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.proj = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if zero_init:
            zero_(self.proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # each (B, heads, N, d)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d)
        return self.drop(self.proj(h.transpose(1, 2).reshape(B, N, D)))


class MLP(nn.Module):
    """D -> hidden -> GELU -> D, with dropout after the activation and the output (ViT)."""

    def __init__(self, width: int, hidden: int, *, dropout: float = 0.0, zero_init: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if zero_init:
            zero_(self.fc2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)); x + mlp(LN(x))."""

    def __init__(self, width: int, heads: int, mlp_channels: int, *, qkv_bias: bool = True, dropout: float = 0.0,
                 zero_init: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, qkv_bias=qkv_bias, dropout=dropout, zero_init=zero_init)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_channels, dropout=dropout, zero_init=zero_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, N, D) -> (B, N, D)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerMiddle(nn.Module):
    """The U-Net's middle as a transformer over the map's pixels; see the module docstring.

    `emb_channels` is the width of the U-Net's time (+ class) embedding; `emb_act` is applied to
    it before its projection (the res blocks' time_activation convention); `resample` (or None)
    runs after the transformer (middle.downsample: the upsample back to the last level).
    """

    def __init__(self, plan: TransformerPlan, emb_channels: int, *, emb_act: nn.Module, qkv_bias: bool = True,
                 zero_init: bool = True, resample: nn.Module | None = None):
        super().__init__()
        C, D = plan.channels, plan.width
        self.time = plan.time
        self.proj_in = nn.Linear(C, D) if plan.project_in else None
        self.pos = nn.Parameter(torch.empty(1, plan.tokens, D)) if plan.pos_embedding else None
        if self.pos is not None:
            nn.init.trunc_normal_(self.pos, std=0.02)
        self.emb_act = emb_act
        self.emb_proj = nn.Linear(emb_channels, D)
        self.blocks = nn.ModuleList(
            TransformerBlock(D, plan.heads, plan.mlp_channels, qkv_bias=qkv_bias, dropout=plan.dropout, zero_init=zero_init)
            for _ in range(plan.depth)
        )
        self.norm = nn.LayerNorm(D)
        self.proj_out = nn.Linear(D, C)
        if zero_init:
            zero_(self.proj_out)
        self.resample = resample

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # h: (B, C, H, W), emb: (B, E) -> (B, C, H', W') (H' = 2H with a resample, else H)
        B, C, H, W = h.shape
        x = h.flatten(2).transpose(1, 2)  # (B, HW, C)
        if self.proj_in is not None:
            x = self.proj_in(x)  # (B, HW, D)
        e = self.emb_proj(self.emb_act(emb))[:, None, :]  # (B, 1, D)
        x = torch.cat([e, x], dim=1) if self.time == "token" else x + e  # (B, N, D)
        if self.pos is not None:
            x = x + self.pos
        for block in self.blocks:
            x = block(x)
        if self.time == "token":
            x = x[:, 1:]  # the embedding token is dropped; the pixels go back to the map
        out = h + self.proj_out(self.norm(x)).transpose(1, 2).reshape(B, C, H, W)
        return self.resample(out, emb) if self.resample is not None else out
