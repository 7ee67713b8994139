"""`UNetConfig`: one diffusion U-Net, described as data.

The vocabulary covers the DDPM / ADM (guided-diffusion) / EDM-SongUNet / EDM2 family and the seed
network of the article this project started from. Every field names the convention of the
reference implementations it follows, so a user porting a config knows what to set:

    levels         per level: width, encoder and decoder res blocks, attention   (or `compact`)
    middle         res blocks at the lowest resolution, attention after the first; or a
                   transformer over its pixels (U-ViT, simple diffusion)
    skip           concat or add; tapped once per level (seed) or at every block (DDPM/ADM)
    stem / head    3x3 conv or none / GN-act-conv3 (DDPM) or a bare 1x1 / 3x3 conv (seed)
    block          the res block: norm, order, activation, dropout, time injection, rescale;
                   or kind: mp, EDM2's magnitude-preserving block (and network)
    attention      heads or channels per head; every decoder block or the last of a level
    embedding      sinusoidal (flip/shift conventions), Fourier features (EDM, EDM2) or a learned table
    down / up      max-pool, avg-pool, strided conv, res-block; nearest, nearest+conv, ...

Cross-field rules (widths divisible by groups, resolutions that exist...) live in
`archsearch.plan`, which resolves a config into per-level shapes without importing torch.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ._base import MAX_BLOCKS, MAX_CHANNELS, MAX_CLASSES, MAX_HEADS, MAX_IMAGE_SIZE, MAX_LEVELS, Model, tagged_union

MAX_FILTER_TAPS = 8  # resample_filter length: StyleGAN's and EDM's longest is 4
MAX_FILTER_TAP = 1_000  # one tap of resample_filter (binomial taps of length 8 reach 35)

__all__ = [
    "SCHEMA_VERSION",
    "Level",
    "CompactLevels",
    "Middle",
    "TransformerMiddle",
    "MiddleKind",
    "Skip",
    "GroupNorm",
    "NoNorm",
    "Norm",
    "ResBlock",
    "MPBlock",
    "Block",
    "Attention",
    "Sinusoidal",
    "Fourier",
    "MPFourier",
    "Learned",
    "Embedding",
    "TimeEmbedding",
    "MaxPool",
    "AvgPool",
    "ConvDown",
    "ResBlockDown",
    "Downsample",
    "Nearest",
    "NearestConv",
    "Transposed",
    "ResBlockUp",
    "Upsample",
    "UNetConfig",
]

SCHEMA_VERSION = 1

Width = Annotated[int, Field(gt=0, le=MAX_CHANNELS)]  # channels of a layer
Blocks = Annotated[int, Field(ge=0, le=MAX_BLOCKS)]   # res blocks
Heads = Annotated[int, Field(gt=0, le=MAX_HEADS)]
Pixels = Annotated[int, Field(gt=0, le=MAX_IMAGE_SIZE)]


# --------------------------------------------------------------------------- levels


class Level(Model):
    """One resolution of the U-Net: encoder blocks on the way down, decoder blocks on the way up."""

    width: Width = Field(description="Channels of the encoder res blocks at this level.")
    blocks: Blocks = Field(2, description="Encoder res blocks at this level.")
    decoder_blocks: Blocks | None = Field(
        None,
        description="Decoder res blocks at this level. Default: blocks + 1 when skips are tapped "
        "at every block (DDPM/ADM), blocks when tapped once per level (seed).",
    )
    decoder_width: Width | None = Field(
        None,
        description="Channels of the decoder res blocks at this level. Default: width. The seed "
        "network's decoder runs one level narrower (its decoder at 8x8 outputs 128, not 256).",
    )
    attention: bool = Field(False, description="Self-attention after the res blocks of this level.")
    dropout: Annotated[float, Field(ge=0, lt=1)] | None = Field(
        None,
        description="Dropout of this level's res blocks (encoder, decoder and res-block resampling). "
        "Default: block.dropout. Simple diffusion (Hoogeboom et al. 2023) drops out only below the "
        "top resolution: 0 at the first level(s), its rate elsewhere.",
    )
    heads: Heads | None = Field(
        None,
        description="Attention heads at this level (when it has attention), in place of the `attention` "
        "section's heads and head_channels. Default: the attention section's.",
    )
    head_channels: Width | None = Field(
        None,
        description="Channels per head at this level (heads = width // head_channels), in place of the "
        "attention section's. Default: the attention section's. Give heads or head_channels, not both.",
    )


class CompactLevels(Model):
    """The DDPM/ADM way to write levels: a base width times multipliers, uniform blocks, and
    attention at given resolutions in pixels. Expands into `levels`."""

    base_width: Width = Field(128, description="Width of a level with multiplier 1 (DDPM `ch`, ADM `model_channels`).")
    multipliers: list[Annotated[float, Field(gt=0, le=MAX_CHANNELS)]] = Field(
        [1, 2, 2, 2],
        min_length=1,
        max_length=MAX_LEVELS,
        description="Per-level width multipliers (DDPM `ch_mult`); widths are int(base_width * m) as in ADM.",
    )
    blocks: Blocks = Field(2, description="Encoder res blocks per level (DDPM `num_res_blocks`).")
    attention_resolutions: list[Pixels] = Field(
        [16],
        max_length=MAX_LEVELS,
        description="Resolutions in pixels whose levels get attention (DDPM `attn_resolutions`; ADM "
        "gives downsample factors, convert with image_size // factor).",
    )
    dropout_resolutions: list[Pixels] | None = Field(
        None,
        max_length=MAX_LEVELS,
        description="Resolutions in pixels whose levels' res blocks use block.dropout; the other levels "
        "use none. Default (null): every level. Simple diffusion (Hoogeboom et al. 2023) drops out "
        "only below the top resolution, e.g. [16, 8] at 32 pixels.",
    )

    @field_validator("multipliers")
    @classmethod
    def _widths_exist(cls, value: list[float], info: ValidationInfo) -> list[float]:
        # Each level's width is int(base_width * m): a level of 0 channels, or of more than a
        # level may have, is named here rather than failing inside `expand`.
        base = info.data.get("base_width")
        for i, mult in enumerate(value if base is not None else []):
            width = int(base * mult)
            if not 0 < width <= MAX_CHANNELS:
                raise ValueError(f"item {i}: {base} × {mult:g} is a level of {width} channels; use a multiplier from "
                                 f"{1 / base:g} to {MAX_CHANNELS // base} with base_width {base}")
        return value

    def expand(self, image_size: int) -> list[Level]:
        """The per-level form (attention and dropout where the level's resolution is listed)."""
        return [
            Level(
                width=int(self.base_width * mult),
                blocks=self.blocks,
                attention=(image_size >> i) in self.attention_resolutions,
                dropout=None if self.dropout_resolutions is None or (image_size >> i) in self.dropout_resolutions else 0.0,
            )
            for i, mult in enumerate(self.multipliers)
        ]


class Middle(Model):
    """The bottleneck between encoder and decoder: res blocks, attention after the first."""

    kind: Literal["resblocks"] = "resblocks"
    blocks: Blocks = Field(2, description="Res blocks in the middle (DDPM/ADM: 2; the seed: 1).")
    attention: bool = Field(True, description="Self-attention after the first middle res block (Res-Attn-Res).")
    downsample: bool = Field(
        False,
        description="Downsample once more after the last level and run the middle one resolution "
        "lower, upsampling after it (the seed network). DDPM/ADM run it at the last level's resolution.",
    )


class TransformerMiddle(Model):
    """A transformer over the pixels of the lowest resolution, one token per pixel: U-ViT (Bao
    et al. 2023, "All are Worth Words") and simple diffusion's U-ViT (Hoogeboom et al. 2023),
    whose convolutional levels hand a 16x16 map to a stack of transformer blocks.

    tokens = map pixels (+ one embedding token) -> [+ positional embedding] -> depth x (pre-norm
    LayerNorm -> self-attention -> residual; LayerNorm -> MLP (GELU) -> residual) -> LayerNorm
    -> output projection, added to the map (a residual around the whole middle, so that with
    zero_init the middle starts as the identity). The decoder receives the map at the width and
    resolution it would get from the res-block middle.
    """

    kind: Literal["transformer"] = "transformer"
    depth: Annotated[int, Field(ge=1, le=MAX_BLOCKS)] = Field(
        4, description="Transformer blocks (U-ViT-S: 13, simple diffusion's U-ViT: 36 at 16x16)."
    )
    width: Width | None = Field(
        None,
        description="Token width. Default: the lowest level's width. When it differs, a linear map "
        "(a 1x1 conv on the map) projects the map's channels in.",
    )
    heads: Heads | None = Field(
        None,
        description="Attention heads. Default: the attention section's heads / head_channels (its "
        "qkv_bias applies too; its qkv_order does not: q, k, v are always [q | k | v]).",
    )
    head_channels: Width | None = Field(
        None,
        description="Channels per head (heads = width // head_channels; U-ViT and simple diffusion: "
        "64). Give heads or head_channels, not both.",
    )
    mlp_ratio: Annotated[float, Field(gt=0, le=64)] = Field(
        4.0, description="MLP hidden width = int(width * mlp_ratio) (ViT, U-ViT: 4)."
    )
    time: Literal["add", "token"] = Field(
        "add",
        description="How the timestep (and class) embedding enters: add: projected to the token width "
        "and added to every token (simple diffusion); token: projected and prepended as one extra "
        "token, dropped after the last block (U-ViT, which prepends time and class as two tokens; "
        "here they are summed into one, as everywhere else in the U-Net). The embedding passes the "
        "activation first when block.time_activation, as in the res blocks.",
    )
    pos_embedding: bool = Field(
        True, description="A learned positional embedding added to the tokens (U-ViT; init N(0, 0.02²))."
    )
    dropout: float = Field(
        0.0, ge=0, lt=1,
        description="Dropout after the attention's output projection and after the MLP's activation "
        "and output (timm's ViT proj_drop and MLP drop).",
    )
    downsample: bool = Field(
        False,
        description="As middle.downsample: downsample once more after the last level, run the "
        "transformer one resolution lower, and upsample after it.",
    )


MiddleKind = tagged_union("resblocks", Middle, TransformerMiddle)


class Skip(Model):
    """How encoder features reach the decoder."""

    combine: Literal["concat", "add"] = Field(
        "concat",
        description="concat: decoder blocks take [h, skip] (every reference); add: h + skip, which "
        "needs equal widths (see `project`).",
    )
    taps: Literal["level", "block"] = Field(
        "block",
        description="level: one skip per level, after its encoder blocks (seed); block: after the "
        "stem, every encoder block and every downsample (DDPM, ADM, EDM, diffusers).",
    )
    project: bool = Field(
        False,
        description="With add-skips, project a skip whose width differs from the decoder's with a "
        "1x1 conv; when false such a config is rejected.",
    )


# --------------------------------------------------------------------------- res block


class GroupNorm(Model):
    kind: Literal["group"] = "group"
    groups: Width = Field(32, description="GroupNorm groups (DDPM/ADM 32; the seed 8).")
    min_channels_per_group: Width | None = Field(
        None,
        description="When set, use min(groups, channels // this) groups (EDM: 4), so narrow layers still normalize.",
    )
    eps: float = Field(1e-5, gt=0, description="GroupNorm epsilon (ADM 1e-5; DDPM and EDM-SongUNet 1e-6).")


class NoNorm(Model):
    kind: Literal["none"] = "none"


Norm = tagged_union("group", GroupNorm, NoNorm)


class ResBlock(Model):
    """The residual block shared by the encoder, decoder, middle and res-block resampling."""

    kind: Literal["resnet"] = "resnet"
    norm: Norm = Field(default_factory=GroupNorm, description="Normalization in the blocks, attention and head.")
    order: Literal["pre", "post"] = Field(
        "pre",
        description="pre: norm -> act -> conv, twice (DDPM/ADM/EDM); post: conv -> act -> norm, "
        "twice (the seed).",
    )
    activation: Literal["silu", "gelu", "relu", "mish"] = Field("silu", description="Nonlinearity of blocks, head and embedding MLP.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the second conv (DDPM CIFAR-10: 0.1).")
    time_injection: Literal["add", "scale_shift"] = Field(
        "add",
        description="add: h + W·emb after the first conv (DDPM, seed); scale_shift: norm(h)·(1+s)+b, "
        "AdaGN (ADM use_scale_shift_norm).",
    )
    time_activation: bool = Field(
        True,
        description="Apply the activation to the embedding before each block's projection "
        "(DDPM/ADM/diffusers); off for the seed and EDM (which activates it once, see "
        "embedding.post_activation).",
    )
    rescale: bool = Field(
        False,
        description="Divide residual sums (res blocks and attention) by sqrt(2) (score-SDE "
        "skip_rescale, EDM-SongUNet); off in DDPM/ADM.",
    )
    shortcut: Literal["conv1x1", "conv3x3"] = Field(
        "conv1x1", description="Convolution on the residual path when the width changes (DDPM nin_shortcut: 1x1)."
    )
    resample_projection: bool = Field(
        False,
        description="Give res-block downsamples and upsamples (down/up kind: resblock) a shortcut conv "
        "(of kind `shortcut`) even when the width does not change (EDM-SongUNet resample_proj); off in "
        "ADM, where their shortcut is the resampled input alone.",
    )


class MPBlock(Model):
    """EDM2's magnitude-preserving block (Karras et al. 2024, "Analyzing and Improving the Training
    Dynamics of Diffusion Models", Fig. 21): bias-free weight-normalized convs, mp_silu, mp_sum
    residuals, no group norm. Under it the whole network is EDM2's: an MP conv stem, an MP
    embedding, mp_cat / mp_sum skips and an MP conv head with a learned gain (see archsearch.nn.mp)."""

    # Written without `kind`, a block is a resnet one: say so to JSON Schema validators (oneOf).
    model_config = ConfigDict(**Model.model_config, json_schema_extra={"required": ["kind"]})

    kind: Literal["mp"] = "mp"
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout in the residual branch before its second conv (EDM2 dropout; 0 for most of its ImageNet models).")
    res_balance: float = Field(
        0.3, ge=0, le=1, description="mp_sum(x, residual, t) weight of the residual branch (EDM2 res_balance 0.3)."
    )
    attn_balance: float = Field(
        0.3, ge=0, le=1, description="mp_sum(x, attention, t) weight of the attention branch (EDM2 attn_balance 0.3)."
    )
    skip_balance: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Weight t of the skip against h: mp_cat(h, skip, t) for concat skips (EDM2 concat_balance 0.5), "
        "mp_sum(h, skip, t) for add skips.",
    )
    label_balance: float = Field(
        0.5, ge=0, le=1, description="mp_sum(noise, class, t) weight of the class embedding (EDM2 label_balance 0.5)."
    )
    clip: float | None = Field(
        256.0, gt=0, description="Clamp each block's output to [-clip, clip] (EDM2 clip_act 256); null: no clipping."
    )
    pixel_norm: bool = Field(
        True, description="Normalize encoder blocks' input to unit RMS over channels (EDM2's pixel norm, 'enc' flavour)."
    )
    qkv_pixel_norm: bool = Field(True, description="Normalize each head's q, k and v to unit RMS over its channels (EDM2).")
    input_ones: bool = Field(True, description="Concatenate a channel of ones to the input before the stem (EDM2), a learnable bias of sorts.")
    forced_weight_norm: bool = Field(
        True,
        description="In training mode, overwrite each stored weight with its normalized self before use (EDM2 forced "
        "weight normalization); false keeps only the normalization in the forward pass.",
    )


