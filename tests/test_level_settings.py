"""Per-level dropout and attention heads (levels.N.dropout / heads / head_channels,
compact.dropout_resolutions): planned per block, and built into the right modules."""

import pytest
from torch import nn

from archsearch.errors import ConfigErrors
from archsearch.nn import build_unet
from archsearch.plan import plan_unet
from archsearch.report.network import dropout_summary
from archsearch.schema import unet_config_from_dict

LEVELS = [{"width": 16, "blocks": 1, "dropout": 0.0}, {"width": 32, "blocks": 1, "attention": True},
          {"width": 32, "blocks": 1, "dropout": 0.2, "attention": True}]
BASE = {"image_size": 16, "levels": LEVELS, "block": {"norm": {"groups": 4}, "dropout": 0.1},
        "embedding": {"dim": 16}, "down": {"kind": "resblock"}, "up": {"kind": "resblock"}}


def rate(block: nn.Module) -> float:
    return block.dropout.p if isinstance(block.dropout, nn.Dropout) else 0.0


def test_each_level_plans_its_dropout():
    plan = plan_unet(unet_config_from_dict(BASE))
    assert [lv.dropout for lv in plan.levels] == [0.0, 0.1, 0.2]
    assert [{b.dropout for b in lv.encoder + lv.decoder} for lv in plan.levels] == [{0.0}, {0.1}, {0.2}]
    assert {b.dropout for b in plan.middle} == {0.1}  # the res-block middle keeps block.dropout


def test_each_built_block_has_its_levels_dropout():
    model = build_unet(unet_config_from_dict(BASE))
    for i, want in enumerate([0.0, 0.1, 0.2]):
        for stage in (model.encoder[i], model.decoder[i]):
            assert [rate(b) for b in stage.blocks] == [want] * len(stage.blocks), i
    # res-block resampling runs with the dropout of the level whose stage holds it
    assert [rate(model.encoder[i].resample) for i in (0, 1)] == [0.0, 0.1]
    assert [rate(model.decoder[i].resample) for i in (1, 2)] == [0.1, 0.2]
    assert isinstance(model.encoder[0].blocks[0].dropout, nn.Identity)  # 0: no Dropout module at all
    assert [rate(b) for b in model.middle.blocks] == [0.1, 0.1]


def test_compact_dropout_resolutions():
    compact = {"base_width": 16, "multipliers": [1, 2, 2], "blocks": 1, "attention_resolutions": [],
               "dropout_resolutions": [8, 4]}
    config = unet_config_from_dict({**BASE, "levels": None, "compact": compact})
    assert [lv.dropout for lv in plan_unet(config).levels] == [0.0, 0.1, 0.1]
    everywhere = unet_config_from_dict({**BASE, "levels": None, "compact": {**compact, "dropout_resolutions": None}})
    assert [lv.dropout for lv in plan_unet(everywhere).levels] == [0.1, 0.1, 0.1]
    assert everywhere.resolved_levels()[0].dropout is None


def test_build_prints_per_level_dropout_only_when_it_varies():
    assert dropout_summary(plan_unet(unet_config_from_dict(BASE))) == "dropout per level: 0, 0.1, 0.2 (middle res blocks: 0.1)"
    uniform = [{k: v for k, v in lv.items() if k != "dropout"} for lv in LEVELS]
    assert dropout_summary(plan_unet(unet_config_from_dict({**BASE, "levels": uniform}))) is None


def test_each_level_plans_and_builds_its_heads():
    levels = [{"width": 16, "blocks": 1, "attention": True, "heads": 4}, {"width": 32, "blocks": 1, "attention": True},
              {"width": 32, "blocks": 1, "attention": True, "head_channels": 4}]
    config = unet_config_from_dict({**BASE, "levels": levels, "attention": {"heads": 2}})
    plan = plan_unet(config)
    assert [{b.attention_heads for b in lv.encoder + lv.decoder} for lv in plan.levels] == [{4}, {2}, {8}]
    assert plan.middle_attention_heads == 2  # the middle keeps the attention section's
    model = build_unet(config)
    assert [{a.heads for a in s.attentions.values()} for s in model.decoder] == [{4}, {2}, {8}]
    assert {a.heads for a in model.middle.attentions.values()} == {2}


def test_a_level_setting_replaces_the_attention_sections_head_channels():
    levels = [{"width": 16, "blocks": 1}, {"width": 32, "blocks": 1, "attention": True, "heads": 1}]
    plan = plan_unet(unet_config_from_dict({**BASE, "levels": levels, "attention": {"head_channels": 8}}))
    assert plan.levels[1].encoder[0].attention_heads == 1 and plan.middle_attention_heads == 4


@pytest.mark.parametrize("level,line", [
    ({"heads": 3}, "levels.1.heads: 3 heads do not divide width 32 at levels.1.attention; use 2 or 4 heads"),
    ({"head_channels": 12}, ("levels.1.head_channels: 12 does not divide width 32 at levels.1.attention; "
                             "use a divisor of 32 such as 8 or 16")),
    ({"heads": 2, "head_channels": 8}, "levels.1.head_channels: give levels.1.heads or levels.1.head_channels, not both; drop one"),
])
def test_per_level_head_rules(level, line):
    levels = [{"width": 16, "blocks": 1}, {"width": 32, "blocks": 1, "attention": True, **level}]
    with pytest.raises(ConfigErrors) as exc:
        unet_config_from_dict({**BASE, "levels": levels})
    assert exc.value.lines() == [line]


def test_dropout_bounds_are_the_block_dropouts():
    with pytest.raises(ConfigErrors) as exc:
        unet_config_from_dict({**BASE, "levels": [{"width": 16, "dropout": 1.0}]})
    assert exc.value.lines()[0].startswith("levels.0.dropout: ")
