"""`archsearch build`'s library (`archsearch.report.network`): which networks a file or preset
describes, each planned and counted on the 'meta' device, then drawn."""

import io
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from archsearch.errors import ConfigErrors
from archsearch.nn import build_unet
from archsearch.report.network import configs_to_build, networks_to_build, print_networks
from archsearch.schema.ablation import load_ablation
from archsearch.schema.loading import preset_dict

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"  # a space with distributions
TRAIN_FILE = ROOT / "search_spaces" / "train_digits.yaml"  # a space without
ABLATION = ROOT / "search_spaces" / "ablations" / "seed_design_choices.yaml"


def test_a_preset_with_sets_builds_the_overridden_preset():
    [(title, config)] = configs_to_build(None, preset="seed", sets={"in_channels": 1, "levels.0.width": 32})
    assert title == "preset seed"
    assert config.in_channels == 1 and config.levels[0].width == 32
    assert preset_dict("seed")["levels"][0]["width"] != 32  # so the override changed something


def test_every_kind_of_file_names_its_networks(tmp_path):
    unet = tmp_path / "unet.yaml"
    unet.write_text(yaml.safe_dump({"base": "seed", "image_size": 32}))
    assert [t for t, _ in configs_to_build(unet)] == [str(unet)]
    assert [t for t, _ in configs_to_build(TRAIN_FILE)] == [str(TRAIN_FILE)]  # fixed: its one architecture
    assert [t for t, _ in configs_to_build(TRAIN_FILE, sample=2)] == ["sample 0", "sample 1"]
    assert [t for t, _ in configs_to_build(QUICKSTART)] == ["sample 0"]  # distributions: one sample by default
    assert [t for t, _ in configs_to_build(QUICKSTART, sample=3)] == ["sample 0", "sample 1", "sample 2"]
    assert [t for t, _ in configs_to_build(ABLATION)] == load_ablation(ABLATION).names


@pytest.mark.parametrize("kwargs,line", [
    ({"file": None}, "build: give a FILE or --preset NAME (one of them)"),
    ({"file": QUICKSTART, "preset": "seed"}, "build: give a FILE or --preset NAME (one of them)"),
    ({"file": QUICKSTART, "sample": 1001}, "--sample: 1001; show between 0 and 1000 sampled networks"),
    ({"file": QUICKSTART, "sample": -1}, "--sample: -1; show between 0 and 1000 sampled networks"),
])
def test_what_cannot_be_built_is_one_error_line(kwargs, line):
    with pytest.raises(ConfigErrors) as caught:
        configs_to_build(**kwargs)
    assert caught.value.lines() == [line]


def test_networks_are_counted_as_the_built_model_and_drawn_in_order():
    networks = networks_to_build(QUICKSTART, sample=2)
    for network in networks:
        assert network.params == sum(p.numel() for p in build_unet(network.config).parameters())
        assert network.flops > 0 and len(network.plan.levels) == len(network.config.levels)
    console = Console(file=io.StringIO(), width=120)
    print_networks(networks, console)
    out = console.file.getvalue()
    assert out.index("sample 0") < out.index("sample 1")
    assert out.count("parameters: ") == 2 and f"parameters: {networks[1].params:,}" in out
    assert f"forward GFLOPs per image: {networks[0].flops / 1e9:.3f}" in out
