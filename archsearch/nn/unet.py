"""The U-Net built from a `UNetPlan`.

    model = build_unet(config)              # or UNet(plan_unet(config))
    eps = model(x, t, class_labels=None)    # x: (B, C, H, W), t: (B,) timesteps -> (B, C_out, H, W)

Module names follow the config, so a state dict reads like the architecture:
`encoder.1.blocks.0.conv1.weight` is the first res block of `levels.1`,
`decoder.1.attentions.2.qkv.weight` the attention after its third decoder block,
`middle.attention.proj.weight`, `embedding.mlp.0.weight`, `head.conv.weight`; a transformer
middle's are `middle.blocks.3.attn.qkv.weight` and the like (archsearch.nn.transformer); the progressive
paths of EDM-SongUNet are `encoder_aux.1.conv.weight` (encoder_type, joined after the downsample
into level 1) and `decoder_aux.1.conv.weight` (decoder_type: skip, level 1's own head).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..plan import BlockPlan, UNetPlan, norm_groups, plan_unet
from ..schema.unet import GroupNorm, UNetConfig
from .layers import (
    ACTIVATIONS,
    AttentionBlock,
    Downsample,
    ResBlock,
    Upsample,
    make_encoding,
    scaled_one_hot,
    zero_,
)
from .transformer import TransformerMiddle
from .song import FIRResample, InputPath

if TYPE_CHECKING:
    from .mp_unet import MPUNet

__all__ = ["UNet", "build_unet", "meta_unet"]


def build_unet(config: UNetConfig | dict) -> UNet | MPUNet:
    """Build the torch model a config describes (validating and planning it first); block.kind mp
    builds EDM2's magnitude-preserving network (archsearch.nn.mp_unet)."""
    if not isinstance(config, UNetConfig):
        config = UNetConfig.model_validate(config)
    if config.block.kind == "mp":
        from .mp_unet import MPUNet

        return MPUNet(plan_unet(config))
    return UNet(plan_unet(config))


def meta_unet(config: UNetConfig | dict) -> UNet | MPUNet:
    """The same network on the 'meta' device: every shape and parameter, no memory, no math."""
    with torch.device("meta"):
        return build_unet(config)


class TimeEmbedding(nn.Module):
    """t -> encoding -> Linear -> act -> Linear [-> act]; plus a class embedding when conditional."""

    def __init__(self, plan: UNetPlan):
        super().__init__()
        cfg = plan.config
        dim = plan.embedding_dim
        self.encoding = make_encoding(cfg.embedding.encoding, dim)
        act = ACTIVATIONS[cfg.block.activation]
        self.mlp = nn.Sequential(
            nn.Linear(dim, plan.embedding_hidden_dim),
            act(),
            nn.Linear(plan.embedding_hidden_dim, plan.embedding_out_dim),
        )
        by_table = bool(cfg.num_classes) and cfg.embedding.class_input == "table"
        self.classes = nn.Embedding(cfg.num_classes, plan.embedding_out_dim) if by_table else None
        self.post_act = act() if cfg.embedding.post_activation else nn.Identity()
        augment = cfg.embedding.augment_dim  # EDM's map_augment: labels -> the raw encoding
        self.augment = nn.Linear(augment, dim, bias=False) if augment else None
        # EDM-SongUNet's map_label: the scaled one-hot label -> the raw encoding (class_input: linear)
        by_linear = bool(cfg.num_classes) and cfg.embedding.class_input == "linear"
        self.class_linear = nn.Linear(cfg.num_classes, dim) if by_linear else None

    def forward(self, t: torch.Tensor, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        enc = self.encoding(t)  # (B, dim)
        if self.class_linear is not None:
            enc = enc + self.class_linear(scaled_one_hot(class_labels, self.class_linear.in_features, enc))
        if self.augment is not None and augment_labels is not None:
            enc = enc + self.augment(augment_labels.to(enc.dtype))
        emb = self.mlp(enc)  # (B, E)
        if self.classes is not None and class_labels is not None:
            # A negative label means "no label" (dropped for classifier-free guidance).
            keep = (class_labels >= 0).unsqueeze(-1).to(emb.dtype)
            emb = emb + self.classes(class_labels.clamp(min=0)) * keep
        return self.post_act(emb)


class Head(nn.Module):
    """norm -> act -> conv3x3 (DDPM/ADM), or a bare 3x3 / 1x1 conv (seed)."""

    def __init__(self, plan: UNetPlan, norm, channels: int | None = None):
        """`channels`: h's width when it is not the top level's (decoder_type: skip's heads)."""
        super().__init__()
        cfg, ch = plan.config, channels or plan.head_in_channels
        with_norm = cfg.head == "norm_act_conv3x3"
        self.norm = norm(ch) if with_norm else nn.Identity()
        self.act = ACTIVATIONS[cfg.block.activation]() if with_norm else nn.Identity()
        kernel = 1 if cfg.head == "conv1x1" else 3
        self.conv = nn.Conv2d(ch, plan.out_channels, kernel, padding=kernel // 2)
        if cfg.zero_init:
            zero_(self.conv)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.norm(h)))


