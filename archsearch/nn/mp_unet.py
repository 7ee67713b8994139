"""EDM2's magnitude-preserving U-Net (`block.kind: mp`), built from the same `UNetPlan` as
`archsearch.nn.unet.UNet` and with the same module names, so reports and state dicts read alike:

    emb = mp_silu(mp_sum(MPConv(encoding(t)), MPConv(one_hot(label) · sqrt(N)), label_balance))
    h   = stem([x, 1])                                   an MP conv; the ones channel with input_ones
    encoder blocks ('enc' flavour), down, middle and decoder blocks ('dec' flavour), up
    out = head(h, gain)                                  an MP conv times a learned gain (zero at init)

An encoder block resamples its input, maps it to its width with the 1x1 shortcut and pixel-
normalizes it before the residual branch; a decoder (and middle) block runs the residual branch
on its input as it comes and maps the main path afterwards. Both sum the branches with mp_sum
and clip their output (after the attention, when one follows the block). Skips join with mp_cat
(concat) or mp_sum (add). See Karras et al. (2024), Fig. 21, and archsearch.nn.mp.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..plan import BlockPlan, UNetPlan
from .layers import Downsample, Upsample, make_encoding, scaled_one_hot
from .mp import MPConv, clip, mp_cat, mp_silu, mp_sum, pixel_norm
from .song import FIRResample
from .unet import Stage

__all__ = ["MPBlock", "MPAttention", "MPEmbedding", "MPHead", "MPUNet", "mp_join"]


class MPBlock(nn.Module):
    """EDM2's residual block. flavour "enc": resample -> [1x1 shortcut] -> [pixel norm] -> x, and
    the residual branch runs at the output width; "dec": the residual branch runs on the input
    and the shortcut maps x at the end. Residual branch: conv3x3(mp_silu(x)) · (1 + gain ·
    W·emb) -> mp_silu -> dropout -> conv3x3; out = clip(mp_sum(x, branch, res_balance))."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        flavour: str = "enc",  # "enc" | "dec"
        resample: str | None = None,  # None | "down" | "up"
        resample_filter=(1, 1),  # EDM2's [1, 1]: 2x2 average down, nearest up
        dropout: float = 0.0,
        res_balance: float = 0.3,
        clip_value: float | None = 256.0,  # None: no clipping (the attention after the block clips)
        use_pixel_norm: bool = True,  # "enc" flavour only
        forced: bool = True,  # forced weight normalization of every MPConv
        zero_init: bool = True,  # the embedding gain starts at 0 (EDM2), else 1
    ):
        super().__init__()
        self.enc = flavour == "enc"
        self.resample = FIRResample(resample_filter, resample) if resample else None
        self.res_balance = res_balance
        self.clip_value = clip_value
        self.use_pixel_norm = use_pixel_norm and self.enc
        self.conv1 = MPConv(out_channels if self.enc else in_channels, out_channels, 3, forced)
        self.emb_proj = MPConv(emb_channels, out_channels, 0, forced)
        self.emb_gain = nn.Parameter(torch.zeros([]) if zero_init else torch.ones([]))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = MPConv(out_channels, out_channels, 3, forced)
        self.shortcut = MPConv(in_channels, out_channels, 1, forced) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # x: (B, Cin, H, W), emb: (B, E) -> (B, Cout, H', W')
        if self.resample is not None:
            x = self.resample(x)
        if self.enc and self.shortcut is not None:
            x = self.shortcut(x)
        if self.use_pixel_norm:
            x = pixel_norm(x, dim=1)
        y = self.conv1(mp_silu(x))
        scale = self.emb_proj(emb, gain=self.emb_gain) + 1  # (B, Cout)
        y = mp_silu(y * scale[:, :, None, None].to(y.dtype))
        y = self.conv2(self.dropout(y))
        if not self.enc and self.shortcut is not None:
            x = self.shortcut(x)
        return clip(mp_sum(x, y, self.res_balance), self.clip_value)


