"""Resolve a `UNetConfig` into shapes, and hold every cross-field rule. No torch.

`plan_unet(config)` walks the network the way its forward pass will: it tracks the channels
and resolution of `h`, pushes a skip wherever the config taps one, and pops them in the
decoder. The result, a `UNetPlan`, lists every res block with its input, skip and output
widths, every resampling step and every attention site. The builder only instantiates what
the plan says; the CLI prints it; the search layer rejects a sampled config with it before
any torch code runs.

All problems found are raised together as `ConfigErrors`, each naming the field to change:

    >>> plan_unet(UNetConfig(image_size=30, compact={"multipliers": [1, 2, 2]}))
    ConfigErrors: image_size: 30 is not divisible by 4 (2 downsamples for 3 levels); use 32 or 28
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError, ConfigErrors
from .schema.unet import GroupNorm, UNetConfig

__all__ = ["BlockPlan", "LevelPlan", "TransformerPlan", "AuxPlan", "UNetPlan", "plan_unet", "norm_groups", "is_box_filter"]


@dataclass(frozen=True)
class BlockPlan:
    """One res block: `in_channels` is h's width, `skip_channels` the width of the skip joined
    to it (0 when none), `out_channels` its output; optional attention after it."""

    in_channels: int
    out_channels: int
    skip_channels: int = 0
    skip_mode: str = "none"  # none | concat | add | add_projected (a 1x1 conv maps the skip to h's width)
    attention_heads: int = 0  # 0: no attention after this block
    tap: bool = False  # encoder: the output (after attention) is kept as a skip
    dropout: float = 0.0  # the block's dropout (its level's, or block.dropout)

    @property
    def block_in_channels(self) -> int:
        """Channels entering the block's first layer (concat widens it; add does not)."""
        return self.in_channels + (self.skip_channels if self.skip_mode == "concat" else 0)


@dataclass(frozen=True)
class LevelPlan:
    index: int
    resolution: int
    width: int
    decoder_width: int
    encoder: tuple[BlockPlan, ...]
    decoder: tuple[BlockPlan, ...]
    down_channels: int = 0  # 0: no downsample after this level's encoder
    up_channels: int = 0  # 0: no upsample after this level's decoder
    taps: tuple[int, ...] = ()  # widths of the skips tapped at this resolution
    tap_after_blocks: bool = False  # skip.taps=level: the output of the level's blocks is a skip
    tap_after_down: bool = False  # skip.taps=block: the downsample's output is a skip (of the next level)
    dropout: float = 0.0  # of the level's res blocks, and of its res-block resampling


@dataclass(frozen=True)
class TransformerPlan:
    """A transformer middle (middle.kind: transformer) over the map's pixels: `tokens` tokens of
    `width` channels (the pixels, plus `extra_tokens` embedding tokens), `depth` blocks."""

    channels: int  # the map's width, entering and leaving
    width: int  # token width; a projection maps channels -> width when they differ
    depth: int
    heads: int
    mlp_channels: int
    resolution: int
    tokens: int
    extra_tokens: int  # 1 with time: token
    time: str  # add | token
    pos_embedding: bool
    dropout: float

    @property
    def project_in(self) -> bool:
        return self.width != self.channels

    @property
    def head_channels(self) -> int:
        return self.width // self.heads


@dataclass(frozen=True)
class AuxPlan:
    """One layer of a progressive path (EDM-SongUNet encoder_type / decoder_type) at `level`:
    encoder side, the image path's conv from `in_channels` to h's width `out_channels`; decoder
    side, the head from h's width `in_channels` to the prediction's `out_channels`."""

    level: int
    in_channels: int
    out_channels: int