def join_skip(h: torch.Tensor, skip: torch.Tensor, mode: str) -> torch.Tensor:
    """A decoder block's input: [h, skip] for concat skips, h + skip for add (and projected add) ones."""
    return torch.cat([h, skip], dim=1) if mode == "concat" else h + skip


class Stage(nn.Module):
    """The res blocks of one level on one side, with attention after the blocks that have it,
    and the resampling (down on the encoder side, up on the decoder side) that follows.

    A stage runs itself from its part of the plan: the encoder pushes the skips the plan taps,
    the decoder pops and joins the ones its blocks take, the middle does neither.
    """

    def __init__(self, blocks: tuple[BlockPlan, ...], make_block, make_attention, make_resample=None,
                 tap_after_blocks: bool = False, tap_after_resample: bool = False, lone_attention: tuple[int, int] = (0, 0),
                 *, block_options=None, make_projection=None, join=None):
        """`make_resample()` builds the resampling; `lone_attention` (channels, heads) is an
        attention without a block before it (a middle without blocks). A block family changes
        three things (EDM2's mp: archsearch.nn.mp_unet): `block_options(plan)`, the keyword
        arguments of `make_block` beyond the widths (default: the block's dropout);
        `make_projection(cin, cout)`, the 1x1 map of a skip whose width differs (default: a conv);
        `join(h, skip, mode)`, how a skip meets h (default: concatenation or a sum)."""
        super().__init__()
        self.plans = blocks
        options = block_options or (lambda b: {"dropout": b.dropout})
        project = make_projection or (lambda cin, cout: nn.Conv2d(cin, cout, 1))
        self.join = join or join_skip
        # Modules are made in this order (blocks, attentions, projections, resampling) so that a
        # seed gives the same initial weights as it always has.
        self.blocks = nn.ModuleList(make_block(b.block_in_channels, b.out_channels, **options(b)) for b in blocks)
        self.attentions = nn.ModuleDict(
            {str(j): make_attention(b.out_channels, b.attention_heads) for j, b in enumerate(blocks) if b.attention_heads}
        )
        if lone_attention[1]:
            self.attentions["0"] = make_attention(*lone_attention)
        self.projections = nn.ModuleDict(
            {str(j): project(b.skip_channels, b.in_channels) for j, b in enumerate(blocks) if b.skip_mode == "add_projected"}
        )
        self.resample = make_resample() if make_resample is not None else None
        self.tap_after_blocks, self.tap_after_resample = tap_after_blocks, tap_after_resample

    def encode(self, h: torch.Tensor, emb: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for j, block in enumerate(self.blocks):
            h = self._attend(j, block(h, emb))
            if self.plans[j].tap:
                skips.append(h)
        if self.tap_after_blocks:
            skips.append(h)
        if self.resample is not None:
            h = self.resample(h, emb)
            if self.tap_after_resample:
                skips.append(h)
        return h

    def decode(self, h: torch.Tensor, emb: torch.Tensor, skips: list[torch.Tensor], resample: bool = True) -> torch.Tensor:
        for j, block in enumerate(self.blocks):
            mode = self.plans[j].skip_mode
            if mode != "none":
                skip = skips.pop()
                h = self.join(h, self.projections[str(j)](skip) if mode == "add_projected" else skip, mode)
            h = self._attend(j, block(h, emb))
        return self.resample(h, emb) if self.resample is not None and resample else h

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The middle: blocks and attention (attention alone when it has no blocks), then resampling."""
        if not self.blocks:
            h = self._attend(0, h)
        return self.decode(h, emb, [])  # middle blocks join no skip

    def _attend(self, j: int, h: torch.Tensor) -> torch.Tensor:
        key = str(j)
        return self.attentions[key](h) if key in self.attentions else h


class UNet(nn.Module):
    """A diffusion U-Net; see the module docstring. Built from a plan, which holds every shape."""

    def __init__(self, plan: UNetPlan):
        super().__init__()
        cfg = plan.config
        self.plan = plan
        self.config = cfg
        blk = cfg.block

        norm_cfg = blk.norm
        if isinstance(norm_cfg, GroupNorm):
            norm = lambda ch: nn.GroupNorm(norm_groups(norm_cfg, ch), ch, eps=norm_cfg.eps)  # noqa: E731
        else:
            norm = lambda ch: nn.Identity()  # noqa: E731
        make_block = partial(
            ResBlock,
            emb_channels=plan.embedding_out_dim,
            norm=norm,
            activation=blk.activation,
            order=blk.order,
            dropout=blk.dropout,
            scale_shift=blk.time_injection == "scale_shift",
            time_activation=blk.time_activation,
            rescale=blk.rescale,
            shortcut=blk.shortcut,
            zero_init=cfg.zero_init,
            resample_filter=tuple(cfg.resample_filter),
            resample_projection=blk.resample_projection,
        )
        make_attention = partial(
            AttentionBlock, norm=norm, qkv_bias=cfg.attention.qkv_bias, qkv_order=cfg.attention.qkv_order,
            rescale=blk.rescale, zero_init=cfg.zero_init,
        )

        def make_down(ch: int, dropout: float = blk.dropout) -> nn.Module:
            if cfg.down.kind == "resblock":
                return make_block(ch, ch, resample="down", dropout=dropout)
            return Downsample(ch, cfg.down.kind, getattr(cfg.down, "padding", "symmetric"))

        def make_up(ch: int, dropout: float = blk.dropout) -> nn.Module:
            if cfg.up.kind == "resblock":
                return make_block(ch, ch, resample="up", dropout=dropout)
            return Upsample(ch, cfg.up.kind)

        self.embedding = TimeEmbedding(plan)
        self.stem = nn.Conv2d(cfg.in_channels, plan.stem_channels, 3, padding=1) if plan.stem_channels else None
        self.tap_stem = plan.tap_stem

        self.encoder, self.decoder = nn.ModuleList(), nn.ModuleList()
        for lv in plan.levels:  # encoder and decoder stage of a level, in turn (the order of initialization)
            self.encoder.append(Stage(lv.encoder, make_block, make_attention,
                                      partial(make_down, lv.down_channels, lv.dropout) if lv.down_channels else None,
                                      tap_after_blocks=lv.tap_after_blocks, tap_after_resample=lv.tap_after_down))
            self.decoder.append(Stage(lv.decoder, make_block, make_attention,
                                      partial(make_up, lv.up_channels, lv.dropout) if lv.up_channels else None))
        # The seed runs the middle one resolution lower, and upsamples back before the decoder.
        up_after = partial(make_up, plan.middle_channels) if cfg.middle.downsample else None
        if plan.middle_transformer is not None:
            emb_act = ACTIVATIONS[blk.activation]() if blk.time_activation else nn.Identity()
            self.middle = TransformerMiddle(plan.middle_transformer, plan.embedding_out_dim, emb_act=emb_act,
                                            qkv_bias=cfg.attention.qkv_bias, zero_init=cfg.zero_init,
                                            resample=up_after() if up_after else None)
        else:
            lone = (plan.middle_channels, plan.middle_attention_heads) if not plan.middle else (0, 0)
            self.middle = Stage(plan.middle, make_block, make_attention, up_after, lone_attention=lone)
        self.head = Head(plan, norm)
        # EDM-SongUNet's progressive paths (encoder_type, decoder_type), after everything else so
        # the modules above draw the same initial weights as without them.
        self.encoder_aux = nn.ModuleDict(
            {str(a.level): InputPath(cfg.encoder_type, a.in_channels, a.out_channels, cfg.resample_filter)
             for a in plan.encoder_aux}
        ) if plan.encoder_aux else None
        self.decoder_aux = nn.ModuleDict(
            {str(a.level): Head(plan, norm, a.in_channels) for a in plan.decoder_aux}
        ) if plan.decoder_aux else None
        self.aux_up = FIRResample(cfg.resample_filter, "up") if plan.decoder_aux else None

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, C_in, H, W) noisy images; t: (B,) timesteps; class_labels: (B,) ints or None;
        # augment_labels: (B, embedding.augment_dim) or None
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = self.embedding(t, class_labels, augment_labels)  # (B, E)
        h = self.stem(x) if self.stem is not None else x  # (B, C0, H, W)
        skips = [h] if self.tap_stem else []
        aux = x  # encoder_type: the progressive input path starts from the image
        for i, stage in enumerate(self.encoder):  # highest resolution first; each pushes the skips it taps
            h = stage.encode(h, emb, skips)
            if self.encoder_aux is not None and str(i + 1) in self.encoder_aux:
                h, aux = self.encoder_aux[str(i + 1)](h, aux)
                skips[-1] = h  # the skip tapped after the downsample becomes the sum (EDM)
        h = self.middle(h, emb)  # (B, C_mid, H_mid, W_mid)
        if self.decoder_aux is None:
            for stage in reversed(self.decoder):  # lowest resolution first; each pops the skips it joins
                h = stage.decode(h, emb, skips)
            return self.head(h)  # (B, C_out, H, W)
        out = None  # decoder_type: skip sums a head's output per level, upsampled on the way up
        for i in reversed(range(len(self.decoder))):
            stage = self.decoder[i]
            h = stage.decode(h, emb, skips, resample=False)
            y = self.head(h) if i == 0 else self.decoder_aux[str(i)](h)
            out = y if out is None else y + self.aux_up(out)
            h = stage.resample(h, emb) if stage.resample is not None else h
        return out  # (B, C_out, H, W)