class MPAttention(nn.Module):
    """Self-attention with pixel-normalized q, k, v per head (EDM2): bias-free MP 1x1 convs,
    x <- clip(mp_sum(x, proj(attention), balance)). The fused qkv's 3·C channels split as
    `qkv_order` says (new: [q | k | v], then heads; legacy: per head [q k v])."""

    def __init__(self, channels: int, heads: int, *, balance: float = 0.3, qkv_pixel_norm: bool = True,
                 qkv_order: str = "new", clip_value: float | None = 256.0, forced: bool = True):
        super().__init__()
        self.heads = heads
        self.balance = balance
        self.qkv_pixel_norm = qkv_pixel_norm
        self.legacy = qkv_order == "legacy"
        self.clip_value = clip_value
        self.qkv = MPConv(channels, 3 * channels, 1, forced)
        self.proj = MPConv(channels, channels, 1, forced)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        d = C // self.heads
        qkv = self.qkv(x).flatten(2).transpose(1, 2)  # (B, HW, 3C)
        if self.legacy:
            q, k, v = qkv.reshape(B, H * W, self.heads, 3, d).permute(3, 0, 2, 1, 4)  # each (B, heads, HW, d)
        else:
            q, k, v = qkv.reshape(B, H * W, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        if self.qkv_pixel_norm:
            q, k, v = (pixel_norm(z, dim=-1) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, d)
        y = y.transpose(1, 2).reshape(B, H * W, C).transpose(1, 2).reshape(B, C, H, W)
        return clip(mp_sum(x, self.proj(y), self.balance), self.clip_value)


class MPEmbedding(nn.Module):
    """t -> encoding -> MP linear; with classes, mp_sum with an MP linear of the scaled one-hot
    label (a negative label or none: a zero vector); then mp_silu. One layer, as EDM2."""

    def __init__(self, plan: UNetPlan):
        super().__init__()
        cfg = plan.config
        dim, forced = plan.embedding_dim, cfg.block.forced_weight_norm
        self.encoding = make_encoding(cfg.embedding.encoding, dim)
        self.noise = MPConv(dim, plan.embedding_out_dim, 0, forced)
        self.num_classes = cfg.num_classes or 0
        self.classes = MPConv(self.num_classes, plan.embedding_out_dim, 0, forced) if self.num_classes else None
        self.label_balance = cfg.block.label_balance

    def forward(self, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.noise(self.encoding(t))  # (B, E)
        if self.classes is not None:
            one_hot = scaled_one_hot(class_labels, self.num_classes, emb)
            emb = mp_sum(emb, self.classes(one_hot), self.label_balance)
        return mp_silu(emb)


class MPHead(nn.Module):
    """An MP conv (3x3 or 1x1) scaled by a learned gain, zero at init with zero_init (EDM2's out_gain)."""

    def __init__(self, channels: int, out_channels: int, kernel: int, forced: bool, zero_init: bool):
        super().__init__()
        self.conv = MPConv(channels, out_channels, kernel, forced)
        self.gain = nn.Parameter(torch.zeros([]) if zero_init else torch.ones([]))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(h, gain=self.gain)


def mp_join(h: torch.Tensor, skip: torch.Tensor, mode: str, balance: float = 0.5) -> torch.Tensor:
    """A decoder block's input under mp: mp_cat for concat skips, mp_sum for add ones (skip_balance)."""
    return mp_cat(h, skip, balance) if mode == "concat" else mp_sum(h, skip, balance)


def _mp_block_options(b: BlockPlan) -> dict:
    # A block followed by attention leaves the clipping to the attention (EDM2 clips once, last).
    return {"dropout": b.dropout, "attended": bool(b.attention_heads)}


class MPUNet(nn.Module):
    """EDM2's U-Net over a plan whose config has `block.kind: mp`; see the module docstring."""

    def __init__(self, plan: UNetPlan):
        super().__init__()
        cfg = plan.config
        self.plan, self.config = plan, cfg
        blk, forced = cfg.block, cfg.block.forced_weight_norm

        def make_block(cin: int, cout: int, attended: bool = False, flavour: str = "dec", resample: str | None = None,
                       dropout: float = blk.dropout):
            return MPBlock(cin, cout, plan.embedding_out_dim, flavour=flavour, resample=resample,
                           resample_filter=tuple(cfg.resample_filter), dropout=dropout,
                           res_balance=blk.res_balance, clip_value=None if attended else blk.clip,
                           use_pixel_norm=blk.pixel_norm, forced=forced, zero_init=cfg.zero_init)

        make_attention = partial(MPAttention, balance=blk.attn_balance, qkv_pixel_norm=blk.qkv_pixel_norm,
                                 qkv_order=cfg.attention.qkv_order, clip_value=blk.clip, forced=forced)

        def make_down(ch: int, dropout: float = blk.dropout) -> nn.Module:
            if cfg.down.kind == "resblock":
                return make_block(ch, ch, flavour="enc", resample="down", dropout=dropout)
            return Downsample(ch, cfg.down.kind)

        def make_up(ch: int, dropout: float = blk.dropout) -> nn.Module:
            if cfg.up.kind == "resblock":
                return make_block(ch, ch, flavour="dec", resample="up", dropout=dropout)
            return Upsample(ch, cfg.up.kind)

        self.embedding = MPEmbedding(plan)
        self.input_ones = blk.input_ones
        self.stem = MPConv(cfg.in_channels + int(blk.input_ones), plan.stem_channels, 3, forced)
        self.tap_stem = plan.tap_stem
        stage = partial(Stage, make_attention=make_attention, block_options=_mp_block_options,
                        make_projection=lambda cin, cout: MPConv(cin, cout, 1, forced),
                        join=partial(mp_join, balance=blk.skip_balance))
        self.encoder, self.decoder = nn.ModuleList(), nn.ModuleList()
        for lv in plan.levels:
            self.encoder.append(stage(lv.encoder, partial(make_block, flavour="enc"),
                                      make_resample=partial(make_down, lv.down_channels, lv.dropout) if lv.down_channels else None,
                                      tap_after_blocks=lv.tap_after_blocks, tap_after_resample=lv.tap_after_down))
            self.decoder.append(stage(lv.decoder, make_block,
                                      make_resample=partial(make_up, lv.up_channels, lv.dropout) if lv.up_channels else None))
        lone = (plan.middle_channels, plan.middle_attention_heads) if not plan.middle else (0, 0)
        self.middle = stage(plan.middle, make_block,
                            make_resample=partial(make_up, plan.middle_channels) if cfg.middle.downsample else None,
                            lone_attention=lone)
        self.head = MPHead(plan.head_in_channels, plan.out_channels, 1 if cfg.head == "conv1x1" else 3, forced, cfg.zero_init)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, C_in, H, W) noisy images; t: (B,) timesteps; class_labels: (B,) ints or None
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = self.embedding(t, class_labels)  # (B, E)
        if self.input_ones:
            x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # (B, C_in + 1, H, W)
        h = self.stem(x)  # (B, C0, H, W)
        skips = [h] if self.tap_stem else []
        for stage in self.encoder:
            h = stage.encode(h, emb, skips)
        h = self.middle(h, emb)
        for stage in reversed(self.decoder):
            h = stage.decode(h, emb, skips)
        return self.head(h)  # (B, C_out, H, W)