@dataclass(frozen=True)
class UNetPlan:
    """Every derived number of a U-Net: what the builder, the CLI and reports read."""

    config: UNetConfig
    levels: tuple[LevelPlan, ...]
    middle: tuple[BlockPlan, ...]
    middle_channels: int
    middle_resolution: int
    middle_attention_heads: int
    stem_channels: int  # 0: no stem
    head_in_channels: int
    out_channels: int
    embedding_dim: int
    embedding_hidden_dim: int
    embedding_out_dim: int
    downsamples: int = field(default=0)
    tap_stem: bool = False  # skip.taps=block: the stem's output is the first skip
    middle_transformer: TransformerPlan | None = None  # middle.kind: transformer (then `middle` is empty)
    encoder_aux: tuple[AuxPlan, ...] = ()  # encoder_type skip/residual: joined after each level's downsample
    decoder_aux: tuple[AuxPlan, ...] = ()  # decoder_type skip: a head at each level but the first (whose is `head`)

    @property
    def skip_combine(self) -> str:
        return self.config.skip.combine


def norm_groups(norm, channels: int) -> int:
    """GroupNorm groups used at a layer of `channels` (EDM caps them at channels // min_channels_per_group)."""
    groups = norm.groups
    if norm.min_channels_per_group is not None:
        groups = min(groups, max(channels // norm.min_channels_per_group, 1))
    return groups


def plan_unet(config: UNetConfig) -> UNetPlan:
    """Resolve `config` into a `UNetPlan`, or raise `ConfigErrors` naming every bad field."""
    return _Planner(config).plan()


class _Planner:
    def __init__(self, config: UNetConfig):
        self.config = config
        self.errors: list[ConfigError] = []
        self.levels = config.resolved_levels()
        self.lp = config.levels_path  # "levels" or "compact", for messages

    def error(self, path: str, message: str) -> None:
        self.errors.append(ConfigError(path, message))

    # Where skips are tapped is decided here alone (the `tap*` fields); the model's stages only
    # follow those flags, so the widths computed here are the tensors pushed there.
    def plan(self) -> UNetPlan:
        cfg = self.config
        n_levels = len(self.levels)
        downsamples = n_levels - 1 + int(cfg.middle.downsample)
        self._check_image_size(downsamples)
        self._check_attention_resolutions()

        taps: list[list[int]] = [[] for _ in range(n_levels)]
        by_block = cfg.skip.taps == "block"
        ch = (cfg.stem_width or self.levels[0].width) if cfg.stem == "conv3x3" else cfg.in_channels
        stem_channels = ch if cfg.stem == "conv3x3" else 0
        if by_block:
            taps[0].append(ch)

        encoder: list[tuple[BlockPlan, ...]] = []
        down: list[int] = []
        dropouts = [cfg.block.dropout if level.dropout is None else level.dropout for level in self.levels]
        for i, level in enumerate(self.levels):
            heads = self._level_heads(i, level.width) if level.attention else 0
            blocks = []
            for _ in range(level.blocks):
                blocks.append(BlockPlan(ch, level.width, attention_heads=heads, tap=by_block, dropout=dropouts[i]))
                ch = level.width
            taps[i] += [b.out_channels for b in blocks if b.tap]
            if not by_block:  # tap_after_blocks
                taps[i].append(ch)
            encoder.append(tuple(blocks))
            last = i == n_levels - 1
            down.append(ch if (not last or cfg.middle.downsample) else 0)
            if by_block and not last:  # tap_after_down
                taps[i + 1].append(ch)

        middle_channels = ch
        middle_resolution = cfg.image_size >> downsamples
        transformer = self._transformer(ch, middle_resolution) if cfg.middle.kind == "transformer" else None
        middle_heads = self._heads(ch, "middle.attention") if not transformer and cfg.middle.attention else 0
        middle = () if transformer else tuple(
            BlockPlan(ch, ch, attention_heads=middle_heads if j == 0 else 0, dropout=cfg.block.dropout)
            for j in range(cfg.middle.blocks)
        )

        decoder: list[tuple[BlockPlan, ...]] = [()] * n_levels
        up: list[int] = [0] * n_levels
        for i in reversed(range(n_levels)):
            level = self.levels[i]
            width = level.decoder_width or level.width
            n_blocks = self._decoder_blocks(i, len(taps[i]))
            heads = self._level_heads(i, width) if level.attention else 0
            pending = list(taps[i])
            blocks = []
            for j in range(n_blocks):
                skip = pending.pop() if pending else 0
                attn = heads if (cfg.attention.decoder_blocks == "all" or j == n_blocks - 1) else 0
                blocks.append(self._decoder_block(i, j, ch, skip, width, attn, dropouts[i]))
                ch = width
            decoder[i] = tuple(blocks)
            up[i] = ch if i > 0 else 0

        out_channels = (cfg.out_channels or cfg.in_channels) * (2 if cfg.learn_sigma else 1)
        emb = cfg.embedding
        emb_dim = emb.dim or self.levels[0].width
        emb_hidden = emb.hidden_dim or 4 * emb_dim
        emb_out = emb.out_dim or emb_hidden
        if cfg.block.kind == "mp":  # EDM2: one MP linear from the encoding to the widest level's width
            emb_hidden, emb_out = 0, emb.out_dim or max(level.width for level in self.levels)
        if emb.class_input != "table" and not cfg.num_classes:
            self.error("embedding.class_input", f"{emb.class_input}, but the network has no classes; set num_classes "
                                                "or leave class_input out")
        if emb.encoding.kind in ("sinusoidal", "fourier") and emb_dim % 2:
            self.error("embedding.dim", f"{emb_dim} is odd; sinusoidal and Fourier encodings need an even width")

        plan = UNetPlan(
            config=cfg,
            levels=tuple(
                LevelPlan(
                    index=i,
                    resolution=cfg.image_size >> i,
                    width=level.width,
                    decoder_width=level.decoder_width or level.width,
                    encoder=encoder[i],
                    decoder=decoder[i],
                    down_channels=down[i],
                    up_channels=up[i],
                    taps=tuple(taps[i]),
                    tap_after_blocks=not by_block,
                    tap_after_down=by_block and i < n_levels - 1,
                    dropout=dropouts[i],
                )
                for i, level in enumerate(self.levels)
            ),
            middle=middle,
            middle_channels=middle_channels,
            middle_resolution=middle_resolution,
            middle_attention_heads=middle_heads,
            stem_channels=stem_channels,
            head_in_channels=ch,
            out_channels=out_channels,
            embedding_dim=emb_dim,
            embedding_hidden_dim=emb_hidden,
            embedding_out_dim=emb_out,
            downsamples=downsamples,
            tap_stem=by_block,
            middle_transformer=transformer,
        )
        plan = self._song(plan)
        self._check_norm_groups(plan)
        if cfg.block.kind == "mp":
            self._check_mp()
        if self.errors:
            raise ConfigErrors(_dedupe(self.errors))
        return plan

    # ------------------------------------------------------------------ rules

    def _level_path(self, i: int) -> str:
        return f"levels.{i}" if self.lp == "levels" else f"compact (level {i})"

    def _check_image_size(self, downsamples: int) -> None:
        size, factor = self.config.image_size, 1 << downsamples
        if size % factor:
            lower, upper = size - size % factor, size - size % factor + factor
            options = " or ".join(str(s) for s in (upper, lower) if s > 0)
            why = f"{len(self.levels) - 1} downsamples for {len(self.levels)} levels"
            if self.config.middle.downsample:
                why += " and 1 before the middle"
            self.error("image_size", f"{size} is not divisible by {factor} ({why}); use {options}, or fewer levels")

    def _check_attention_resolutions(self) -> None:
        if self.config.compact is None:
            return
        existing = [self.config.image_size >> i for i in range(len(self.levels))]
        for k, res in enumerate(self.config.compact.attention_resolutions):
            if res not in existing:
                self.error(
                    f"compact.attention_resolutions.{k}",
                    f"no level has resolution {res}; the levels are {', '.join(map(str, existing))} pixels",
                )

    def _heads(self, width: int, where: str, heads: int | None = None, head_channels: int | None = None,
               owner: str = "attention") -> int:
        """Heads at a site of `width` channels: `owner`'s heads / head_channels when it sets one
        (a level, the transformer middle), else the attention section's."""
        if heads is not None and head_channels is not None:
            self.error(f"{owner}.head_channels", f"give {owner}.heads or {owner}.head_channels, not both; drop one")
        if heads is None and head_channels is None:
            att, owner = self.config.attention, "attention"
            heads, head_channels = att.heads, att.head_channels
        if head_channels is not None:
            if width % head_channels:
                self.error(
                    f"{owner}.head_channels",
                    f"{head_channels} does not divide width {width} at {where}; "
                    f"use a divisor of {width} such as {_divisors_hint(width, head_channels)}",
                )
                return 1
            return width // head_channels
        if width % heads:
            self.error(
                f"{owner}.heads",
                f"{heads} heads do not divide width {width} at {where}; "
                f"use {_divisors_hint(width, heads)} heads",
            )
            return 1
        return heads

    def _level_heads(self, i: int, width: int) -> int:
        level, path = self.levels[i], self._level_path(i)
        return self._heads(width, f"{path}.attention", level.heads, level.head_channels, owner=path)

    def _transformer(self, channels: int, resolution: int) -> TransformerPlan:
        mid = self.config.middle
        width = mid.width or channels
        where = "the transformer middle" + (f" (middle.width {width})" if mid.width else "")
        heads = self._heads(width, where, mid.heads, mid.head_channels, owner="middle")
        mlp_channels = int(width * mid.mlp_ratio)
        if mlp_channels < 1:
            self.error("middle.mlp_ratio", f"{mid.mlp_ratio} gives an MLP of {mlp_channels} channels at width {width}; "
                                           f"use at least {1 / width:.3g}")
        extra = 1 if mid.time == "token" else 0
        return TransformerPlan(
            channels=channels, width=width, depth=mid.depth, heads=heads, mlp_channels=mlp_channels,
            resolution=resolution, tokens=resolution * resolution + extra, extra_tokens=extra, time=mid.time,
            pos_embedding=mid.pos_embedding, dropout=mid.dropout,
        )

    def _decoder_blocks(self, i: int, n_taps: int) -> int:
        level = self.levels[i]
        by_block = self.config.skip.taps == "block"
        default = n_taps if by_block else level.blocks
        n = level.decoder_blocks if level.decoder_blocks is not None else default
        if by_block and n != n_taps:
            self.error(
                f"{self._level_path(i)}.decoder_blocks",
                f"{n} decoder blocks but {n_taps} skips are tapped at this resolution (skip.taps: block "
                f"needs blocks + 1 = {n_taps}); use {n_taps} or skip.taps: level",
            )
        if not by_block and n < 1:
            self.error(
                f"{self._level_path(i)}.decoder_blocks",
                "the level's skip needs at least one decoder block to join it; use 1 or more",
            )
        return n

    def _decoder_block(self, i: int, j: int, ch: int, skip: int, width: int, heads: int, dropout: float) -> BlockPlan:
        if not skip:
            return BlockPlan(ch, width, attention_heads=heads, dropout=dropout)
        if self.config.skip.combine == "concat":
            return BlockPlan(ch, width, skip_channels=skip, skip_mode="concat", attention_heads=heads, dropout=dropout)
        # add-skips: h + skip needs equal widths, or a projection of the skip.
        project = skip != ch
        if project and not self.config.skip.project:
            self.error(
                "skip.combine",
                f"add needs equal widths, but decoder block {j} of {self._level_path(i)} joins h of {ch} "
                f"channels with a skip of {skip}; set skip.project: true (1x1 conv on the skip), "
                f"use equal widths at neighbouring levels, or skip.combine: concat",
            )
        mode = "add_projected" if project else "add"
        return BlockPlan(ch, width, skip_channels=skip, skip_mode=mode, attention_heads=heads, dropout=dropout)

    def _song(self, plan: UNetPlan) -> UNetPlan:
        """EDM-SongUNet's knobs: stem_width, resample_filter, resample_projection and the
        progressive paths, with the widths of the latter."""
        from dataclasses import replace

        cfg, n = self.config, len(plan.levels)
        if cfg.stem_width is not None and cfg.stem != "conv3x3":
            self.error("stem_width", f"{cfg.stem_width}, but stem is {cfg.stem}; set stem: conv3x3 or leave stem_width out")
        resblock_down = cfg.down.kind == "resblock" and any(lv.down_channels for lv in plan.levels)
        resblock_up = cfg.up.kind == "resblock" and (n > 1 or cfg.middle.downsample)
        if getattr(cfg.block, "resample_projection", False) and not (resblock_down or resblock_up):  # resnet only
            self.error("block.resample_projection", "true, but no res block resamples; set down.kind or up.kind "
                                                    "to resblock, or leave this false")
        for path, kind in (("encoder_type", cfg.encoder_type), ("decoder_type", cfg.decoder_type)):
            if kind != "standard" and n < 2:
                self.error(path, f"{kind} needs at least 2 levels (its path joins each level after the first); "
                                 "add a level or use standard")
        if cfg.encoder_type != "standard" and cfg.skip.taps != "block":
            self.error("encoder_type", f"{cfg.encoder_type} updates the skip tapped after each downsample (EDM), "
                                       "which skip.taps: level does not tap; set skip.taps: block or encoder_type: standard")
        taps = cfg.resample_filter
        if len(taps) % 2:
            self.error("resample_filter", f"{list(taps)} has {len(taps)} taps; resampling by 2 needs an even "
                                          "number (an odd filter upsamples to 2n - 1 pixels), e.g. [1, 1] or [1, 3, 3, 1]")
        progressive = cfg.encoder_type != "standard" or cfg.decoder_type != "standard"
        if not is_box_filter(taps) and not (resblock_down or resblock_up or (progressive and n > 1)):
            self.error("resample_filter", f"{list(taps)}, but nothing here resamples with it (res-block down/up "
                                          "or a progressive path); set down/up kind: resblock, encoder_type or "
                                          "decoder_type, or leave it [1, 1]")

        encoder_aux, decoder_aux = [], []
        if cfg.encoder_type != "standard":
            aux = cfg.in_channels
            for lv in plan.levels[1:]:
                h = plan.levels[lv.index - 1].down_channels
                encoder_aux.append(AuxPlan(lv.index, aux, h))
                aux = h if cfg.encoder_type == "residual" else aux
        if cfg.decoder_type == "skip":
            decoder_aux = [AuxPlan(lv.index, lv.up_channels, plan.out_channels) for lv in plan.levels[1:]]
        return replace(plan, encoder_aux=tuple(encoder_aux), decoder_aux=tuple(decoder_aux))

    def _check_norm_groups(self, plan: UNetPlan) -> None:
        norm = getattr(self.config.block, "norm", None)  # block.kind mp has none
        if not isinstance(norm, GroupNorm):
            return
        pre = self.config.block.order == "pre"
        sites: list[tuple[int, str]] = []  # in forward order: the first one is the one to fix first

        def add_blocks(blocks, label: str) -> None:
            for j, b in enumerate(blocks):
                if pre:
                    sites.append((b.block_in_channels, f"the input of {label.format(j=j)}"))
                sites.append((b.out_channels, label.format(j=j)))

        resblock_down = self.config.down.kind == "resblock"
        resblock_up = self.config.up.kind == "resblock"
        for lv in plan.levels:
            where = self._level_path(lv.index)
            add_blocks(lv.encoder, f"encoder block {{j}} of {where}")
            if lv.down_channels and resblock_down:
                sites.append((lv.down_channels, f"the res-block downsample of {where}"))
        add_blocks(plan.middle, "middle block {j}")
        for lv in reversed(plan.levels):
            where = self._level_path(lv.index)
            add_blocks(lv.decoder, f"decoder block {{j}} of {where}")
            if lv.up_channels and resblock_up:
                sites.append((lv.up_channels, f"the res-block upsample of {where}"))
        if self.config.head == "norm_act_conv3x3":
            sites.append((plan.head_in_channels, "the head"))
        widths = sorted({c for c, _ in sites})
        for channels, where in sites:
            groups = norm_groups(norm, channels)
            if channels % groups:
                self.error(
                    "block.norm.groups",
                    f"{groups} does not divide the {channels} channels at {where}; "
                    f"use {_common_divisor_hint(widths, norm.groups)} groups, or widths divisible by {groups}",
                )

    def _check_mp(self) -> None:
        # EDM2's network is magnitude preserving end to end: no group norm, no bias, one-layer embedding.
        cfg, why = self.config, "under block.kind: mp (EDM2)"
        if cfg.head == "norm_act_conv3x3":
            self.error("head", f"norm_act_conv3x3 has a group norm; {why} the head is an MP conv times a learned "
                               "gain: use conv3x3 (EDM2's out_conv) or conv1x1")
        if cfg.stem == "none":
            self.error("stem", f"none: {why} the image (and the ones channel) enters through an MP conv; use conv3x3")
        if cfg.down.kind not in ("resblock", "avgpool"):
            self.error("down.kind", f"{cfg.down.kind} is not magnitude preserving{' and has a bias' if cfg.down.kind == 'conv' else ''}; "
                                    f"{why} use resblock (EDM2's down block) or avgpool (its [1, 1] filter alone)")
        if cfg.up.kind not in ("resblock", "nearest"):
            self.error("up.kind", f"{cfg.up.kind} has a biased conv that is not magnitude preserving; {why} use "
                                  "resblock (EDM2's up block) or nearest (its [1, 1] filter alone)")
        if cfg.attention.qkv_bias:  # the default, true, too: a dumped config must still say what is built
            self.error("attention.qkv_bias", f"true: {why} the qkv projection is a bias-free MP conv; set it false")
        if cfg.embedding.hidden_dim is not None:
            self.error("embedding.hidden_dim", f"{why} the embedding is one MP linear from the encoding to out_dim, "
                                               "without a hidden layer; drop hidden_dim (set out_dim for its width)")
        if cfg.embedding.post_activation:
            self.error("embedding.post_activation", f"true: {why} the embedding always ends with mp_silu; drop the field")
        if cfg.skip.project and cfg.skip.combine == "concat":
            self.error("skip.project", "true, but concat skips are never projected (mp_cat joins any widths); "
                                       "drop the field or use skip.combine: add")
        if cfg.middle.kind == "transformer":
            self.error("middle.kind", f"transformer: its LayerNorms and biased linears are not magnitude preserving, "
                                      f"and {why} every layer is; use kind: resblocks, or block.kind: resnet")
        for path, kind in (("encoder_type", cfg.encoder_type), ("decoder_type", cfg.decoder_type)):
            if kind != "standard":
                self.error(path, f"{kind}: EDM-SongUNet's progressive paths are biased convs (and group-normed "
                                 f"heads), not built {why}; use standard, or block.kind: resnet")
        if cfg.embedding.class_input != "table":
            self.error("embedding.class_input", f"{cfg.embedding.class_input}: {why} the class enters through an MP "
                                                "linear and mp_sum (label_balance); use table")
        if cfg.embedding.augment_dim is not None:
            self.error("embedding.augment_dim", f"EDM's augmentation-label input is not built {why} (EDM2 trains "
                                                "without it); drop the field, or use block.kind: resnet")


def is_box_filter(taps) -> bool:
    """Whether a resample_filter is [c, c]: avg-pool down and nearest up, exactly."""
    return len(taps) == 2 and taps[0] == taps[1]


def _divisors_hint(n: int, near: int) -> str:
    from math import isqrt

    small = [d for d in range(1, isqrt(n) + 1) if n % d == 0]  # O(sqrt n): each pairs with n // d
    divisors = set(small) | {n // d for d in small}
    best = sorted(divisors, key=lambda d: (abs(d - near), d))[:2]
    return " or ".join(str(d) for d in sorted(best))


def _common_divisor_hint(widths: list[int], near: int) -> str:
    from math import gcd

    g = 0
    for w in widths:
        g = gcd(g, w)
    return _divisors_hint(g, near)


def _dedupe(errors: list[ConfigError]) -> list[ConfigError]:
    # One message per field: the first site found is the one a user fixes first.
    seen, out = set(), []
    for e in errors:
        if e.path not in seen:
            seen.add(e.path)
            out.append(e)
    return out
