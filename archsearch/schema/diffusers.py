"""diffusers' `UNet2DModel` config as an archsearch architecture: what `base: diffusers:PATH` reads.

    arch = unet_dict_from_diffusers(read_diffusers_config("unet/config.json"))   # plain data
    config = unet_config_from_dict({"base": "diffusers:unet/config.json", "dropout": ...})

A user who already trains a `UNet2DModel` can search around it: its `config.json` becomes the
fields of an archsearch `UNetConfig` that builds the same network (the same parameters, and with
its weights mapped by archsearch.export.diffusers, the same outputs). Options archsearch cannot
build are all reported at once, each as `KEY: why`, never silently dropped.

The correspondence lives here, torch-free, because the schema layer reads it; the other
direction (archsearch.export.diffusers) reads the same tables, so a block type or a default is
named once. `DEFAULTS` are `UNet2DModel.__init__`'s defaults (a test checks them against the
installed diffusers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ConfigErrors, excerpt

__all__ = ["PREFIX", "DEFAULTS", "DOWN_TYPES", "UP_TYPES", "ACTIVATIONS", "read_diffusers_config",
           "unet_dict_from_diffusers"]

PREFIX = "diffusers:"  # `base: diffusers:PATH`

DEFAULTS: dict[str, Any] = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}

# Block type -> (attention after every resnet, resampling). None: the model's downsample_type /
# upsample_type decides (the Attn blocks pass it on; DownBlock2D and UpBlock2D ignore it).
DOWN_TYPES: dict[str, tuple[bool, str | None]] = {
    "DownBlock2D": (False, "conv"),
    "AttnDownBlock2D": (True, None),
    "ResnetDownsampleBlock2D": (False, "resnet"),
}
UP_TYPES: dict[str, tuple[bool, str | None]] = {
    "UpBlock2D": (False, "conv"),
    "AttnUpBlock2D": (True, None),
    "ResnetUpsampleBlock2D": (False, "resnet"),
}
ACTIVATIONS = ("silu", "swish")  # diffusers' head and time MLP are SiLU whatever act_fn says
_RESAMPLE = {"conv": None, "resnet": {"kind": "resblock"}}  # None: conv down / nearest_conv up


def read_diffusers_config(path: str | Path) -> dict[str, Any]:
    """The mapping in a `config.json` (ConfigErrors located at `base` when it cannot be read)."""
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigErrors([ConfigError("base", "no such file (a UNet2DModel config.json)")]) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigErrors([ConfigError("base", f"not a readable JSON file ({exc})")]) from None
    if not isinstance(data, dict):
        raise ConfigErrors([ConfigError("base", f"holds a {type(data).__name__}, not a UNet2DModel config")])
    name = data.get("_class_name", "UNet2DModel")
    if name != "UNet2DModel":
        raise ConfigErrors([ConfigError("base", f"_class_name: {name} is not UNet2DModel, the one model read")])
    return data


def unet_dict_from_diffusers(data: dict[str, Any]) -> dict[str, Any]:
    """The archsearch architecture (a `UNetConfig` mapping) of a UNet2DModel config, or
    ConfigErrors naming every option archsearch cannot build (`KEY: why`, path `base`)."""
    return _Reader(data).read()


class _Reader:
    def __init__(self, data: dict[str, Any]):
        self.given = data
        self.cfg = {**DEFAULTS, **{k: v for k, v in data.items() if not k.startswith("_")}}
        self.errors: list[str] = []

    def problem(self, key: str, why: str) -> None:
        self.errors.append(f"{key}: {why}")

    def read(self) -> dict[str, Any]:
        cfg = self.cfg
        for key in sorted(set(cfg) - set(DEFAULTS)):
            self.problem(key, "not a UNet2DModel option this version of archsearch knows")
        widths = list(cfg["block_out_channels"] or [])
        attention, down, up = self._blocks(len(widths))
        self._require("center_input_sample", False, "archsearch takes inputs as given; scale them before the model")
        self._require("mid_block_scale_factor", 1, "archsearch's middle blocks do not rescale their sums")
        if str(cfg["act_fn"]).lower() not in ACTIVATIONS:
            self.problem("act_fn", f"{excerpt(cfg['act_fn'])}: diffusers' head and time MLP stay SiLU whatever act_fn says, "
                                   f"archsearch uses one activation everywhere; only silu (swish) maps")
        arch = {
            "image_size": self._image_size(),
            "in_channels": cfg["in_channels"],
            "out_channels": cfg["out_channels"],
            "num_classes": self._classes(),
            "levels": [{"width": w, "blocks": cfg["layers_per_block"], "attention": a} for w, a in zip(widths, attention)],
            "middle": self._middle(),
            "skip": {"combine": "concat", "taps": "block"},
            "stem": "conv3x3",
            "head": "norm_act_conv3x3",
            "block": {
                "norm": {"kind": "group", "groups": self._groups(), "eps": cfg["norm_eps"]},
                "order": "pre",
                "activation": "silu",
                "dropout": cfg["dropout"],
                "time_injection": self._time_injection(),
                "time_activation": True,
                "rescale": False,
                "shortcut": "conv1x1",
            },
            "attention": self._attention(widths, attention),
            "embedding": self._embedding(),
            "down": down,
            "up": up,
            "zero_init": False,  # diffusers initializes every layer with PyTorch's defaults
        }
        if self.errors:
            raise ConfigErrors([ConfigError("base", e) for e in self.errors])
        return {k: v for k, v in arch.items() if v is not None}

    def _require(self, key: str, value: Any, why: str) -> None:
        if self.cfg[key] != value:
            self.problem(key, f"{excerpt(self.cfg[key])} is not supported ({why})")

    def _image_size(self) -> int | None:
        """None (left out: the file's, the data's or the default size applies) when not given."""
        size = self.cfg["sample_size"]
        if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
            size = size[0]
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            self.problem("sample_size", f"{excerpt(size)}: archsearch needs one square image size in pixels, e.g. 32")
            return None
        return size

    def _blocks(self, n: int) -> tuple[list[bool], dict | None, dict | None]:
        """Per-level attention, and the one downsampling and upsampling every level uses."""
        cfg = self.cfg
        downs, ups = list(cfg["down_block_types"] or []), list(cfg["up_block_types"] or [])
        if not (len(downs) == len(ups) == n) or n == 0:
            self.problem("block_out_channels", f"{n} levels, {len(downs)} down_block_types and {len(ups)} "
                                               f"up_block_types; give one of each per level")
            return [False] * n, None, None
        attention, down_kinds, up_kinds = [], set(), set()
        for i in range(n):
            down = self._block_type("down_block_types", i, downs[i], DOWN_TYPES)
            up = self._block_type("up_block_types", n - 1 - i, ups[n - 1 - i], UP_TYPES)  # up blocks run lowest level first
            if down is None or up is None:
                attention.append(False)
                continue
            if down[0] != up[0]:
                self.problem(f"up_block_types.{n - 1 - i}", f"{ups[n - 1 - i]} at the level of down_block_types.{i} "
                                                            f"{downs[i]}: archsearch puts attention on both sides of a level or neither")
            attention.append(down[0])
            if i < n - 1:  # every level but the lowest downsamples after its encoder blocks
                down_kinds.add(down[1] or cfg["downsample_type"])
            if i > 0:  # every level but the highest upsamples after its decoder blocks
                up_kinds.add(up[1] or cfg["upsample_type"])
        return attention, self._resample("down", down_kinds), self._resample("up", up_kinds)

    def _block_type(self, key: str, index: int, name: str, known: dict) -> tuple[bool, str | None] | None:
        name = name[len("UNetRes"):] if isinstance(name, str) and name.startswith("UNetRes") else name
        if name not in known:
            self.problem(f"{key}.{index}", f"{name} is not supported; archsearch builds {', '.join(known)}")
            return None
        return known[name]

    def _resample(self, side: str, kinds: set[str]) -> dict | None:
        key = "downsample_type" if side == "down" else "upsample_type"
        if len(kinds) > 1:
            self.problem(f"{side}_block_types", f"levels resample differently ({' and '.join(sorted(kinds))}); archsearch "
                                                f"uses one {side}sampling for the whole network")
            return None
        kind = next(iter(kinds), "conv")
        if kind not in _RESAMPLE:
            self.problem(key, f"{excerpt(kind)} is not supported; use conv or resnet")
            return None
        if kind == "resnet":
            return dict(_RESAMPLE[kind])
        if side == "up":
            return {"kind": "nearest_conv"}
        padding = self.cfg["downsample_padding"]
        if padding not in (0, 1):
            self.problem("downsample_padding", f"{excerpt(padding)} is not supported; 1 pads symmetrically, 0 like TF 'SAME'")
            return None
        return {"kind": "conv", "padding": "symmetric" if padding == 1 else "same"}

    def _middle(self) -> dict:
        kind = self.cfg["mid_block_type"]
        if kind is None:
            return {"blocks": 0, "attention": False, "downsample": False}
        if kind != "UNetMidBlock2D":
            self.problem("mid_block_type", f"{excerpt(kind)} is not supported; use UNetMidBlock2D or null")
        attention = bool(self.cfg["add_attention"])
        groups = self.cfg["attn_norm_num_groups"]
        if attention and groups is None and self.cfg["resnet_time_scale_shift"] != "default":
            self.problem("attn_norm_num_groups", "null with resnet_time_scale_shift scale_shift leaves the middle "
                                                 "attention without a norm; archsearch's attention always normalizes "
                                                 f"(set it to norm_num_groups, {self.cfg['norm_num_groups']})")
        elif attention and groups is not None and groups != self.cfg["norm_num_groups"]:
            self.problem("attn_norm_num_groups", f"{groups} differs from norm_num_groups {self.cfg['norm_num_groups']}; "
                                                 "archsearch uses one GroupNorm for blocks and attention")
        return {"blocks": 2, "attention": attention, "downsample": False}

    def _groups(self) -> int | None:
        groups = self.cfg["norm_num_groups"]
        if not isinstance(groups, int):
            self.problem("norm_num_groups", f"{excerpt(groups)}: archsearch needs a fixed number of GroupNorm groups")
            return None
        return groups

    def _time_injection(self) -> str | None:
        shift = self.cfg["resnet_time_scale_shift"]
        if shift not in ("default", "scale_shift"):
            self.problem("resnet_time_scale_shift", f"{excerpt(shift)} is not supported; use default (add) or scale_shift")
            return None
        return "add" if shift == "default" else "scale_shift"

    def _attention(self, widths: list[int], attention: list[bool]) -> dict:
        head_dim = self.cfg["attention_head_dim"]
        if head_dim is None:  # one head at every site
            return {"heads": 1, "decoder_blocks": "all", "qkv_bias": True, "qkv_order": "new"}
        middle = self.cfg["mid_block_type"] is not None and self.cfg["add_attention"]
        sites = [w for w, a in zip(widths, attention) if a] + (widths[-1:] if middle else [])
        for w in sites:
            if w % head_dim:
                self.problem("attention_head_dim", f"{head_dim} does not divide the width {w} of an attention layer "
                                                   f"(diffusers would build {w // head_dim} heads of {head_dim}, "
                                                   f"{w // head_dim * head_dim} channels); use a divisor of every attention width")
                break
        return {"head_channels": head_dim, "decoder_blocks": "all", "qkv_bias": True, "qkv_order": "new"}

    def _embedding(self) -> dict:
        cfg = self.cfg
        kind = cfg["time_embedding_type"]
        if kind == "positional":
            if cfg["freq_shift"] not in (0, 1):
                self.problem("freq_shift", f"{excerpt(cfg['freq_shift'])} is not supported; use 0 or 1")
            encoding = {"kind": "sinusoidal", "flip_sin_to_cos": bool(cfg["flip_sin_to_cos"]),
                        "freq_shift": cfg["freq_shift"], "max_period": 10000.0}
        elif kind == "learned":
            if not isinstance(cfg["num_train_timesteps"], int):
                self.problem("num_train_timesteps", "a learned time embedding needs the number of timesteps")
            encoding = {"kind": "learned", "num_timesteps": cfg["num_train_timesteps"]}
        else:
            self.problem("time_embedding_type", f"{excerpt(kind)} is not supported (diffusers' fourier takes log σ and divides "
                                                "the output by σ); use positional or learned")
            encoding = None
        dim = cfg["time_embedding_dim"]
        return {"encoding": encoding, "dim": None, "hidden_dim": dim, "out_dim": dim, "post_activation": False}

    def _classes(self) -> int | None:
        if self.cfg["class_embed_type"] is not None:
            self.problem("class_embed_type", f"{excerpt(self.cfg['class_embed_type'])} is not supported; archsearch's classes "
                                             "are a learned table (class_embed_type null with num_class_embeds)")
        return self.cfg["num_class_embeds"]
