"""The planner: shapes of known networks, and every cross-field rule with its message."""

import pytest

from archsearch.errors import ConfigErrors
from archsearch.plan import norm_groups, plan_unet
from archsearch.schema import UNetConfig, preset_dict, unet_config_from_dict


def errors_of(data: dict) -> list[str]:
    with pytest.raises(ConfigErrors) as exc:
        unet_config_from_dict(data)
    return exc.value.lines()


def test_ddpm_plan_taps_stem_blocks_and_downsamples():
    plan = plan_unet(unet_config_from_dict(preset_dict("ddpm-cifar10")))
    assert [lv.resolution for lv in plan.levels] == [32, 16, 8, 4]
    assert [len(lv.taps) for lv in plan.levels] == [3, 3, 3, 3]  # stem or downsample + 2 blocks
    # Decoder blocks = encoder blocks + 1; the last block of level 1 joins the level-0 downsample (128).
    assert [len(lv.decoder) for lv in plan.levels] == [3, 3, 3, 3]
    assert plan.levels[1].decoder[-1].block_in_channels == 256 + 128
    assert [b.attention_heads for b in plan.levels[1].encoder] == [1, 1]
    assert plan.middle_resolution == 4 and plan.embedding_out_dim == 512


def test_seed_plan_runs_the_middle_one_level_lower():
    plan = plan_unet(unet_config_from_dict(preset_dict("seed")))
    assert plan.middle_resolution == 4
    assert [lv.down_channels for lv in plan.levels] == [64, 128, 256]
    assert [b.block_in_channels for lv in reversed(plan.levels) for b in lv.decoder] == [512, 256, 128]


def test_image_size_must_divide_by_the_downsampling():
    assert errors_of({"image_size": 30, "compact": {"multipliers": [1, 2, 2], "attention_resolutions": []}}) == [
        "image_size: 30 is not divisible by 4 (2 downsamples for 3 levels); use 32 or 28, or fewer levels"
    ]


def test_groups_must_divide_widths():
    (line,) = errors_of({"levels": [{"width": 64}, {"width": 80}], "block": {"norm": {"groups": 32}}})
    assert line.startswith("block.norm.groups: 32 does not divide the 80 channels")
    assert line.endswith("use 8 or 16 groups, or widths divisible by 32")


def test_edm_min_channels_per_group_caps_groups():
    arch = {"levels": [{"width": 8}, {"width": 16}], "block": {"norm": {"groups": 32, "min_channels_per_group": 4}}}
    config = unet_config_from_dict(arch)
    norm = config.block.norm
    assert [norm_groups(norm, c) for c in (8, 16, 48, 256)] == [2, 4, 12, 32]  # min(32, c // 4)
    plan_unet(config)  # every normalized width divides by its capped group count
    uncapped = {**arch, "block": {"norm": {"groups": 32}}}
    assert errors_of(uncapped)[0].startswith("block.norm.groups: 32 does not divide the 8 channels")


def test_head_channels_must_divide_attention_widths():
    lines = errors_of({"levels": [{"width": 64}, {"width": 96, "attention": True}], "attention": {"head_channels": 64}})
    assert lines == ["attention.head_channels: 64 does not divide width 96 at levels.1.attention; use a divisor of 96 such as 32 or 48"]


def test_heads_must_divide_width():
    lines = errors_of({"levels": [{"width": 64}, {"width": 96}], "middle": {"attention": True}, "attention": {"heads": 5}})
    assert lines[0].startswith("attention.heads: 5 heads do not divide width 96 at middle.attention")


def test_attention_resolutions_must_exist():
    lines = errors_of({"image_size": 32, "compact": {"multipliers": [1, 2], "attention_resolutions": [8]}})
    assert lines == ["compact.attention_resolutions.0: no level has resolution 8; the levels are 32, 16 pixels"]


def test_add_skips_need_matching_widths_or_projection():
    data = {"levels": [{"width": 32}, {"width": 64}], "skip": {"combine": "add"}}
    (line,) = errors_of(data)
    assert line.startswith("skip.combine: add needs equal widths")
    assert "skip.project: true" in line
    plan = plan_unet(unet_config_from_dict({**data, "skip": {"combine": "add", "project": True}}))
    modes = {b.skip_mode for lv in plan.levels for b in lv.decoder}
    assert modes == {"add", "add_projected"}
    # equal widths need nothing
    plan_unet(unet_config_from_dict({"levels": [{"width": 32}, {"width": 32}], "skip": {"combine": "add"}}))


def test_block_taps_need_blocks_plus_one_decoder_blocks():
    (line,) = errors_of({"levels": [{"width": 32, "blocks": 2, "decoder_blocks": 2}, {"width": 32}]})
    assert line.startswith("levels.0.decoder_blocks: 2 decoder blocks but 3 skips are tapped")


def test_prenorm_without_stem_cannot_normalize_the_image():
    (line,) = errors_of({"stem": "none", "levels": [{"width": 32}, {"width": 32}], "block": {"norm": {"groups": 8}}})
    assert line.startswith("block.norm.groups: 8 does not divide the 3 channels at the input of encoder block 0 of levels.0")


def test_odd_embedding_width():
    assert errors_of({"embedding": {"dim": 33}}) == [
        "embedding.dim: 33 is odd; sinusoidal and Fourier encodings need an even width"
    ]


def test_every_problem_is_reported_at_once():
    lines = errors_of(
        {"image_size": 18, "levels": [{"width": 60}, {"width": 64}, {"width": 64, "attention": True}], "attention": {"heads": 3}}
    )
    assert {line.split(":")[0] for line in lines} == {"image_size", "attention.heads", "block.norm.groups"}


def test_default_config_is_ddpm_like():
    plan = plan_unet(UNetConfig())
    assert [lv.width for lv in plan.levels] == [128, 256, 256, 256]