Block = tagged_union("resnet", ResBlock, MPBlock)


class Attention(Model):
    """Self-attention blocks, computed with scaled_dot_product_attention."""

    heads: Heads = Field(1, description="Attention heads (DDPM 1; ADM num_heads).")
    head_channels: Width | None = Field(
        None,
        description="Channels per head; when set it decides the heads (width // head_channels) "
        "and `heads` is ignored (ADM num_head_channels=64, EDM channels_per_head).",
    )
    decoder_blocks: Literal["all", "last"] = Field(
        "all",
        description="Which decoder blocks of an attention level get attention: all (DDPM, ADM) or "
        "only the last of the level (EDM-SongUNet).",
    )
    qkv_bias: bool = Field(True, description="Bias in the qkv projection (false, and false by default, under block.kind mp: EDM2's MP convs have none).")
    qkv_order: Literal["new", "legacy"] = Field(
        "new",
        description="How the fused qkv projection's 3·C output channels split into heads. new: "
        "[q | k | v], each then split into heads (guided-diffusion QKVAttention, "
        "use_new_attention_order=True, as in its ImageNet-64 model; diffusers' to_q/to_k/to_v). "
        "legacy: per head [q k v] (QKVAttentionLegacy, the default of guided- and improved-diffusion "
        "and of all their released multi-head models except ImageNet-64). Same parameters; with more "
        "than one head the functions differ, so a checkpoint loads correctly only in its own order.",
    )


