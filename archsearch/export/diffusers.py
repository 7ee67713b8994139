"""archsearch <-> diffusers `UNet2DModel`: the config, and the weights both ways.

    cfg = diffusers_config(config)                  # UNet2DModel's config.json fields, or ConfigErrors
    theirs = to_diffusers(model.state_dict(), plan) # the same weights under diffusers' names
    ours = from_diffusers(unet2d.state_dict(), plan)

`diffusers_config` lists every field diffusers cannot express, as `path: why`, in one
ConfigErrors: an export is all or nothing. The weight maps are exact renames and reshapes
(archsearch's fused 1x1-conv qkv <-> diffusers' to_q/to_k/to_v linears, read in the config's
`attention.qkv_order`), so outputs agree to float rounding; archsearch.export.check proves it on
every export. The diffusers vocabulary (block types, defaults) is archsearch.schema.diffusers',
which reads configs the other way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, ConfigErrors
from ..plan import UNetPlan, plan_unet
from ..schema.diffusers import DEFAULTS, DOWN_TYPES, UP_TYPES
from ..schema.unet import GroupNorm, UNetConfig

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["diffusers_config", "to_diffusers", "from_diffusers", "tensor_pairs"]


def _by_role(types: dict[str, tuple[bool, str | None]]) -> dict[tuple[bool, str], str]:
    """(attention, resampling: none, conv or resnet) -> the block type that builds it. The
    first type listed wins, so a level that does not resample on that side gets the plain one."""
    out: dict[tuple[bool, str], str] = {}
    for name, (attention, resample) in types.items():
        for kind in ("none", "conv", "resnet"):
            builds = kind == "none" or resample is None or resample == kind  # None: any, via *_type
            if builds:
                out.setdefault((attention, kind), name)
    return out


_DOWN, _UP = _by_role(DOWN_TYPES), _by_role(UP_TYPES)


def diffusers_config(config: UNetConfig, prefix: str = "") -> dict[str, Any]:
    """The UNet2DModel config that builds `config`'s network, or ConfigErrors naming every field
    (under `prefix`, e.g. `architecture`) that UNet2DModel cannot express."""
    plan = plan_unet(config)
    problems = _unsupported(config, plan)
    if problems:
        raise ConfigErrors(ConfigError(path, why).prefixed(prefix) for path, why in problems)
    levels = config.resolved_levels()
    down = "resnet" if config.down.kind == "resblock" else "conv"
    up = "resnet" if config.up.kind == "resblock" else "conv"
    enc = config.embedding.encoding
    scale_shift = config.block.time_injection == "scale_shift"
    middle_attention = bool(plan.middle_attention_heads)
    return {
        **DEFAULTS,
        "sample_size": config.image_size,
        "in_channels": config.in_channels,
        "out_channels": plan.out_channels,
        "time_embedding_type": "learned" if enc.kind == "learned" else "positional",
        "time_embedding_dim": None if plan.embedding_hidden_dim == 4 * levels[0].width else plan.embedding_hidden_dim,
        "freq_shift": enc.freq_shift if enc.kind == "sinusoidal" else DEFAULTS["freq_shift"],
        "flip_sin_to_cos": enc.flip_sin_to_cos if enc.kind == "sinusoidal" else DEFAULTS["flip_sin_to_cos"],
        "down_block_types": [_DOWN[(lv.attention, down if p.down_channels else "none")]
                             for lv, p in zip(levels, plan.levels)],
        "mid_block_type": "UNetMidBlock2D" if plan.middle else None,
        "up_block_types": [_UP[(lv.attention, up if p.up_channels else "none")]
                           for lv, p in reversed(list(zip(levels, plan.levels)))],
        "block_out_channels": [lv.width for lv in levels],
        "layers_per_block": levels[0].blocks,
        "downsample_padding": 0 if getattr(config.down, "padding", "symmetric") == "same" else 1,
        "downsample_type": down,
        "upsample_type": up,
        "dropout": config.block.dropout,
        "act_fn": "silu",
        "attention_head_dim": _head_dim(plan),
        "norm_num_groups": config.block.norm.groups,
        # diffusers leaves the middle attention without a norm under scale_shift unless told.
        "attn_norm_num_groups": config.block.norm.groups if scale_shift and middle_attention else None,
        "norm_eps": config.block.norm.eps,
        "resnet_time_scale_shift": "scale_shift" if scale_shift else "default",
        "add_attention": middle_attention if plan.middle else DEFAULTS["add_attention"],  # no middle: moot
        "num_class_embeds": config.num_classes,
        "num_train_timesteps": enc.num_timesteps if enc.kind == "learned" else None,
    }


def _sites(plan: UNetPlan) -> list[tuple[int, int]]:
    """(width, heads) of every attention layer."""
    blocks = [b for lv in plan.levels for b in (*lv.encoder, *lv.decoder)]
    sites = [(b.out_channels, b.attention_heads) for b in blocks if b.attention_heads]
    if plan.middle_attention_heads:
        sites.append((plan.middle_channels, plan.middle_attention_heads))
    return sites


def _head_dim(plan: UNetPlan) -> int | None:
    """diffusers' attention_head_dim: None is one head everywhere; else channels per head."""
    sites = _sites(plan)
    if all(heads == 1 for _, heads in sites):
        return None
    return sites[0][0] // sites[0][1]


