"""Presets under overrides: a width a preset derives follows the fields it derives from.

A preset that wrote out its embedding widths (128 -> 512 for ddpm-cifar10) kept them when a user
overrode `compact.base_width`, so `base: ddpm-cifar10` with `base_width: 64` built a width-64
network with a 512-wide embedding. The presets now leave derived widths to the planner's
defaults (the same numbers at the preset's own width, so its parameter count is unchanged).
"""

import re
from pathlib import Path

import pytest
import yaml

from archsearch.plan import plan_unet
from archsearch.schema import PRESETS, UNetConfig, preset_dict, unet_config_from_dict

README = (Path(__file__).parent.parent / "README.md").read_text()
# Fields whose default is derived from another field (embedding.dim from the first width, ...).
DERIVED = ("dim", "hidden_dim", "out_dim")


def embedding(config) -> tuple[int, int, int]:
    plan = plan_unet(config)
    return plan.embedding_dim, plan.embedding_hidden_dim, plan.embedding_out_dim


@pytest.mark.parametrize("name,own,width", [("ddpm-cifar10", (128, 512, 512), 64), ("adm-imagenet64", (192, 768, 768), 128)])
def test_the_embedding_follows_an_overridden_base_width(name, own, width):
    assert embedding(unet_config_from_dict({"base": name})) == own
    narrow = unet_config_from_dict({"base": name, "compact": {"base_width": width}})
    assert narrow.resolved_levels()[0].width == width
    assert embedding(narrow) == (width, 4 * width, 4 * width)


def test_a_written_embedding_width_still_wins():
    config = unet_config_from_dict({"base": "ddpm-cifar10", "compact": {"base_width": 64}, "embedding": {"dim": 128}})
    assert embedding(config) == (128, 512, 512)


@pytest.mark.parametrize("name", PRESETS)
def test_no_preset_pins_a_width_its_defaults_derive(name):
    data = preset_dict(name)
    written = data.get("embedding", {})
    for k, field in enumerate(DERIVED):
        if field in written:  # left out, would the planner derive the same width?
            without = UNetConfig.model_validate({**data, "embedding": {f: v for f, v in written.items() if f != field}})
            assert embedding(without)[k] != written[field], f"{name}: embedding.{field} pins its default; leave it out"


def test_the_readme_example_builds_what_it_says():
    block = next(b for b in re.findall(r"^```yaml\n(.*?)^```$", README, flags=re.S | re.M) if "base: ddpm-cifar10" in b)
    config = unet_config_from_dict(yaml.safe_load(block))
    assert [lv.width for lv in config.resolved_levels()] == [64, 128, 128]
    assert embedding(config) == (64, 256, 256)
    assert "64 → 256 → 256" in README