# --------------------------------------------------------------------------- time embedding


class Sinusoidal(Model):
    kind: Literal["sinusoidal"] = "sinusoidal"
    flip_sin_to_cos: bool = Field(
        False, description="Order [cos, sin] (ADM, EDM-Dhariwal) instead of [sin, cos] (DDPM, seed)."
    )
    freq_shift: Literal[0, 1] = Field(
        1,
        description="Frequencies exp(-ln(max_period)·i / (half - freq_shift)): 1 for DDPM/EDM-SongUNet, "
        "0 for ADM and the seed (diffusers downscale_freq_shift).",
    )
    max_period: float = Field(10000.0, gt=1, description="Longest period of the sinusoids.")


class Fourier(Model):
    kind: Literal["fourier"] = "fourier"
    scale: float = Field(16.0, gt=0, description="Std of the random frequencies (score-SDE, EDM: 16).")
    input_scale: float = Field(
        1e-3,
        gt=0,
        description="Multiply t by this first; 1e-3 maps DDPM steps [0, 1000) to [0, 1).",
    )


class MPFourier(Model):
    kind: Literal["mp_fourier"] = "mp_fourier"
    bandwidth: float = Field(1.0, gt=0, description="Std of the random frequencies in cycles per unit (EDM2 MPFourier bandwidth 1).")
    input_scale: float = Field(
        1e-3,
        gt=0,
        description="Multiply t by this first: 1e-3 maps DDPM steps [0, 1000) to [0, 1); 1 feeds EDM2's noise "
        "label ln(σ)/4 as it comes.",
    )