def _unsupported(config: UNetConfig, plan: UNetPlan) -> list[tuple[str, str]]:
    """(path, why) for every field whose value UNet2DModel has no option for."""
    out: list[tuple[str, str]] = []
    cfg, blk, att, emb = config, config.block, config.attention, config.embedding
    levels, lp = config.resolved_levels(), config.levels_path

    def no(path: str, why: str) -> None:
        out.append((path, why))

    if cfg.skip.combine != "concat":
        no("skip.combine", f"{cfg.skip.combine}: diffusers' up blocks concatenate their skips")
    if cfg.skip.taps != "block":
        no("skip.taps", f"{cfg.skip.taps}: diffusers taps a skip after the stem, every res block and every downsample (block)")
    if cfg.stem != "conv3x3":
        no("stem", f"{cfg.stem}: UNet2DModel always starts with a 3x3 conv (conv_in)")
    if cfg.head != "norm_act_conv3x3":
        no("head", f"{cfg.head}: UNet2DModel always ends with GroupNorm -> SiLU -> 3x3 conv")
    for i, lv in enumerate(levels):
        if lv.blocks != levels[0].blocks:
            no(f"{lp}.{i}.blocks", f"{lv.blocks}, but level 0 has {levels[0].blocks}: diffusers' layers_per_block is one number")
        if lv.decoder_width not in (None, lv.width):
            no(f"{lp}.{i}.decoder_width", f"{lv.decoder_width} differs from the level's width {lv.width}: diffusers' "
                                          "up blocks run at the down blocks' widths")
    if cfg.middle.downsample:
        no("middle.downsample", "true: UNet2DModel runs its middle at the lowest level's resolution")
    if cfg.middle.kind == "transformer":
        no("middle.kind", "transformer: UNet2DModel's middle is UNetMidBlock2D (res-[attention]-res); use kind: resblocks")
    elif (cfg.middle.blocks, cfg.middle.attention) not in ((2, True), (2, False), (0, False)):
        no("middle.blocks" if cfg.middle.blocks not in (0, 2) else "middle.attention",
           f"{cfg.middle.blocks} block{'' if cfg.middle.blocks == 1 else 's'}{' with attention' if cfg.middle.attention else ''}: UNetMidBlock2D is "
           "res-[attention]-res, or none at all (mid_block_type null)")
    if blk.kind == "mp":  # none of the resnet fields below exist on it
        no("block.kind", "mp: diffusers has no magnitude-preserving layers (weight-normalized bias-free convs, "
                         "mp_silu, mp_sum, mp_cat, learned output gain)")
    else:
        if not isinstance(blk.norm, GroupNorm):
            no("block.norm.kind", f"{blk.norm.kind}: diffusers' blocks always normalize with GroupNorm")
        elif blk.norm.min_channels_per_group is not None:
            no("block.norm.min_channels_per_group", "diffusers' norm_num_groups is one number for every layer")
        if blk.order != "pre":
            no("block.order", f"{blk.order}: diffusers' ResnetBlock2D is pre-norm (norm -> act -> conv)")
        if blk.activation != "silu":
            no("block.activation", f"{blk.activation}: UNet2DModel's head and time MLP are SiLU whatever act_fn says")
        if not blk.time_activation:
            no("block.time_activation", "false: UNet2DModel applies act_fn to the embedding in every block")
        if blk.rescale:
            no("block.rescale", "true: UNet2DModel's down and up blocks do not rescale residual sums")
        if blk.shortcut != "conv1x1":
            no("block.shortcut", f"{blk.shortcut}: ResnetBlock2D's shortcut is a 1x1 conv")
    sites = _sites(plan)
    if sites and any(lv.attention for lv in levels) and att.decoder_blocks != "all":
        no("attention.decoder_blocks", f"{att.decoder_blocks}: AttnUpBlock2D attends after every res block")
    if sites and not att.qkv_bias:
        no("attention.qkv_bias", "false: diffusers' attention projections always have a bias")
    per_head = {w // h for w, h in sites}
    per_level = [(i, "heads" if lv.heads is not None else "head_channels") for i, lv in enumerate(levels)
                 if lv.attention and (lv.heads is not None or lv.head_channels is not None)]
    if any(h > 1 for _, h in sites) and len(per_head) > 1 and per_level:
        i, name = per_level[0]
        no(f"{lp}.{i}.{name}", f"{getattr(levels[i], name)} gives {', '.join(map(str, sorted(per_head)))} channels per head "
                               "across the attention layers; diffusers' attention_head_dim is one number")
    elif any(h > 1 for _, h in sites) and len(per_head) > 1:
        no("attention.heads", f"{att.heads} heads at widths {', '.join(str(w) for w in sorted({w for w, _ in sites}))} "
                              "give different channels per head; diffusers' attention_head_dim is one number "
                              "(use attention.head_channels)")
    dropouts = [lv.dropout for lv in plan.levels]
    if any(d != blk.dropout for d in dropouts):
        where = (f"{lp}.{next(i for i, d in enumerate(dropouts) if d != blk.dropout)}.dropout" if cfg.levels is not None
                 else "compact.dropout_resolutions")
        no(where, f"per-level dropout {', '.join(map(str, dropouts))}: diffusers' dropout is one number for every res "
                  f"block (block.dropout, {blk.dropout})")
    enc = emb.encoding
    if enc.kind == "fourier":
        no("embedding.encoding.kind", "fourier: diffusers' fourier embedding takes log σ and divides the output by σ")
    elif enc.kind == "mp_fourier":
        no("embedding.encoding.kind", "mp_fourier: diffusers has no cosine features with random phases")
    elif enc.kind == "sinusoidal" and enc.max_period != 10000:
        no("embedding.encoding.max_period", f"{enc.max_period}: diffusers' sinusoids have max_period 10000")
    if plan.embedding_dim != levels[0].width:
        no("embedding.dim", f"{plan.embedding_dim}: diffusers' encoding is block_out_channels[0] = {levels[0].width} wide")
    if blk.kind == "resnet" and plan.embedding_out_dim != plan.embedding_hidden_dim:
        no("embedding.out_dim", f"{plan.embedding_out_dim} differs from hidden_dim {plan.embedding_hidden_dim}: "
                                "diffusers' TimestepEmbedding is time_embedding_dim wide on both layers")
    if emb.post_activation:
        no("embedding.post_activation", "true: UNet2DModel does not activate the embedding after its MLP")
    if cfg.down.kind in ("maxpool", "avgpool"):
        no("down.kind", f"{cfg.down.kind}: UNet2DModel downsamples with a strided conv or a res block")
    if cfg.up.kind in ("nearest", "transposed"):
        no("up.kind", f"{cfg.up.kind}: UNet2DModel upsamples with nearest + conv or a res block")
    _unsupported_song(cfg, plan, no)
    return out


def _unsupported_song(cfg: UNetConfig, plan: UNetPlan, no) -> None:
    """EDM-SongUNet's knobs (issue 15). diffusers' Skip*Block2D types come from score-SDE's NCSN++
    too, but with their own layout and names; the weight maps here do not cover them."""
    from ..plan import is_box_filter

    first = cfg.resolved_levels()[0].width
    if plan.stem_channels and plan.stem_channels != first:
        no("stem_width", f"{plan.stem_channels} differs from the first level's width {first}: UNet2DModel's "
                         "conv_in outputs block_out_channels[0]")
    if not is_box_filter(cfg.resample_filter):
        no("resample_filter", f"{list(cfg.resample_filter)}: UNet2DModel's res-block resampling is avg-pool and "
                              "nearest ([1, 1]); this exporter does not map its FIR blocks")
    if getattr(cfg.block, "resample_projection", False):  # resnet blocks only
        no("block.resample_projection", "true: ResnetBlock2D has a shortcut conv only when the width changes")
    if cfg.encoder_type != "standard":
        no("encoder_type", f"{cfg.encoder_type}: the down blocks this exporter maps have no progressive input "
                           "path (diffusers' Skip blocks are not mapped)")
    if cfg.decoder_type != "standard":
        no("decoder_type", f"{cfg.decoder_type}: the up blocks this exporter maps have no per-level output "
                           "heads (diffusers' Skip blocks are not mapped)")
    if cfg.num_classes and cfg.embedding.class_input != "table":
        no("embedding.class_input", f"{cfg.embedding.class_input}: UNet2DModel's classes are a table added after "
                                    "the time MLP (num_class_embeds)")
    if cfg.embedding.augment_dim is not None:
        no("embedding.augment_dim", f"{cfg.embedding.augment_dim}: UNet2DModel has no augmentation-label input")


# --------------------------------------------------------------------------- weights

_RESNET = {"emb_proj": "time_emb_proj", "shortcut": "conv_shortcut"}  # other leaves keep their names
_ATTENTION = {"norm": "group_norm", "proj": "to_out.0"}


def _modules(plan: UNetPlan) -> list[tuple[str, str, str, int]]:
    """(our module, their module, kind, heads) for every module with weights; kind is plain,
    resnet or attention (heads: that attention's, for its qkv order)."""
    cfg, n = plan.config, len(plan.levels)
    pairs = [("stem", "conv_in", "plain", 0), ("embedding.mlp.0", "time_embedding.linear_1", "plain", 0),
             ("embedding.mlp.2", "time_embedding.linear_2", "plain", 0), ("embedding.classes", "class_embedding", "plain", 0),
             ("embedding.encoding.table", "time_proj", "plain", 0),
             ("head.norm", "conv_norm_out", "plain", 0), ("head.conv", "conv_out", "plain", 0)]
    down = "resnet" if cfg.down.kind == "resblock" else "plain"
    up = "resnet" if cfg.up.kind == "resblock" else "plain"
    for lv in plan.levels:
        for side, blocks, theirs, sampler, kind in (("encoder", lv.encoder, f"down_blocks.{lv.index}", "downsamplers", down),
                                                    ("decoder", lv.decoder, f"up_blocks.{n - 1 - lv.index}", "upsamplers", up)):
            ours = f"{side}.{lv.index}"
            for j, b in enumerate(blocks):
                pairs.append((f"{ours}.blocks.{j}", f"{theirs}.resnets.{j}", "resnet", 0))
                if b.attention_heads:
                    pairs.append((f"{ours}.attentions.{j}", f"{theirs}.attentions.{j}", "attention", b.attention_heads))
            pairs.append((f"{ours}.resample", f"{theirs}.{sampler}.0", kind, 0))
    pairs += [(f"middle.blocks.{j}", f"mid_block.resnets.{j}", "resnet", 0) for j in range(len(plan.middle))]
    if plan.middle_attention_heads:
        pairs.append(("middle.attentions.0", "mid_block.attentions.0", "attention", plan.middle_attention_heads))
    return pairs


def tensor_pairs(keys, plan: UNetPlan) -> list[tuple[str, list[str], str, int]]:
    """For each of our state-dict `keys`: (key, their keys, kind, heads). kind: copy, linear (a
    1x1 conv <-> a linear), or qkv (one fused tensor <-> to_q, to_k, to_v)."""
    modules = sorted(_modules(plan), key=lambda m: -len(m[0]))  # longest prefix first
    out = []
    for key in keys:
        ours, theirs, kind, heads = next(m for m in modules if key.startswith(m[0] + "."))
        leaf = key[len(ours) + 1:]
        name, _, param = leaf.rpartition(".")
        if kind == "attention" and name == "qkv":
            out.append((key, [f"{theirs}.to_{x}.{param}" for x in "qkv"], "qkv", heads))
        elif kind == "attention":
            out.append((key, [f"{theirs}.{_ATTENTION[name]}.{param}"], "linear" if name == "proj" else "copy", 0))
        else:
            renamed = _RESNET.get(name, name) if kind == "resnet" else name
            out.append((key, [f"{theirs}.{renamed}.{param}" if renamed else f"{theirs}.{param}"], "copy", 0))
    return out


def _fused_to_parts(tensor: Tensor, heads: int, legacy: bool) -> list[Tensor]:
    # (3C, C, 1, 1) or (3C,) -> three (C, C) or (C,): legacy rows are (heads, 3, d), new ones (3, heads, d)
    rest = tensor.shape[1:2]
    three = tensor.reshape(heads, 3, -1, *rest).transpose(0, 1) if legacy else tensor.reshape(3, heads, -1, *rest)
    return [part.reshape(-1, *rest).clone() for part in three]


def _parts_to_fused(parts: list[Tensor], heads: int, legacy: bool, shape) -> Tensor:
    import torch

    rest = parts[0].shape[1:]
    stacked = torch.stack([p.reshape(heads, -1, *rest) for p in parts], dim=1 if legacy else 0)
    return stacked.reshape(shape).clone()


def to_diffusers(state: dict[str, Tensor], plan: UNetPlan) -> dict[str, Tensor]:
    """Our state dict under UNet2DModel's names and shapes."""
    legacy = plan.config.attention.qkv_order == "legacy"
    out = {}
    for key, theirs, kind, heads in tensor_pairs(state, plan):
        tensor = state[key]
        if kind == "qkv":
            out.update(zip(theirs, _fused_to_parts(tensor, heads, legacy)))
        elif kind == "linear":
            out[theirs[0]] = tensor.reshape(tensor.shape[0], -1).clone() if tensor.ndim == 4 else tensor.clone()
        else:
            out[theirs[0]] = tensor.clone()
    return out


def from_diffusers(state: dict[str, Tensor], plan: UNetPlan) -> dict[str, Tensor]:
    """A UNet2DModel's state dict under our names and shapes (the keys a model of `plan` has)."""
    from ..nn import meta_unet

    shapes = {k: v.shape for k, v in meta_unet(plan.config).state_dict().items()}
    legacy = plan.config.attention.qkv_order == "legacy"
    out = {}
    for key, theirs, kind, heads in tensor_pairs(shapes, plan):
        if kind == "qkv":
            out[key] = _parts_to_fused([state[k] for k in theirs], heads, legacy, shapes[key])
        else:
            out[key] = state[theirs[0]].reshape(shapes[key]).clone()
    return out
