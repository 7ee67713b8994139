"""diffusers UNet2DModel configs <-> archsearch configs, without diffusers installed.

`base: diffusers:PATH` reads a config.json into the archsearch architecture of the same network;
`diffusers_config` writes it back. Both directions are checked on hand-written configs
(tests/diffusers_configs/: DDPM CIFAR-10, attention at two levels, scale-shift with res-block
resampling, a learned time table without a middle block), and every option one side cannot
express is listed, each once, as `path: why`. The outputs of the networks are compared in
test_export.py, which needs diffusers.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.errors import ConfigErrors
from archsearch.export.diffusers import diffusers_config
from archsearch.nn import meta_unet
from archsearch.schema import preset_dict, unet_config_from_dict
from archsearch.schema.diffusers import DEFAULTS
from archsearch.schema.files import json_schema
from archsearch.schema.space import space_from_dict

CONFIGS = Path(__file__).parent / "diffusers_configs"
NAMES = sorted(p.stem for p in CONFIGS.glob("*.json"))


def written(name: str) -> dict:
    """A config file's fields, diffusers' defaults filled in (what UNet2DModel builds from it)."""
    data = json.loads((CONFIGS / f"{name}.json").read_text())
    return {**DEFAULTS, **{k: v for k, v in data.items() if not k.startswith("_")}}


def imported(name: str):
    return unet_config_from_dict({"base": f"diffusers:{CONFIGS / name}.json"})


def test_there_are_the_configs_the_issue_names():
    assert {"ddpm-cifar10-32", "attention-two-levels", "scale-shift-resnet"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_a_diffusers_config_comes_back_field_for_field(name):
    assert diffusers_config(imported(name)) == written(name)


def test_ddpm_cifar10_reads_as_the_preset():
    config = imported("ddpm-cifar10-32")
    assert sum(p.numel() for p in meta_unet(config).parameters()) == 35_746_307  # the preset's, the paper's 35.7M
    assert [lv.attention for lv in config.resolved_levels()] == [False, True, False, False]
    assert config.down.kind == "conv" and config.down.padding == "same"
    assert (config.embedding.encoding.flip_sin_to_cos, config.embedding.encoding.freq_shift) == (False, 1)
    # The preset exports to google/ddpm-cifar10-32's config, but for the training dropout it keeps.
    exported = diffusers_config(unet_config_from_dict(preset_dict("ddpm-cifar10")))
    assert {k for k in DEFAULTS if exported[k] != written("ddpm-cifar10-32")[k]} == {"dropout"}


def test_scale_shift_and_resblock_resampling_read_as_adm():
    config = imported("scale-shift-resnet")
    assert config.block.time_injection == "scale_shift"
    assert config.down.kind == "resblock" and config.up.kind == "resblock"
    assert config.attention.head_channels == 16 and config.num_classes == 10
    assert config.out_channels == 6 and config.zero_init is False  # diffusers' own initialization


def test_overrides_apply_on_top_of_a_diffusers_base(tmp_path):
    path = CONFIGS / "attention-two-levels.json"
    config = unet_config_from_dict({"base": f"diffusers:{path}", "block": {"dropout": 0.2}, "attention": {"head_channels": 16}})
    assert config.block.dropout == 0.2 and config.attention.head_channels == 16
    assert config.block.norm.groups == 16  # from the file
    space = space_from_dict({"data": {"source": "digits", "image_size": 16, "channels": 1},
                             "architecture": {"base": f"diffusers:{path}"}})
    arch = space.fixed_architecture()
    assert (arch.image_size, arch.in_channels) == (16, 1)  # the data's, as with a preset
    data = {"base": f"diffusers:{path}", "block": {"dropout": 0.2}}
    jsonschema.Draft202012Validator(json_schema("unet")).validate(data)


def bad_config(tmp_path: Path, **fields) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"_class_name": "UNet2DModel", "sample_size": 16, "block_out_channels": [32, 64],
                                "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                                "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], **fields}))
    return path


def test_every_unsupported_option_is_listed_once(tmp_path):
    path = bad_config(tmp_path, act_fn="gelu", time_embedding_type="fourier", center_input_sample=True,
                      resnet_time_scale_shift="scale_shift", mid_block_scale_factor=2, downsample_padding=2,
                      class_embed_type="timestep", attention_head_dim=24, cross_attention_dim=8,
                      up_block_types=["SkipUpBlock2D", "UpBlock2D"])
    with pytest.raises(ConfigErrors) as info:
        unet_config_from_dict({"base": f"diffusers:{path}"}, prefix="architecture")
    errors = info.value.errors
    assert {e.path for e in errors} == {"architecture.base"}
    assert all(e.message.startswith(f"diffusers:{path}: ") for e in errors)
    keys = [e.message.split(": ")[1] for e in errors]
    assert sorted(keys) == sorted(["act_fn", "time_embedding_type", "center_input_sample", "mid_block_scale_factor",
                                   "downsample_padding", "class_embed_type", "attention_head_dim", "cross_attention_dim",
                                   "up_block_types.0", "attn_norm_num_groups"])


@pytest.mark.parametrize("fields,key", [
    ({"down_block_types": ["DownBlock2D", "DownBlock2D"]}, "up_block_types.0"),  # attention on one side only
    ({"block_out_channels": [32, 64, 64], "down_block_types": ["ResnetDownsampleBlock2D", "DownBlock2D", "DownBlock2D"],
      "up_block_types": ["UpBlock2D", "UpBlock2D", "UpBlock2D"]}, "down_block_types"),  # two kinds of downsampling
    ({"down_block_types": ["DownBlock2D"]}, "block_out_channels"),
    ({"norm_num_groups": None}, "norm_num_groups"),
    ({"attn_norm_num_groups": 8}, "attn_norm_num_groups"),
])
def test_what_archsearch_cannot_build_is_named(tmp_path, fields, key):
    with pytest.raises(ConfigErrors) as info:
        unet_config_from_dict({"base": f"diffusers:{bad_config(tmp_path, **fields)}"})
    assert [e.message.split(": ")[1] for e in info.value.errors] == [key]


def test_a_missing_or_unreadable_file_exits_2(tmp_path):
    runner = CliRunner()
    space = tmp_path / "unet.yaml"
    for target, why in ((tmp_path / "nope.json", "no such file"), (tmp_path / "list.json", "holds a list")):
        (tmp_path / "list.json").write_text("[1, 2]")
        space.write_text(yaml.safe_dump({"base": f"diffusers:{target}"}))
        result = runner.invoke(app, ["validate", str(space)])
        assert result.exit_code == 2
        assert result.stderr.strip() == f"base: diffusers:{target}: {why}" + (
            " (a UNet2DModel config.json)" if why == "no such file" else ", not a UNet2DModel config")


# --------------------------------------------------------------------------- archsearch -> diffusers

SEED_UNSUPPORTED = {
    "skip.taps", "stem", "head", "levels.1.decoder_width", "levels.2.decoder_width", "middle.downsample",
    "middle.blocks", "block.order", "block.time_activation", "embedding.dim", "embedding.out_dim", "down.kind", "up.kind",
}


def test_every_field_diffusers_cannot_express_is_listed():
    with pytest.raises(ConfigErrors) as info:
        diffusers_config(unet_config_from_dict(preset_dict("seed")), prefix="architecture")
    assert {e.path for e in info.value.errors} == {f"architecture.{p}" for p in SEED_UNSUPPORTED}
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert f"the seed preset, for instance, names {len(SEED_UNSUPPORTED)} fields" in readme


@pytest.mark.parametrize("override,path", [
    ({"skip": {"combine": "add", "project": True}}, "skip.combine"),
    ({"levels": [{"width": 32, "blocks": 2}, {"width": 64, "blocks": 1, "attention": True}]}, "levels.1.blocks"),
    ({"levels": [{"width": 64, "blocks": 1, "attention": True}, {"width": 128, "blocks": 1, "attention": True}],
      "attention": {"heads": 2}}, "attention.heads"),  # 2 heads at widths 64 and 128: 32 and 64 per head
    ({"block": {"norm": {"kind": "none"}}}, "block.norm.kind"),
    ({"block": {"activation": "gelu"}}, "block.activation"),
    ({"block": {"rescale": True}}, "block.rescale"),
    ({"attention": {"qkv_bias": False}}, "attention.qkv_bias"),
    ({"attention": {"decoder_blocks": "last"}}, "attention.decoder_blocks"),
    ({"embedding": {"encoding": {"kind": "fourier"}}}, "embedding.encoding.kind"),
    ({"embedding": {"encoding": {"kind": "mp_fourier"}}}, "embedding.encoding.kind"),
    ({"embedding": {"post_activation": True}}, "embedding.post_activation"),
    ({"down": {"kind": "avgpool"}}, "down.kind"),
    ({"up": {"kind": "transposed"}}, "up.kind"),
    ({"middle": {"blocks": 1}}, "middle.blocks"),
    ({"middle": {"kind": "transformer", "depth": 2}}, "middle.kind"),
    ({"levels": [{"width": 64, "blocks": 1}, {"width": 128, "blocks": 1, "attention": True, "dropout": 0.1}]},
     "levels.1.dropout"),
    ({"levels": None, "compact": {"base_width": 64, "multipliers": [1, 2], "blocks": 1, "attention_resolutions": [8],
                                  "dropout_resolutions": [8]}, "block": {"dropout": 0.1}}, "compact.dropout_resolutions"),
    ({"levels": [{"width": 64, "blocks": 1}, {"width": 128, "blocks": 1, "attention": True, "heads": 2}]},
     "levels.1.heads"),  # 64 channels per head at levels.1, 128 (one head) in the middle
])
def test_one_unsupported_field_is_the_one_listed(override, path):
    base = {"image_size": 16, "levels": [{"width": 64, "blocks": 1}, {"width": 128, "blocks": 1, "attention": True}]}
    config = unet_config_from_dict({**base, **override})
    with pytest.raises(ConfigErrors) as info:
        diffusers_config(config)
    assert [e.path for e in info.value.errors] == [path]


@pytest.mark.parametrize("override,field,value", [
    ({"levels": [{"width": 64, "blocks": 1, "dropout": 0.1}, {"width": 128, "blocks": 1, "attention": True}],
      "block": {"dropout": 0.1}}, "dropout", 0.1),  # the level's dropout is block.dropout's
    ({"levels": [{"width": 64, "blocks": 1}, {"width": 128, "blocks": 1, "attention": True, "head_channels": 64}],
      "attention": {"heads": 2}}, "attention_head_dim", 64),  # 64 per head at levels.1 and in the middle
], ids=["dropout", "heads"])
def test_per_level_values_diffusers_can_express_export(override, field, value):
    base = {"image_size": 16, "levels": [{"width": 64, "blocks": 1}, {"width": 128, "blocks": 1, "attention": True}]}
    assert diffusers_config(unet_config_from_dict({**base, **override}))[field] == value


def test_heads_become_channels_per_head():
    levels = [{"width": 64, "blocks": 1, "attention": True}, {"width": 64, "blocks": 1}]
    assert diffusers_config(unet_config_from_dict({"image_size": 16, "levels": levels, "attention": {"heads": 4}}))[
        "attention_head_dim"] == 16
    assert diffusers_config(unet_config_from_dict({"image_size": 16, "levels": levels}))["attention_head_dim"] is None