class Learned(Model):
    kind: Literal["learned"] = "learned"
    num_timesteps: int = Field(1000, gt=0, le=10**6, description="Rows of the table (diffusers time_embedding_type=learned).")


Embedding = tagged_union("sinusoidal", Sinusoidal, Fourier, MPFourier, Learned)


class TimeEmbedding(Model):
    """Timestep -> embedding vector -> MLP -> (+ class embedding) -> each block's projection."""

    encoding: Embedding = Field(default_factory=Sinusoidal, description="How t becomes a vector.")
    dim: Width | None = Field(
        None,
        description="Width of the raw encoding. Default: the first level's width (DDPM/ADM model_channels; "
        "EDM-SongUNet: model_channels × channel_mult_noise, 128 for DDPM++ and 256 for NCSN++ on CIFAR-10).",
    )
    hidden_dim: Width | None = Field(None, description="Width of the MLP's hidden layer. Default: 4 × dim. Not under block.kind mp (EDM2's embedding is one layer).")
    out_dim: Width | None = Field(
        None,
        description="Width of the embedding fed to the blocks. Default: hidden_dim (DDPM/ADM: 4 × ch; the seed: 256); "
        "under block.kind mp the widest level's width (EDM2 channel_mult_emb=None).",
    )
    post_activation: bool = Field(False, description="Apply the activation after the MLP once (EDM).")
    class_input: Literal["table", "linear"] = Field(
        "table",
        description="How class labels (num_classes) enter. table: a learned row per class added to the "
        "MLP's output (ADM, diffusers num_class_embeds); linear: a linear map (with bias) of the one-hot "
        "label times sqrt(num_classes) added to the raw encoding, before the MLP (EDM-SongUNet map_label, "
        "EDM's conditional CIFAR-10); a negative label is the zero vector there (EDM's unconditional input).",
    )
    augment_dim: Annotated[int, Field(gt=0, le=MAX_CHANNELS)] | None = Field(
        None,
        description="Width of an augmentation-label input (EDM augment_dim: 9 with --augment): a bias-free "
        "linear map from the labels added to the raw encoding, before the MLP. Pass the labels as "
        "`model(x, t, augment_labels=...)`; without them nothing is added (as EDM).",
    )


# --------------------------------------------------------------------------- resampling


class MaxPool(Model):
    kind: Literal["maxpool"] = "maxpool"


class AvgPool(Model):
    kind: Literal["avgpool"] = "avgpool"


class ConvDown(Model):
    kind: Literal["conv"] = "conv"
    padding: Literal["symmetric", "same"] = Field(
        "symmetric",
        description="symmetric: 3x3 stride 2 with padding 1 (ADM, PyTorch); same: TensorFlow "
        "'SAME', pad right/bottom only (DDPM-TF, diffusers downsample_padding=0).",
    )


class ResBlockDown(Model):
    kind: Literal["resblock"] = "resblock"


Downsample = tagged_union("conv", MaxPool, AvgPool, ConvDown, ResBlockDown)


class Nearest(Model):
    kind: Literal["nearest"] = "nearest"


class NearestConv(Model):
    kind: Literal["nearest_conv"] = "nearest_conv"


class Transposed(Model):
    kind: Literal["transposed"] = "transposed"


class ResBlockUp(Model):
    kind: Literal["resblock"] = "resblock"


Upsample = tagged_union("nearest_conv", Nearest, NearestConv, Transposed, ResBlockUp)


# --------------------------------------------------------------------------- the network


class UNetConfig(Model):
    """A whole diffusion U-Net. Build it with `archsearch.build_unet`."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Version of this schema; bumped on incompatible change.")
    image_size: Pixels = Field(32, description="Height and width of the (square) input in pixels.")
    in_channels: Width = Field(3, description="Channels of the noisy input image.")
    out_channels: Width | None = Field(None, description="Channels of the prediction. Default: in_channels.")
    learn_sigma: bool = Field(False, description="Also predict the variance: doubles the output channels (ADM learn_sigma).")
    num_classes: Annotated[int, Field(gt=0, le=MAX_CLASSES)] | None = Field(
        None, description="Class-conditional with this many classes (a learned table added to the time embedding, ADM)."
    )
    levels: list[Level] | None = Field(
        None, min_length=1, max_length=MAX_LEVELS, description="The resolutions, highest first. Give either this or `compact`."
    )
    compact: CompactLevels | None = Field(None, description="Levels as base width × multipliers; expands into `levels`.")
    middle: MiddleKind = Field(
        default_factory=Middle,
        description="The bottleneck: res blocks (kind: resblocks, DDPM/ADM) or a transformer (kind: "
        "transformer, U-ViT / simple diffusion).",
    )
    skip: Skip = Field(default_factory=Skip, description="Skip connections.")
    stem: Literal["conv3x3", "none"] = Field(
        "conv3x3", description="conv3x3: a 3x3 conv to the first width (everyone); none: the image enters the first block (seed)."
    )
    stem_width: Width | None = Field(
        None,
        description="Channels of the stem conv. Default: the first level's width (DDPM, ADM); EDM-SongUNet "
        "stems to model_channels (128) while its first level is 256 wide (channel_mult [2, 2, 2]).",
    )
    head: Literal["norm_act_conv3x3", "conv3x3", "conv1x1"] = Field(
        "norm_act_conv3x3",
        description="The output layer: norm -> act -> 3x3 conv (DDPM/ADM/diffusers), or a bare 3x3 or 1x1 conv (seed; "
        "under block.kind mp an MP conv times a learned gain, EDM2's out_conv, and conv3x3 the default).",
    )
    block: Block = Field(
        default_factory=ResBlock,
        description="The res block: resnet (DDPM/ADM/EDM/seed, the default) or mp (EDM2's magnitude-preserving block).",
    )
    attention: Attention = Field(default_factory=Attention, description="The attention blocks.")
    embedding: TimeEmbedding = Field(default_factory=TimeEmbedding, description="The timestep embedding.")
    down: Downsample = Field(default_factory=ConvDown, description="Downsampling between levels (res blocks by default under block.kind mp).")
    up: Upsample = Field(default_factory=NearestConv, description="Upsampling between levels (res blocks by default under block.kind mp).")
    resample_filter: list[Annotated[int, Field(gt=0, le=MAX_FILTER_TAP)]] = Field(
        [1, 1],
        min_length=2,
        max_length=MAX_FILTER_TAPS,
        description="FIR filter of res-block down/up-sampling (main path and shortcut) and of the "
        "progressive paths (encoder_type, decoder_type): the normalized outer product of these taps "
        "(EDM/StyleGAN convention), a depthwise stride-2 conv down and a transposed one (×4) up. "
        "[1, 1] is avg-pool and nearest (DDPM++); [1, 3, 3, 1] is NCSN++'s. An even length keeps the "
        "resolution exactly halved and doubled.",
    )
    encoder_type: Literal["standard", "skip", "residual"] = Field(
        "standard",
        description="Progressive input path (EDM-SongUNet encoder_type; score-SDE progressive_input). "
        "standard: none (DDPM++); skip: the image, FIR-downsampled to each level after the first, "
        "enters through a 1x1 conv added to the downsample's output (input_skip); residual: a 3x3 conv "
        "+ FIR-downsample of the previous level's input, averaged with the downsample's output by "
        "(a + b) / sqrt(2) (NCSN++). The sum replaces the skip tapped there (needs skip.taps: block). "
        "middle.downsample's extra downsample gets no input path (EDM has none).",
    )
    decoder_type: Literal["standard", "skip"] = Field(
        "standard",
        description="Progressive output path (EDM-SongUNet decoder_type; score-SDE progressive=output_skip). "
        "standard: one head at the top; skip: every level's decoder output goes through its own head "
        "(of kind `head`) to the output channels, summed with the FIR-upsampled sum from the level below.",
    )
    zero_init: bool = Field(
        True,
        description="Zero-initialize each res block's last conv, the attention output projection and "
        "the head's conv (DDPM, ADM, EDM), so the network starts as an identity-like map; under block.kind mp, "
        "start the head's gain and each block's embedding gain at 0 (EDM2), else at 1.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_to_compact(cls, data):
        # Neither form written: the DDPM CIFAR-10 layout, in compact form.
        if isinstance(data, dict) and data.get("levels") is None and data.get("compact") is None:
            data = {**data, "compact": {}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _mp_defaults(cls, data):
        # Under EDM2's block family the fields it needs default to EDM2's own (an MP conv head,
        # res-block resampling, a bias-free qkv), so `block: {kind: mp}` alone is a valid network;
        # a value written otherwise stays, and the planner names the conflict.
        if not isinstance(data, dict):
            return data
        block = data.get("block")
        kind = block.get("kind") if isinstance(block, dict) else getattr(block, "kind", None)
        if kind != "mp":
            return data
        data = {**data}
        data.setdefault("head", "conv3x3")
        data.setdefault("down", {"kind": "resblock"})
        data.setdefault("up", {"kind": "resblock"})
        attention = data.get("attention")
        if attention is None:
            data["attention"] = {"qkv_bias": False}
        elif isinstance(attention, dict) and "qkv_bias" not in attention:
            data["attention"] = {**attention, "qkv_bias": False}
        return data

    @model_validator(mode="after")
    def _one_level_form(self) -> UNetConfig:
        if self.levels is not None and self.compact is not None:
            raise ValueError("give either `levels` (per level) or `compact` (base width × multipliers), not both")
        return self

    def resolved_levels(self) -> list[Level]:
        """The per-level form, expanding `compact` when that is what was written."""
        return list(self.levels) if self.levels is not None else self.compact.expand(self.image_size)

    @property
    def levels_path(self) -> str:
        """Where level settings were written, for error messages."""
        return "levels" if self.levels is not None else "compact"
